"""Curves of known shape for bench/governor.py --synthetic: what each policy does where the right answer is known
(its own table, apart from the fine-tuning measurements)."""

from __future__ import annotations

import math

# Loss as a function of the budget share. They are not fine-tuning measurements.
SHAPES = {
    "keeps-falling": lambda x: 3.0 * (1.0 - 0.4 * x),
    "fast-then-slow": lambda x: 2.0 + 1.0 * math.exp(-x / 0.03) + 0.6 * (1 + x / 0.1) ** -0.8,
    "plateau": lambda x: 2.0 + 1.0 * math.exp(-x / 0.05),
    "overfit": lambda x: 2.0 + 1.0 * math.exp(-x / 0.05) + 0.4 * max(0.0, x - 0.4),
}


def synthetic_curves(points: int = 12, examples: int = 12) -> dict:
    import numpy as np

    out = {}
    for shape, f in SHAPES.items():
        for noise in (0.01, 0.03):
            for seed in range(3):
                rng = np.random.default_rng([seed, int(noise * 1000)])
                hard = rng.lognormal(0, 0.3, examples)
                counts = rng.integers(10, 40, examples)
                whole = 0.01 * 1e12
                evals = []
                for k in range(points + 2):
                    x = k / (points + 1)
                    sums = f(x) * hard * (1 + rng.normal(0, noise, examples)) * counts
                    evals.append({"train_flops": x * 1e12, "eval_flops": whole, "eval_sums": sums.tolist(),
                                  "eval_counts": counts.tolist(), "eval_loss": float(sums.sum() / counts.sum())})
                out[f"{shape}-n{noise:g}-s{seed}"] = {"evals": evals, "setting": shape, "data": "synthetic",
                                                       "method": "-", "lr": 0.0, "budget_key": "-", "seed": seed}
    return out
