"""LESS (Xia et al. 2024, "LESS: Selecting Influential Data for Targeted Instruction Tuning").

1. LoRA warm-up on a small random share of the pool, with checkpoints.
2. At each checkpoint, per-example LoRA gradients: Adam-preconditioned for pool examples,
   Γ = m′/(√v′ + ε) with m′ = β₁m + (1−β₁)g and v′ = β₂v + (1−β₂)g² from the warm-up optimizer's moments; plain
   gradients for target examples.
3. Random projection to k dimensions, block by block (projection.py), stored as float16 memory maps.
4. Cosine similarity of every pool example to every target example, summed over checkpoints weighted by each
   checkpoint's learning rate; mean within each target task (category), then max over tasks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...errors import UserError
from .. import pergrad, warmup
from ..projection import BlockProjector, FeatureStore, cosine_blocks, project_stream
from ..protocol import Scores
from ..scaffold import scorer

NAME = "less"
NEEDS_MODEL = True
NEEDS_TARGET = True
DEFAULT_STRATEGY = "topk"


def warmup_subset(pool, config) -> list:
    """The random share of the pool the warm-up trains on (drawn from the seed, as `score` draws it)."""
    rng = np.random.default_rng(config.seed)
    size = max(min(len(pool), config.batch_size), round(config.warmup_fraction * len(pool)))
    return [pool[i] for i in rng.choice(len(pool), size=size, replace=False)]


def predicted_work(model, pool, target, config):
    """The warm-up on its subset (one LoRA copy), then at each checkpoint per-example gradients of the pool and
    the target, their projections to k dimensions and the cosines (selection/costs.py)."""
    from ..costs import Work, adapter_dim, pergrad_flops

    lora, dim = warmup.lora_profile(model), adapter_dim(model)
    hits = len(warmup.marks(config.warmup_steps, config.checkpoints))
    grads = pergrad_flops(lora, pool, config.batch_size, dim) + pergrad_flops(lora, target, config.batch_size, dim)
    projections = 2.0 * (len(pool) + len(target)) * dim * config.k + 2.0 * len(pool) * len(target) * config.k
    return Work(forward=hits * projections, copies=1,
                train=warmup.planned_flops(lora, warmup_subset(pool, config), steps=config.warmup_steps,
                                           batch_size=config.batch_size, seed=config.seed) + hits * grads)


@dataclass(kw_only=True)
class Config:
    warmup_fraction: float = 0.05  # share of the pool the LoRA warm-up trains on (LESS: 5%)
    warmup_steps: int = 8  # AdamW steps of the warm-up in all
    checkpoints: int = 2  # checkpoints whose gradients are used
    lr: float = 1e-3
    k: int = 512  # projection dimension (LESS uses 8192 on a GPU; 512 keeps a CPU run short)
    batch_size: int = 8  # examples per vectorised gradient pass
    method: str = "hooks"  # per-example gradients: hooks, vmap or loop
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    workdir: str = ""  # where the float16 feature files go; empty: a temporary directory
    seed: int = 0

    def __post_init__(self):
        if not 0 < self.warmup_fraction <= 1:
            raise UserError(f"{NAME} option warmup_fraction={self.warmup_fraction} must be in (0, 1]")
        if self.checkpoints < 1 or self.warmup_steps < self.checkpoints or self.k < 1 or self.batch_size < 1:
            raise UserError(f"{NAME} options need checkpoints >= 1, warmup_steps >= checkpoints, k >= 1, "
                            f"batch_size >= 1")
        if self.method not in pergrad.METHODS:
            raise UserError(f"{NAME} option method='{self.method}' is not known; use {', '.join(pergrad.METHODS)}")


@scorer
class Scorer:
    def score(self, model, pool, target) -> Scores:
        c = self.config
        subset = warmup_subset(pool, c)
        size = len(subset)
        tasks = sorted({str(e.category) for e in target})
        task_of = np.array([tasks.index(str(e.category)) for e in target])
        influence = np.zeros((len(pool), len(tasks)))
        cost = {"flops": 0.0, "tokens": 0}
        workdir = c.workdir or None

        def on_checkpoint(ck):
            dim = pergrad.dimension(ck.model)
            projector = BlockProjector(dim, c.k, seed=c.seed)
            names = list(pergrad.trainable(ck.model))
            m = torch.cat([ck.adam[n][0].reshape(-1) for n in names])
            v = torch.cat([ck.adam[n][1].reshape(-1) for n in names])

            def adam(g: torch.Tensor) -> torch.Tensor:
                m2 = c.beta1 * m + (1 - c.beta1) * g
                v2 = c.beta2 * v + (1 - c.beta2) * g * g
                return m2 / (v2.sqrt() + c.eps)

            train = FeatureStore(len(pool), c.k, workdir, f"less-train-{ck.step}")
            tgt = FeatureStore(len(target), c.k, workdir, f"less-target-{ck.step}")
            stream = pergrad.per_example_grads(ck.model, pool, batch_size=c.batch_size, method=c.method)
            cost["flops"] += project_stream(stream, projector, train, transform=adam)
            stream = pergrad.per_example_grads(ck.model, target, batch_size=c.batch_size, method=c.method)
            cost["flops"] += project_stream(stream, projector, tgt)
            for rows, cosine in cosine_blocks(train, tgt.read()):  # [rows of the pool, target]
                for t in range(len(tasks)):
                    influence[rows, t] += ck.lr * cosine[:, task_of == t].mean(axis=1)
            cost["flops"] += 2.0 * len(pool) * len(target) * c.k
            cost["tokens"] += sum(e.n_tokens for e in pool) + sum(e.n_tokens for e in target)

        spent = warmup.run(model, subset, steps=c.warmup_steps, checkpoints=c.checkpoints, lr=c.lr,
                           batch_size=c.batch_size, seed=c.seed, on_checkpoint=on_checkpoint)
        cost["flops"] += spent
        return Scores(influence.max(axis=1), cost["flops"], cost["tokens"],
                      meta={"tasks": tasks, "warmup_examples": size, "k": c.k})
