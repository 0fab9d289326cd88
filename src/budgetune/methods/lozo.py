"""LOZO: low-rank zeroth-order fine-tuning (Chen et al. 2024, "Enhancing Zeroth-Order Fine-Tuning for Language
Models with Low-Rank Structures"). Each weight matrix W (m×n) is perturbed along Z = U·Vᵀ/√r with U (m×r) drawn
every step and V (n×r) kept for `lazy` steps, so successive steps explore one low-rank subspace (the structure of
real fine-tuning gradients) instead of all of R^{m×n}. The 1/√r keeps Z's entries unit-variance, so ε and the
learning rate mean the same as in MeZO. Vectors (norm weights) get dense Gaussian directions as in MeZO.
U and V are regenerated from seeds, never stored; memory stays that of inference."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import UserError
from ..lazy import lazy
from ..memory.terms import MemoryBreakdown, Shape, runtime_overhead, weight_bytes
from .spec_parts import formats
from .zeroth_order import (
    CHUNK,
    ZO_PRECISION_REASON,
    ZO_PRECISIONS,
    ZerothOrderStepper,
    _generator,
    check_options,
    forward_peak_bytes,
    mix_seed,
)

torch = lazy("torch")

NAME = "lozo"
PRECISIONS, PRECISION_REASON = ZO_PRECISIONS, ZO_PRECISION_REASON
DEFAULT_LR = 1e-5


@dataclass(kw_only=True)
class Config:
    rank: int = 2  # rank r of each matrix's perturbation U·Vᵀ
    lazy: int = 50  # steps a V factor is kept before it is redrawn (LOZO's ν)
    eps: float = 1e-3  # perturbation scale ε
    samples: int = 1  # random directions averaged per step

    def __post_init__(self):
        check_options("lozo", self, lazy_means="new V factors", rank_hint="LOZO uses rank=2")


class LowRankPerturbation:
    def __init__(self, rank: int, lazy: int, seed: int):
        self.rank, self.lazy, self.seed = rank, lazy, seed

    def apply(self, params, seed: int, scale: float, step: int) -> None:
        with torch.no_grad():
            for i, p in enumerate(params):
                g = _generator(p.device, mix_seed(seed, i))
                if p.dim() < 2:
                    p.add_(torch.randn(p.shape, generator=g, device=p.device, dtype=p.dtype), alpha=scale)
                    continue
                w = p.view(p.shape[0], -1)
                m, n = w.shape
                v = torch.randn((n, self.rank), generator=_generator(p.device, mix_seed(self.seed, step // self.lazy, i)),
                                device=p.device, dtype=p.dtype)
                v.mul_(scale / math.sqrt(self.rank))
                rows = max(1, CHUNK // max(n, self.rank))
                for start in range(0, m, rows):
                    block = w[start: start + rows]
                    u = torch.randn((block.shape[0], self.rank), generator=g, device=p.device, dtype=p.dtype)
                    block.addmm_(u, v.t())

    def state_dict(self) -> dict:
        return {"rank": self.rank, "lazy": self.lazy, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.seed = int(state.get("seed", self.seed))


def prepare(model, cfg: Config, ctx) -> ZerothOrderStepper:
    model = ctx.accelerator.prepare_model(model, evaluation_mode=True)  # device and autocast only
    smallest = min(min(p.shape[0], p[0].numel()) for p in model.parameters() if p.dim() >= 2)
    if int(cfg.rank) > smallest:
        raise UserError(f"lozo option rank={cfg.rank} is larger than the smallest weight matrix dimension "
                        f"({smallest}); use rank <= {smallest}")
    perturbation = LowRankPerturbation(int(cfg.rank), int(cfg.lazy), mix_seed(ctx.seed, 0x10A0))
    return ZerothOrderStepper(model, perturbation, eps=float(cfg.eps), samples=int(cfg.samples), seed=ctx.seed,
                              weight_decay=ctx.weight_decay, accelerator=ctx.accelerator)


def memory(spec, shape: Shape, cfg: Config) -> MemoryBreakdown:
    """Inference memory: the weights and an inference-style forward; other: the factors of one matrix's
    perturbation at a time, regenerated from seeds."""
    wfmt, _ = formats(shape.precision)
    # A matrix's n×r V and a chunk of U rows; the rank-r product is added in place (addmm_), never materialised.
    widest = max([spec.hidden] + [l.in_features for l in spec.layer_linears])
    rows = max(1, CHUNK // widest)
    factors = 4 * (widest * int(cfg.rank) + rows * int(cfg.rank))
    peak = MemoryBreakdown(weights=weight_bytes(spec.n_params, wfmt), activations=forward_peak_bytes(spec, shape),
                           other=factors, notes=(f"rank-{cfg.rank} perturbations, forward passes only",))
    return peak.plus(other=runtime_overhead(shape, peak.total))  # as every method: plan's overhead


# The planner's view of this method (budgetune.planner, budgetune.flop_plan): its rank among methods by quality,
# the kind of step it runs for FLOPs, and how the tracer sets a model up for it.

QUALITY_RANK = 11
FORWARD_ONLY = True  # two forward passes per sampled direction
UNSHARDABLE = "its low-rank weight perturbations are applied in place to whole parameters with a shared seed"


def flop_kinds(spec, cfg):
    from ..flop_plan import StepKind

    return [StepKind()]
