"""What a scorer will cost before it runs, and how many seconds that is on this machine.

Each scorer's file says what its passes are (`predicted_work(model, pool, target, config) -> Work`): FLOPs of
no-grad forward passes, FLOPs of forward+backward passes (warm-up steps, per-example gradients) and how many LoRA
copies its warm-ups build. Seconds = each kind of FLOPs over the throughput this machine measured for that kind
(one timed batch each), plus the copies at their measured time. Forward and backward throughputs are measured
apart because a CPU runs the backward's matmuls (and the per-example hooks' einsums) at a different rate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


@dataclass
class Work:
    forward: float = 0.0  # FLOPs of no-grad forward passes (scoring passes, projections, k-means)
    train: float = 0.0  # FLOPs of forward+backward passes (warm-up steps, per-example gradients)
    copies: int = 0  # LoRA copies of the model the warm-ups build (a deep copy each)

    @property
    def flops(self) -> float:
        return self.forward + self.train

    def __add__(self, other: Work) -> Work:
        return Work(self.forward + other.forward, self.train + other.train, self.copies + other.copies)


def pergrad_flops(lora_profile, examples, batch_size: int, dim: int) -> float:
    """FLOPs of one per-example-gradient pass (pergrad.per_example_grads, hooks): a training step per micro-batch
    plus the per-example weight gradients, 2·b·s·D."""
    from ..flops import train_step_flops
    from .forward import batch_groups

    lengths = np.array([e.n_tokens for e in examples])
    return float(sum(train_step_flops(lora_profile, len(g), int(lengths[g].max()))
                     + 2.0 * len(g) * int(lengths[g].max()) * dim for g in batch_groups(lengths, batch_size)))


def adapter_dim(model, r: int = 8) -> int:
    """Trainable LoRA parameters of the warm-up's copy (rank r on the attention projections)."""
    import torch

    from .warmup import ATTENTION

    return int(sum(r * (m.in_features + m.out_features) for n, m in model.named_modules()
                   if isinstance(m, torch.nn.Linear) and n.rsplit(".", 1)[-1] in ATTENTION))


@dataclass
class Rates:
    forward: float  # FLOPs per second of no-grad forward passes
    train: float | None = None  # FLOPs per second of a warm-up training step
    copy_s: float | None = None  # seconds to build one LoRA copy

    def seconds(self, work: Work) -> float:
        s = work.forward / self.forward
        if work.train:
            s += work.train / self.train
        if work.copies:
            s += work.copies * self.copy_s
        return s


def measure_rates(model, examples, *, batch: int = 8, train: bool = False) -> Rates:
    """This machine's throughputs on `model`: one timed forward batch (after a warm one), and with `train` one
    timed LoRA copy and one timed training step on it (after a warm step)."""
    from ..flops import train_step_flops
    from ..methods.base import token_loss
    from .auto import throughput
    from .forward import length_batches
    from .warmup import with_lora

    rates = Rates(throughput(model, examples, batch=batch))
    if not train:
        return rates
    t0 = time.perf_counter()
    warm = with_lora(model)
    rates.copy_s = time.perf_counter() - t0
    from ..flops import profile_from_model

    profile = profile_from_model(warm)
    warm.train()
    sample = list(examples[:batch])
    timed = 0.0
    for repeat in range(2):  # the first step warms the allocator and autograd
        flops, t0 = 0.0, time.perf_counter()
        for _, b in length_batches(sample, batch):
            loss, _ = token_loss(warm, b)
            loss.backward()
            flops += train_step_flops(profile, *b["input_ids"].shape)
        timed = time.perf_counter() - t0
        warm.zero_grad(set_to_none=True)
    rates.train = flops / max(timed, 1e-9)
    del warm
    return rates
