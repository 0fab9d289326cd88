"""Compute: what one evaluation and one step cost, what the final evaluation reserves, and whether the FLOP budget
pays for the least a run must do.

Priced from the model's config and the tokenized data alone (budgetune.flop_plan lays out the products the ledger
will charge, budgetune.flops holds the formulas), batched exactly as the loop batches: evaluations in length order,
eval_batch_size examples per forward (train/evaluate.py); the first optimizer step from the loop's seeded order
(train/loop.py), each micro-batch padded to its longest example.
"""

from __future__ import annotations

import numpy as np

from ..errors import UserError
from ..flops import FlopProfile, forward_flops, train_step_flops


def profiles(spec, method: str, method_cfg, ckpt: bool) -> list[FlopProfile]:
    """The FlopProfile of each kind of step the method runs (one, or one per block of a cycle)."""
    from ..flop_plan import profile, step_kinds
    from ..methods import registry

    module = registry.get(method)
    return [profile(spec, k, gradient_checkpointing=ckpt and not _forward_only(method))
            for k in step_kinds(spec, module, method_cfg)]


def _forward_only(method: str) -> bool:
    """A zeroth-order method (FORWARD_ONLY in its module): two forward passes per sampled direction."""
    from ..methods import registry

    return bool(getattr(registry.get(method), "FORWARD_ONLY", False))


def mean_profile(ps: list[FlopProfile]) -> FlopProfile:
    """The per-step mean over a cycle of blocks: every FLOP formula is linear in the profile's counts."""
    if len(ps) == 1:
        return ps[0]
    fields = FlopProfile.__dataclass_fields__
    return FlopProfile(**{f: sum(getattr(p, f) for p in ps) / len(ps) for f in fields})


def eval_flops(profile: FlopProfile, examples, batch: int) -> float:
    """One evaluation of `examples`: length-ordered batches of `batch`, each padded to its longest member."""
    lengths = sorted(e.n_tokens for e in examples)
    chunks = [lengths[i: i + batch] for i in range(0, len(lengths), batch)]
    return float(sum(forward_flops(profile, len(c), c[-1]) for c in chunks))


def step_flops(spec, method: str, method_cfg, ps: list[FlopProfile], batch_examples: list, micro: int,
               ckpt: bool) -> float:
    """One optimizer step over `batch_examples` in micro-batches of `micro` (what the ledger charges)."""
    total = 0.0
    for j in range(0, len(batch_examples), micro):
        part = batch_examples[j: j + micro]
        width = max(e.n_tokens for e in part)
        if _forward_only(method):
            samples = int(getattr(method_cfg, "samples", 1) or 1)
            total += 2.0 * samples * forward_flops(ps[0], len(part), width)
        else:
            total += train_step_flops(ps[0], len(part), width, recompute=ckpt)
    return total


def first_batch(pool: list, seed: int, per_step: int) -> list:
    """The examples of the loop's first optimizer step: the seeded permutation of epoch 0 (train/loop.py order)."""
    order = np.random.default_rng([seed, 0]).permutation(len(pool))
    return [pool[i] for i in order[:per_step]]


def costs(cfg, spec, data, layout: dict) -> dict:
    """FLOPs of the evaluations the loop cannot skip, of its first step, and the smallest budget that trains."""
    from ..methods import registry

    method, micro, accum, ckpt = layout["method"], layout["micro"], layout["accum"], layout["ckpt"]
    method_cfg = registry.make_config(method, _resolved(method, layout["options"], spec))
    ps = profiles(spec, method, method_cfg, ckpt)
    forward = ps[0]  # every kind of step evaluates the same model
    batch = int(cfg.train.eval_batch_size)
    dev = eval_flops(forward, data.scoring, batch)
    test = eval_flops(forward, data.test, batch) if data.apart else 0.0
    # The final test evaluation is reserved as the loop reserves it (train/testset.reported_loss_flops): the dev
    # evaluation's FLOPs scaled by the two sets' token counts.
    test_reserve = dev * sum(e.n_tokens for e in data.test) / max(1, sum(e.n_tokens for e in data.dev)) \
        if data.apart else 0.0
    per_step = micro * accum
    step = step_flops(spec, method, method_cfg, ps, first_batch(list(data.train), cfg.train.seed, per_step), micro,
                      ckpt)
    mean = mean_profile(ps)
    return {"dev_eval": dev, "test_eval": test, "whole_eval": dev + test_reserve, "before_eval": dev + test,
            "final_reserve": dev + test_reserve, "first_step": step,
            # an ungoverned run with dev and test apart ends on the test set only (train/governed.final_dev_eval)
            "fixed_final_reserve": test_reserve if data.apart else dev,
            "minimum": dev + test + step + dev + test_reserve, "train_profile": mean,
            "flops_per_token": _per_token(method, method_cfg, mean, ckpt, layout)}


def _per_token(method, method_cfg, profile, ckpt: bool, layout) -> float:
    from ..flops import forward_flops_per_token

    s = 128  # a typical row; only shown, never used for a decision
    if _forward_only(method):
        return 2.0 * int(getattr(method_cfg, "samples", 1) or 1) * forward_flops_per_token(profile, s)
    return train_step_flops(profile, 1, s, recompute=ckpt) / s


def _resolved(method: str, options: dict, spec) -> dict:
    from ..planner.plan import resolve_options

    return resolve_options(method, options, spec)


def refuse_if_short(cfg, c: dict) -> None:
    """A FLOP budget below the evaluations before and after training plus one step cannot train: refused now."""
    max_flops = cfg.budget.max_flops
    if max_flops is None or max_flops >= c["minimum"]:
        return
    raise UserError(
        f"budget field 'max_flops' is {max_flops:.4g} but the least a run can do costs {c['minimum']:.4g} FLOPs "
        f"(held-out evaluations before and after training {c['before_eval'] + c['final_reserve']:.4g} + one "
        f"optimizer step {c['first_step']:.4g}); give --max-flops {_ceil(c['minimum'])} or more, or a smaller "
        f"--target / --heldout-fraction")


def _ceil(x: float) -> str:
    """x rounded up in its third significant digit, so the printed budget is never below what is needed."""
    import math

    e = math.floor(math.log10(x)) - 2
    return f"{math.ceil(x / 10**e) * 10**e:.3g}"
