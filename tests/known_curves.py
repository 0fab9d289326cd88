"""Held-out evaluations whose answer is known by construction: each example's loss follows a chosen curve times
its own difficulty, with independent noise per example and evaluation, so the governor sees per-example losses
exactly as the loop records them."""

from __future__ import annotations

import numpy as np

B = 1e12


def evaluations(curve, *, points: int = 10, examples: int = 12, noise: float = 0.02, seed: int = 0,
                eval_flops: float = 1e9, budget: float = B, common: float = 0.0) -> list[dict]:
    """Evaluation 0 before training, then `points` evenly spread over the budget (as the loop's plan places them).

    common: training noise, a factor 1 + N(0, common) shared by every example of one evaluation (the model is a
    little worse or better everywhere at that moment), which a paired test on the same examples cannot see."""
    rng = np.random.default_rng(seed)
    difficulty = rng.lognormal(0.0, 0.3, examples)
    counts = rng.integers(10, 40, examples)
    shared = np.random.default_rng([seed, 7]).normal(0.0, common, points + 1) if common > 0 else np.zeros(points + 1)
    out = []
    for k in range(points + 1):
        x = k / (points + 1)
        per_token = curve(x) * (1.0 + shared[k] * (k > 0)) * difficulty * (1.0 + rng.normal(0.0, noise, examples))
        sums = per_token * counts
        out.append({"step": k, "eval_loss": float(sums.sum() / counts.sum()), "flops": x * budget + eval_flops * (k + 1),
                    "train_flops": x * budget, "eval_sums": sums.tolist(), "eval_counts": counts.tolist()})
    return out


def ledger_at(e):
    from budgetune.budget import Ledger

    ledger = Ledger()
    ledger.charge("train", e["train_flops"])
    ledger.charge("eval", e["flops"] - e["train_flops"])
    return ledger


def drive(governor, evals, budget: float = B):
    """Feed the evaluations in order until a non-continue action; (index of it or None, decisions)."""
    from budgetune.budget import Budget

    decisions = []
    for i, e in enumerate(evals):
        d = governor.decide(dict(e), ledger_at(e), Budget(max_flops=budget))
        decisions.append(d)
        if d.action != "continue":
            return i, decisions
    return None, decisions


def falling(x):  # keeps falling at 5% of the starting loss per 10% of the budget: never worth stopping
    return 3.0 * (1.0 - 0.5 * x)


def flat(x):  # a fast drop, then nothing: stopping early costs nothing
    return 2.0 + 1.0 * np.exp(-x / 0.03)


def slow_after_fast(x):  # a fast drop, then 2% of the loss per 10% of the budget to the end: never worth stopping
    return 2.0 + 1.0 * np.exp(-x / 0.03) + 0.5 * (1.0 - x)


def slow_after_fast_for(threshold: float, ratio: float = 2.5, price_rise: float = 1.0, horizon: float = 0.1):
    """slow_after_fast with its steady decline steep enough that every `horizon` of the budget, from 5% to the end,
    buys at least `ratio` times the price a governor at `threshold` asks there (threshold · (1 + price_rise · spent),
    the marginal governor's): a curve never worth stopping at that price, by construction. At threshold 0.005 the
    slope is slow_after_fast's (0.5 over the budget buys 2.6 times the price)."""
    xs = np.linspace(0.05, 1.0 - horizon, 96)
    price = threshold * (1.0 + price_rise * xs)
    pays = lambda curve: np.all((curve(xs) - curve(xs + horizon)) / curve(xs) >= ratio * price)
    for slope in np.arange(0.05, 50.0, 0.05):
        curve = lambda x, s=slope: 2.0 + 1.0 * np.exp(-x / 0.03) + s * (1.0 - x)
        if pays(curve):
            return curve
    # A price so high that no straight decline above a floor pays it to the end: an exponential one, no floor.
    for rate in np.arange(0.1, 100.0, 0.1):
        curve = lambda x, r=rate: 1.0 * np.exp(-x / 0.03) + 2.5 * np.exp(-r * x)
        if pays(curve):
            return curve
    raise ValueError(f"no decline pays {ratio} times the price of threshold {threshold}")


def overfit(x):  # falls, bottoms out at 40% of the budget, then rises for real
    return 2.0 + 1.0 * np.exp(-x / 0.05) + 0.5 * max(0.0, x - 0.4)


def drive_planned(governor, curve, *, examples: int = 64, sample: int = 8, points: int = 12, noise: float = 0.02,
                  seed: int = 0, per_example: float = 1e8, share: float = 0.1, budget: float = B):
    """A governed run's evaluations as the loop makes them: each one reads the plan's current sample of
    `examples` held-out examples (losses known by construction, noise independent per example and evaluation),
    is charged `per_example` FLOPs per example to the ledger's eval phase, and after each decision the loop's
    train.governed.enlarge may grow the sample. Returns (decisions, sample sizes read, eval FLOPs, plan)."""
    from budgetune.budget import Budget
    from budgetune.train import governed

    rng = np.random.default_rng(seed)
    difficulty = rng.lognormal(0.0, 0.3, examples)
    counts = rng.integers(10, 40, examples)
    plan = {"points": points, "sample": sorted(int(i) for i in rng.choice(examples, sample, replace=False)),
            "sample_size": sample, "whole_flops": per_example * examples, "share_target": share, "final_flops": 0.0}
    decisions, sizes, eval_flops = [], [], 0.0
    for k in range(points + 1):
        x = k / (points + 1)
        idx = plan["sample"]
        eps = np.random.default_rng([seed, k]).normal(0.0, noise, examples)[idx]
        sums = curve(x) * difficulty[idx] * (1.0 + eps) * counts[idx]
        eval_flops += per_example * len(idx)
        sizes.append(len(idx))
        e = {"step": k, "eval_loss": float(sums.sum() / counts[idx].sum()), "flops": x * budget + eval_flops,
             "eval_sums": sums.tolist(), "eval_counts": counts[idx].tolist(), "eval_indices": list(idx)}
        from budgetune.budget import Ledger

        ledger = Ledger()
        ledger.charge("train", x * budget)
        ledger.charge("eval", eval_flops)
        d = governor.decide(e, ledger, Budget(max_flops=budget))
        decisions.append(d)
        governed.enlarge(plan, d, evals_done=k + 1, eval_spent=eval_flops, max_flops=budget, n_examples=examples,
                         seed=seed)
        if d.action != "continue":
            break
    return decisions, sizes, eval_flops, plan
