"""Short LoRA warm-up runs on a copy of the model, for scorers that read learning dynamics (EL2N, GraNd, S2L, LESS,
RHO-LOSS). The caller's model is never changed: the run trains a deep copy, so scoring during training is safe."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ..data import Example
from ..flops import profile_from_model, train_step_flops
from .forward import length_batches

ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]


@dataclass
class Checkpoint:
    step: int
    lr: float
    model: torch.nn.Module  # the warmed copy at this step (the same object for every checkpoint of a run)
    adam: dict = field(default_factory=dict)  # parameter name → (exp_avg, exp_avg_sq), for Adam-preconditioning


def with_lora(model, *, r: int = 8, target_modules: list | None = None, seed: int = 0):
    """A deep copy of `model` with trainable LoRA adapters (an existing peft model keeps its own adapters)."""
    from peft import LoraConfig, get_peft_model

    clone = copy.deepcopy(model)
    if hasattr(clone, "peft_config"):
        return clone
    for p in clone.parameters():
        p.requires_grad_(False)
    names = {n.rsplit(".", 1)[-1] for n, m in clone.named_modules() if isinstance(m, torch.nn.Linear)}
    targets = [t for t in (target_modules or ATTENTION) if t in names]
    torch.manual_seed(seed)
    return get_peft_model(clone, LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0, target_modules=targets,
                                            task_type="CAUSAL_LM"))


def averaged(model, pool: list[Example], measure: Callable, *, runs: int, steps: int, lr: float, batch_size: int,
             seed: int) -> tuple[np.ndarray, float, int]:
    """Mean over `runs` warm-up runs (seeds seed, seed + 1, ...) of `measure(warmed_model) -> (values per pool
    example, FLOPs, tokens)`, measured once at the end of each run; returns (mean values, FLOPs, tokens), the
    warm-ups' training FLOPs included. What EL2N and GraNd share."""
    total = np.zeros(len(pool))
    cost = {"flops": 0.0, "tokens": 0}

    def on_checkpoint(ck: Checkpoint) -> None:
        values, flops, tokens = measure(ck.model)
        total[:] += values
        cost["flops"] += flops
        cost["tokens"] += tokens

    for r in range(runs):
        spent = run(model, pool, steps=steps, lr=lr, batch_size=batch_size, seed=seed + r, on_checkpoint=on_checkpoint)
        cost["flops"] += spent
    return total / runs, cost["flops"], cost["tokens"]


def run(model, examples: list[Example], *, steps: int, checkpoints: int = 1, lr: float = 1e-3,
        batch_size: int = 8, seed: int = 0, r: int = 8, on_checkpoint: Callable[[Checkpoint], None]) -> float:
    """Train a LoRA copy for `steps` AdamW steps on `examples`; call `on_checkpoint` `checkpoints` times, evenly
    spaced (the last one at the end; with steps=0, once on the untrained copy). Returns the training FLOPs.

    Add the result to a running total in a statement of its own: `total["flops"] += run(...)` reads the total
    before the run, so whatever `on_checkpoint` adds to it meanwhile is lost."""
    from ..methods.base import token_loss
    from .forward import progress_bar

    warm = with_lora(model, r=r, seed=seed)
    params = {n: p for n, p in warm.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW(list(params.values()), lr=lr, weight_decay=0.0)
    profile = profile_from_model(warm)
    rng = np.random.default_rng(seed)
    checkpoint_steps = set(marks(steps, checkpoints))
    flops, step = 0.0, 0
    warm.train()
    if steps == 0:
        on_checkpoint(Checkpoint(0, lr, warm, {}))
        return 0.0
    bar = progress_bar(steps * min(batch_size, len(examples)), "warm-up steps")
    try:
        while step < steps:
            shuffled = [examples[i] for i in rng.permutation(len(examples))]
            # One optimizer step per `batch_size` examples; under the token cap they run as several micro-batches
            # whose summed token losses are divided by the step's token count, the same gradient as one batch.
            counted = 0
            for _, batch in length_batches(shuffled[:batch_size], batch_size):
                loss_sum, n = token_loss(warm, batch)
                loss_sum.backward()
                counted += n
                b, s = batch["input_ids"].shape
                flops += train_step_flops(profile, b, s)
                if bar is not None:
                    bar.update(b)
            for p in params.values():
                if p.grad is not None:
                    p.grad /= max(1, counted)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if step in checkpoint_steps:
                state = optimizer.state
                adam = {n: (state[p]["exp_avg"].clone(), state[p]["exp_avg_sq"].clone())
                        for n, p in params.items() if p in state}
                warm.eval()
                on_checkpoint(Checkpoint(step, lr, warm, adam))
                warm.train()
    finally:
        if bar is not None:
            bar.close()
    return flops


def marks(steps: int, checkpoints: int) -> list[int]:
    """The steps after which `run` calls `on_checkpoint` (evenly spaced, the last at the end)."""
    return sorted({max(1, round(steps * (c + 1) / checkpoints)) for c in range(checkpoints)}) if steps else []


def planned_flops(model_profile, examples: list[Example], *, steps: int, batch_size: int = 8, seed: int = 0) -> float:
    """The training FLOPs `run` will spend, before it runs: the same seeded draws and the same micro-batches.
    `model_profile` is the LoRA copy's profile (`lora_profile`)."""
    from .forward import batch_groups

    rng = np.random.default_rng(seed)
    flops = 0.0
    for _ in range(steps):
        lengths = np.array([examples[i].n_tokens for i in rng.permutation(len(examples))[:batch_size]])
        flops += sum(train_step_flops(model_profile, len(g), int(lengths[g].max()))
                     for g in batch_groups(lengths, batch_size))
    return flops


def lora_profile(model, r: int = 8):
    """FLOP profile of the warm-up's LoRA copy (frozen base, rank-r adapters on attention) without copying the
    model: the model read as frozen, with the adapters `with_lora` would add (budgetune.flop_profile)."""
    from ..flop_profile import read_profile

    if hasattr(model, "peft_config"):
        return profile_from_model(model)
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        return read_profile(model, adapters={t: r for t in ATTENTION})
    finally:
        for p, was in flags:
            p.requires_grad_(was)
