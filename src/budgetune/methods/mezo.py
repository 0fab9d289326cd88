"""MeZO: memory-efficient zeroth-order SGD (Malladi et al. 2023, "Fine-Tuning Language Models with Just Forward
Passes"). Every weight trains from two forward passes per step; z is regenerated from a seed, so the memory is that
of inference. The price is noise: one random direction per step, so it needs many more steps than backprop."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserError
from ..memory.terms import MemoryBreakdown, Shape, runtime_overhead, weight_bytes
from .spec_parts import formats, tensor_numels
from .zeroth_order import (
    CHUNK,
    ZO_PRECISION_REASON,
    ZO_PRECISIONS,
    GaussianPerturbation,
    ZerothOrderStepper,
    forward_peak_bytes,
    mix_seed,
)

NAME = "mezo"
PRECISIONS, PRECISION_REASON = ZO_PRECISIONS, ZO_PRECISION_REASON
DEFAULT_LR = 1e-5  # larger than MeZO's 1e-6/1e-7 for 13B models: a 135M model under a small budget needs it


@dataclass(kw_only=True)
class Config:
    eps: float = 1e-3  # perturbation scale ε of the two probes θ ± εz
    samples: int = 1  # random directions averaged per step (MeZO's n; each costs two forward passes)
    iid: bool = False  # draw every entry of z afresh (MeZO's recipe, slow on CPU) instead of pooled windows

    def __post_init__(self):
        if not float(self.eps) > 0:
            raise UserError(f"mezo option eps={self.eps} must be positive; MeZO uses eps=1e-3")
        if int(self.samples) < 1:
            raise UserError(f"mezo option samples={self.samples} must be at least 1")


def prepare(model, cfg: Config, ctx) -> ZerothOrderStepper:
    model = ctx.accelerator.prepare_model(model, evaluation_mode=True)  # device and autocast only
    return ZerothOrderStepper(model, GaussianPerturbation(mix_seed(ctx.seed, 0x3E20), bool(cfg.iid)), eps=float(cfg.eps), samples=int(cfg.samples),
                              seed=ctx.seed, weight_decay=ctx.weight_decay, accelerator=ctx.accelerator)


def memory(spec, shape: Shape, cfg: Config) -> MemoryBreakdown:
    """Inference memory (MeZO §2: z regenerated from a seed, never stored): the weights and an inference-style
    forward; other: the fixed pool z is drawn from, or one fresh chunk of z at a time (zeroth_order.CHUNK values)."""
    wfmt, _ = formats(shape.precision)
    # One chunk of z (iid) or the pool (default): both as long as the largest tensor, CHUNK values at most.
    chunk = (2 if wfmt == "bf16" else 4) * min(CHUNK, max(tensor_numels(spec)))
    peak = MemoryBreakdown(weights=weight_bytes(spec.n_params, wfmt), activations=forward_peak_bytes(spec, shape),
                           other=chunk, notes=("forward passes only",))
    return peak.plus(other=runtime_overhead(shape, peak.total))  # as every method: plan's overhead


# The planner's view of this method (budgetune.planner, budgetune.flop_plan): its rank among methods by quality,
# the kind of step it runs for FLOPs, and how the tracer sets a model up for it.

QUALITY_RANK = 12  # far more steps for less (Malladi et al. 2023)
FORWARD_ONLY = True  # two forward passes per sampled direction
UNSHARDABLE = "its weight perturbations are applied in place to whole parameters with a shared seed"


def flop_kinds(spec, cfg):
    from ..flop_plan import StepKind

    return [StepKind()]


def trace_setup(model, cfg, shape):
    for p in model.parameters():
        p.requires_grad_(False)
    return model
