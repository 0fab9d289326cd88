"""SubZero: zeroth-order fine-tuning in random per-layer subspaces (Yu et al. 2024/2025, "Zeroth-Order Fine-Tuning
of LLMs in Random Subspaces", arXiv:2410.08989, ICCV 2025; Algorithm 1).

Each weight matrix W_i (m×n) is perturbed along Z_i = U_i·Σ_i·V_iᵀ, where U_i (m×r) and V_i (n×r) are
column-orthonormal (QR of a Gaussian matrix), kept for `lazy` steps (the paper's T₀), and Σ_i (r×r) is a fresh
Gaussian core at every probe. One scalar finite difference over all layers scales every layer's direction, as in
MeZO. The paper claims this estimate has lower variance than MeZO's dense one and lies closer to the
backpropagation gradient; bench/zo_variance.py measures both.

One departure, for the same reason as LOZO's 1/√r: Z_i is multiplied by √(m·n)/r so its entries have unit variance
on average over subspaces, as MeZO's z does. Without it ‖Z_i‖_F ≈ r for every matrix whatever its size, the
estimate's expectation is the gradient shrunk by r²/(m·n) per matrix, and ε and the learning rate would mean
something different for each layer; with it the estimate is unbiased for the full gradient over subspaces and
MeZO's ε and learning rates carry over. Vectors (norm weights) get dense Gaussian directions as in MeZO.

The factors of the current window are kept in memory (Σ(m_i + n_i)·r values), not in the checkpoint: they are a
pure function of (run seed, window, parameter), so a resumed run rebuilds exactly the same subspaces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import UserError
from ..lazy import lazy
from ..memory.terms import MemoryBreakdown, Shape, runtime_overhead, weight_bytes
from .base import StepResult
from .spec_parts import formats
from .zeroth_order import (
    CHUNK,
    ZerothOrderStepper,
    _generator,
    check_options,
    forward_peak_bytes,
    mix_seed,
)

torch = lazy("torch")

NAME = "subzero"
DEFAULT_LR = 1e-5  # the unit-variance scaling keeps MeZO's learning rates meaningful


@dataclass(kw_only=True)
class Config:
    rank: int = 8  # rank r of each matrix's subspace: U (m×r), V (n×r) orthonormal, core Σ r×r
    lazy: int = 50  # steps a subspace (U, V) is kept before it is redrawn (the paper's T0)
    eps: float = 1e-3  # perturbation scale ε of the two probes θ ± εZ
    samples: int = 1  # random directions averaged per step (each costs two forward passes)
    scaled: bool = True  # scale U·Σ·Vᵀ by √(m·n)/r (unit-variance entries); false: the paper's unscaled direction

    def __post_init__(self):
        check_options("subzero", self, lazy_means="new subspaces", rank_hint="e.g. rank=8")


class SubspacePerturbation:
    """θ_i += scale·√(m·n)/r · U_i Σ_i V_iᵀ per matrix, dense Gaussian per vector; Σ_i from the probe's seed."""

    def __init__(self, rank: int, lazy: int, seed: int, scaled: bool = True):
        self.rank, self.lazy, self.seed, self.scaled = rank, lazy, seed, scaled
        self._window: int | None = None
        self._factors: dict[int, tuple] = {}

    def factors(self, p, i: int, step: int) -> tuple:
        window = step // self.lazy
        if window != self._window:  # drop the old window's factors before any new one is built
            self._factors, self._window = {}, window
        if i not in self._factors:
            m, n = p.shape[0], p[0].numel()
            g = _generator(p.device, mix_seed(self.seed, window, i))
            # QR in fp32 whatever the weights' dtype: orthonormality is the point of the factors.
            u = torch.linalg.qr(torch.randn((m, self.rank), generator=g, device=p.device)).Q
            v = torch.linalg.qr(torch.randn((n, self.rank), generator=g, device=p.device)).Q
            self._factors[i] = (u.to(p.dtype), v.to(p.dtype))
        return self._factors[i]

    def tensors(self) -> list:
        """The factors held now (for memory measurements)."""
        return [t for pair in self._factors.values() for t in pair]

    def apply(self, params, seed: int, scale: float, step: int) -> None:
        with torch.no_grad():
            for i, p in enumerate(params):
                g = _generator(p.device, mix_seed(seed, i))
                if p.dim() < 2:
                    p.add_(torch.randn(p.shape, generator=g, device=p.device, dtype=p.dtype), alpha=scale)
                    continue
                w = p.view(p.shape[0], -1)
                m, n = w.shape
                u, v = self.factors(p, i, step)
                core = torch.randn((self.rank, self.rank), generator=g, device=p.device, dtype=p.dtype)
                gain = math.sqrt(m * n) / self.rank if self.scaled else 1.0
                left = (u @ core).mul_(scale * gain)  # m×r; the m×n product is never built
                rows = max(1, CHUNK // max(n, self.rank))
                for start in range(0, m, rows):
                    w[start: start + rows].addmm_(left[start: start + rows], v.t())

    def state_dict(self) -> dict:
        return {"rank": self.rank, "lazy": self.lazy, "seed": self.seed, "scaled": self.scaled}

    def load_state_dict(self, state: dict) -> None:
        self.seed = int(state.get("seed", self.seed))
        self._factors, self._window = {}, None


def apply_flops(shapes: list[tuple[int, ...]], rank: int) -> float:
    """FLOPs of one pass θ += scale·U Σ Vᵀ over all parameters: per m×n matrix U·Σ (2·m·r²) and the rank-r product
    added in place (2·m·n·r); a vector's dense add is not a matrix product and is not counted (flops.py's rule)."""
    total = 0.0
    for shape in shapes:
        if len(shape) >= 2:
            m, n = shape[0], math.prod(shape[1:])
            total += 2.0 * m * rank * rank + 2.0 * m * n * rank
    return total


def qr_flops(shapes: list[tuple[int, ...]], rank: int) -> float:
    """Householder QR of every matrix's two Gaussian factors, 2·k·r² − (2/3)·r³ for a k×r factor (Golub & Van Loan,
    Matrix Computations, 4th ed., §5.2.2), paid once per window."""
    total = 0.0
    for shape in shapes:
        if len(shape) >= 2:
            for k in (shape[0], math.prod(shape[1:])):
                total += 2.0 * k * rank * rank - (2.0 / 3.0) * rank ** 3
    return total


class SubZeroStepper(ZerothOrderStepper):
    """MeZO's SPSA step with subspace directions; the ledger also gets the perturbation products and the QRs."""

    def __init__(self, model, perturbation: SubspacePerturbation, **kwargs):
        super().__init__(model, perturbation, **kwargs)
        shapes = [tuple(p.shape) for _, p in self.named]
        self._apply = apply_flops(shapes, perturbation.rank)
        self._qr = qr_flops(shapes, perturbation.rank)

    def step(self, micro_batches: list[dict], lr: float) -> StepResult:
        step = self.step_count
        result = super().step(micro_batches, lr)
        # +ε, −2ε, +ε and the update per direction. QR is charged on the window's first step, by schedule, so a
        # resumed run's ledger equals an uninterrupted one (a resume mid-window rebuilds its factors uncharged).
        extra = 4 * self.spsa.cfg.samples * self._apply
        if step % self.spsa.perturbation.lazy == 0:
            extra += self._qr
        result.flops += extra
        return result


def prepare(model, cfg: Config, ctx) -> SubZeroStepper:
    model.to(ctx.accelerator.device)
    smallest = min(min(p.shape[0], p[0].numel()) for p in model.parameters() if p.dim() >= 2)
    if int(cfg.rank) > smallest:
        raise UserError(f"subzero option rank={cfg.rank} is larger than the smallest weight matrix dimension "
                        f"({smallest}); use rank <= {smallest}")
    perturbation = SubspacePerturbation(int(cfg.rank), int(cfg.lazy), mix_seed(ctx.seed, 0x5B20), bool(cfg.scaled))
    return SubZeroStepper(model, perturbation, eps=float(cfg.eps), samples=int(cfg.samples), seed=ctx.seed,
                          weight_decay=ctx.weight_decay, accelerator=ctx.accelerator)


def factor_numels(spec) -> int:
    """Σ(m_i + n_i)·r over the weight matrices: the factors of one window (r per row and per column)."""
    total = spec.embedding_params // spec.hidden + spec.hidden  # the embedding (V×h), the LM head when tied
    total += spec.n_layers * sum(l.in_features + l.out_features for l in spec.layer_linears)
    if spec.head_params:
        total += spec.vocab + spec.hidden
    return total


def memory(spec, shape: Shape, cfg: Config) -> MemoryBreakdown:
    """Inference memory (the weights and an inference-style forward); other: the current window's orthonormal
    factors (kept, Σ(m_i + n_i)·r values) and the m×r product U·Σ of one matrix at a time."""
    wfmt, _ = formats(shape.precision)
    r = int(cfg.rank)
    per_value = weight_bytes(1, wfmt)  # the factors take the weights' dtype
    tallest = max([spec.vocab] + [l.out_features for l in spec.layer_linears])
    other = per_value * (factor_numels(spec) * r + tallest * r + r * r)
    peak = MemoryBreakdown(weights=weight_bytes(spec.n_params, wfmt), activations=forward_peak_bytes(spec, shape),
                           other=other, notes=(f"rank-{r} orthonormal subspaces, forward passes only",))
    return peak.plus(other=runtime_overhead(shape, peak.total))  # as every method: plan's overhead


# The planner's view of this method (budgetune.planner, budgetune.flop_plan): its rank among methods by quality,
# the kind of step it runs for FLOPs, and how the tracer sets a model up for it.

QUALITY_RANK = 10
FORWARD_ONLY = True  # two forward passes per sampled direction


def flop_kinds(spec, cfg):
    from ..flop_plan import StepKind

    return [StepKind()]


def trace_setup(model, cfg, shape):
    """Its step is MeZO's (two no-grad probes, in-place perturbations); its orthonormal factors (Σ(m+n)·r values,
    a few MiB) are not traced: its memory() counts them."""
    for p in model.parameters():
        p.requires_grad_(False)
    return model
