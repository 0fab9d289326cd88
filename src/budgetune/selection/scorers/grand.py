"""GraNd (Paul et al. 2021): the norm of each example's loss gradient, averaged over short warm-up runs.

The gradient is taken over LoRA adapter weights (a fresh adapter on the current model, or the model's own adapter
during LoRA training) rather than all weights: it is what a LoRA run will follow, and it keeps per-example gradients
small enough to compute for a whole pool on a CPU."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import UserError
from .. import pergrad, warmup
from ..protocol import Scores
from ..scaffold import scorer

NAME = "grand"
NEEDS_MODEL = True
DEFAULT_STRATEGY = "stratified"


def predicted_work(model, pool, target, config):
    """Per run: a LoRA copy, its warm-up steps and one per-example-gradient pass over the pool (costs.py)."""
    from ..costs import Work, adapter_dim, pergrad_flops

    lora, dim = warmup.lora_profile(model), adapter_dim(model)
    work = Work()
    for r in range(config.runs):
        work = work + Work(copies=1, train=warmup.planned_flops(
            lora, pool, steps=config.warmup_steps, batch_size=config.batch_size, seed=config.seed + r)
            + pergrad_flops(lora, pool, config.batch_size, dim))
    return work


@dataclass(kw_only=True)
class Config:
    runs: int = 2  # warm-up runs averaged
    warmup_steps: int = 4  # AdamW steps per run; a fresh LoRA's B is zero, so at least one step gives A a gradient
    lr: float = 1e-3
    batch_size: int = 8  # examples per vectorised gradient pass
    method: str = "hooks"  # per-example gradients: hooks, vmap or loop (see pergrad.py)
    seed: int = 0

    def __post_init__(self):
        if self.runs < 1 or self.warmup_steps < 0 or self.batch_size < 1:
            raise UserError(f"{NAME} options need runs >= 1, warmup_steps >= 0, batch_size >= 1")
        if self.method not in pergrad.METHODS:
            raise UserError(f"{NAME} option method='{self.method}' is not known; use {', '.join(pergrad.METHODS)}")


@scorer
class Scorer:
    def score(self, model, pool, target) -> Scores:
        c = self.config

        def measure(warm):
            norms, flops = np.zeros(len(pool)), 0.0
            for idx, grads, f in pergrad.per_example_grads(warm, pool, batch_size=c.batch_size, method=c.method):
                norms[idx] = grads.norm(dim=1).numpy()
                flops += f
            return norms, flops, sum(e.n_tokens for e in pool)

        values, flops, tokens = warmup.averaged(model, pool, measure, runs=c.runs, steps=c.warmup_steps, lr=c.lr,
                                                batch_size=c.batch_size, seed=c.seed)
        return Scores(values, flops, tokens, meta={"runs": c.runs})
