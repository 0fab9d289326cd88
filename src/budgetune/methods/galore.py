"""GaLore: gradient low-rank projection (Zhao et al. 2024, "GaLore: Memory-Efficient LLM Training by Gradient
Low-Rank Projection"), from the `galore-torch` package. Every weight trains, but for the attention and MLP
matrices Adam's moments live in a rank-r subspace of the gradient, refreshed by an SVD every `update_proj_gap`
steps: the optimizer state of an m×n matrix shrinks from 2·m·n to 2·r·max(m, n) values plus an r·min(m, n)
projector. Embedding, norms and head keep ordinary Adam moments, as in the paper."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..flops import _decoder_layers
from ..lazy import lazy
from ..memory import terms as T
from ..memory.terms import MemoryBreakdown, Shape
from . import whole_model
from .base import FirstOrderStepper, TrainContext, save_full_model
from .spec_parts import (
    formats,
    layer_matrix_params,
    matmul_params,
    state_format,
    tied_embedding_grad_bytes,
)

torch = lazy("torch")

NAME = "galore"
DEFAULT_LR = 1e-4
PROJ_TYPES = ("std", "reverse_std", "left", "right")


@dataclass(kw_only=True)
class Config:
    rank: int = 64  # rank r of the projected gradient and moments
    update_proj_gap: int = 200  # steps between SVD refreshes of the projector (the paper's T)
    scale: float = 0.25  # scale α of the projected-back update (the paper's default)
    proj_type: str = "std"  # which side is projected: std (the smaller), reverse_std, left, right

    def __post_init__(self):
        if int(self.rank) < 1:
            raise UserError(f"galore option rank={self.rank} must be at least 1; the paper uses 128–512")
        if int(self.update_proj_gap) < 1:
            raise UserError(f"galore option update_proj_gap={self.update_proj_gap} must be at least 1 step")
        if not float(self.scale) > 0:
            raise UserError(f"galore option scale={self.scale} must be positive, e.g. 0.25")
        if self.proj_type not in PROJ_TYPES:
            raise UserError(f"galore option proj_type={self.proj_type!r} is not known; use one of "
                            f"{', '.join(PROJ_TYPES)}")


def svd_flops(m: int, n: int) -> float:
    """Thin SVD with both singular-vector sets of an m×n matrix: 6·M·N² + 20·N³ for M ≥ N (R-SVD; Golub & Van Loan,
    "Matrix Computations", 3rd ed., §5.4.5, Fig. 5.4.1)."""
    big, small = max(m, n), min(m, n)
    return 6.0 * big * small ** 2 + 20.0 * small ** 3


def projection_flops(m: int, n: int, rank: int) -> float:
    """Project the gradient to rank r and the update back: two m·n·r matrix products, 2 FLOPs per multiply-add."""
    return 2 * 2.0 * m * n * rank


def galore_matrices(model) -> list[torch.nn.Parameter]:
    """The 2-D weights of the decoder layers' linear layers: where GaLore applies."""
    out = []
    for layer in _decoder_layers(model):
        for module in layer.modules():
            if isinstance(module, torch.nn.Linear):
                out.append(module.weight)
    return out


class GaLoreStepper(FirstOrderStepper):
    def __init__(self, model, optimizer, ctx: TrainContext, cfg: Config, matrices: list):
        super().__init__(model, optimizer, ctx)
        self.cfg = cfg
        self.shapes = [tuple(p.shape) for p in matrices]
        self.step_count = 0

    def step(self, micro_batches, lr):
        result = super().step(micro_batches, lr)
        self._compact_projectors()
        result.flops += self._extra()
        self.step_count += 1
        return result

    def cost(self, micro_batches) -> float:
        return super().cost(micro_batches) + self._extra()

    def _extra(self) -> float:
        extra = sum(projection_flops(m, n, int(self.cfg.rank)) for m, n in self.shapes)
        if self.step_count % int(self.cfg.update_proj_gap) == 0:  # galore-torch refreshes at its step 0, T, 2T, ...
            extra += sum(svd_flops(m, n) for m, n in self.shapes)
        return extra

    def _compact_projectors(self) -> None:
        compact_projectors(self._inner())

    def _inner(self):
        return getattr(self.optimizer, "optimizer", self.optimizer)

    def state_dict(self) -> dict:
        # galore-torch keeps a GaLoreProjector object in each matrix's state; store its tensor and settings instead,
        # so the checkpoint loads with weights_only=True.
        saved = self._inner().state_dict()
        state = {}
        for key, entry in saved["state"].items():
            entry = dict(entry)
            proj = entry.get("projector")
            if proj is not None:
                entry["projector"] = {"ortho_matrix": proj.ortho_matrix, "rank": proj.rank,
                                      "update_proj_gap": proj.update_proj_gap, "scale": proj.scale,
                                      "proj_type": proj.proj_type}
            state[key] = entry
        return {"step": self.step_count, "optimizer": {"state": state, "param_groups": saved["param_groups"]}}

    def load_state_dict(self, state: dict) -> None:
        from galore_torch.galore_projector import GaLoreProjector

        self.step_count = int(state["step"])
        opt_state = {}
        for key, entry in state["optimizer"]["state"].items():
            entry = dict(entry)
            saved = entry.get("projector")
            if saved is not None:
                proj = GaLoreProjector(saved["rank"], update_proj_gap=saved["update_proj_gap"], scale=saved["scale"],
                                       proj_type=saved["proj_type"])
                proj.ortho_matrix = saved["ortho_matrix"]
                entry["projector"] = proj
            opt_state[key] = entry
        self._inner().load_state_dict({"state": opt_state, "param_groups": state["optimizer"]["param_groups"]})

    def save_pretrained(self, directory: Path, tokenizer) -> str:
        return save_full_model(self.unwrapped, directory, tokenizer)


def prepare(model, cfg: Config, ctx: TrainContext) -> GaLoreStepper:
    from galore_torch import GaLoreAdamW

    for p in model.parameters():
        p.requires_grad_(True)
    matrices = galore_matrices(model)
    if not matrices:
        raise UserError("galore found no linear layers inside the decoder layers to project")
    smallest = min(min(p.shape) for p in matrices)
    if int(cfg.rank) > smallest:
        raise UserError(f"galore option rank={cfg.rank} is larger than the smallest projected matrix dimension "
                        f"({smallest}); use rank <= {smallest}")
    optimizer = GaLoreAdamW(param_groups(model, cfg, matrices), lr=DEFAULT_LR, weight_decay=ctx.weight_decay,
                            no_deprecation_warning=True)
    return GaLoreStepper(model, optimizer, ctx, cfg, matrices)


def param_groups(model, cfg: Config, matrices: list) -> list[dict]:
    """galore_torch's two groups: the unprojected tensors first (plain Adam), then the projected matrices."""
    ids = {id(p) for p in matrices}
    others = [p for p in dict(model.named_parameters()).values() if id(p) not in ids]
    return [{"params": others},
            {"params": matrices, "rank": int(cfg.rank), "update_proj_gap": int(cfg.update_proj_gap),
             "scale": float(cfg.scale), "proj_type": cfg.proj_type}]


def compact_projectors(optimizer) -> None:
    """galore-torch keeps its projector as a slice of the SVD's full U or Vh, which holds the whole min(m, n)-wide
    matrix alive; keep only the r rows/columns it uses (after each step, so only a refresh step holds them all)."""
    for state in optimizer.state.values():
        proj = state.get("projector")
        m = getattr(proj, "ortho_matrix", None)
        if torch.is_tensor(m) and m.untyped_storage().nbytes() > m.numel() * m.element_size():
            proj.ortho_matrix = m.clone()


def matrix_state_values(m: int, n: int, rank: int, proj_type: str) -> int:
    """Values GaLore keeps for an m×n (out×in) weight between steps: two rank-r moments and the r-wide projector
    (galore_projector.py: 'std' projects onto the smaller side's singular vectors)."""
    r = min(rank, m, n)
    right = {"std": m >= n, "reverse_std": m < n, "right": True, "left": False}[proj_type]
    # right: moments m×r, projector r×n; left: moments r×n, projector m×r.
    return (2 * m * r + r * n) if right else (2 * r * n + m * r)


def refresh_excess_values(m: int, n: int, rank: int, proj_type: str) -> int:
    """At a projector refresh the new projector is a slice of the SVD factor (Vh[:r] or U[:, :r]), cast (copied)
    only when the gradient is not fp32: with fp32 gradients the whole k-row factor (k = min(m, n)) stays alive
    until compact_projectors runs after the step, (k − r)·side values more than the projector."""
    r, k = min(rank, m, n), min(m, n)
    right = {"std": m >= n, "reverse_std": m < n, "right": True, "left": False}[proj_type]
    return (k - r) * (n if right else m)


def optimizer_bytes(spec, cfg: Config, precision: str = "fp32") -> int:
    sfmt = state_format(precision)
    projected = spec.n_layers * layer_matrix_params(spec)
    low_rank = spec.n_layers * sum(matrix_state_values(l.out_features, l.in_features, int(cfg.rank), cfg.proj_type)
                                   for l in spec.layer_linears)
    return T.adam_state_bytes(spec.n_params - projected, sfmt) + (2 if sfmt == "bf16" else 4) * low_rank


def step_temp_bytes(spec, cfg: Config, precision: str) -> tuple[int, int]:
    """galore_torch's AdamW updates one tensor at a time: an unprojected tensor of N values needs sqrt(v) and m/sqrt(v)
    (2N); a projected m×n matrix needs its projected gradient, sqrt(v) and m/sqrt(v) (rank-r each) and the m×n
    update projected back. Returns the largest of each kind (unprojected, projected)."""
    width = 2 if state_format(precision) == "bf16" else 4
    unprojected = spec.vocab * spec.hidden  # the embedding (and an untied head): the largest tensor not projected

    def projected(m: int, n: int) -> int:
        r = min(int(cfg.rank), m, n)
        right = {"std": m >= n, "reverse_std": m < n, "right": True, "left": False}[cfg.proj_type]
        return m * n + 3 * r * (m if right else n)

    projected = max(projected(l.out_features, l.in_features) for l in spec.layer_linears)
    return width * 2 * unprojected, width * projected


def memory(spec, shape: Shape, cfg: Config) -> MemoryBreakdown:
    """As full fine-tuning (all weights, gradients and activations), with rank-r moments and projectors on the
    decoder matrices. The peak is the larger of two moments: the start of backward (activations and the autocast
    cache) and the time gradients exist (the end of backward, with the tied embedding's gradient accumulation, and the
    optimizer step, with the thin SVD of the largest matrix at a projector refresh or step_temp_bytes' temporaries,
    and at a refresh the full SVD factors the new projectors are slices of)."""
    wfmt, gfmt = formats(shape.precision)
    kw = dict(weights=T.weight_bytes(spec.n_params, wfmt), n_trainable=spec.n_params, state_fmt=gfmt, adam=False,
              notes=(f"rank-{cfg.rank} projected Adam moments on the decoder matrices",))
    backward = T.first_order_peak(spec, shape, activations=T.training_activation_bytes(spec, shape),
                                  cache=T.autocast_cache_bytes(matmul_params(spec), shape.precision), **kw)
    largest = max((l.in_features * l.out_features, min(l.in_features, l.out_features)) for l in spec.layer_linears)
    svd = 4 * (largest[0] + largest[1] * largest[1] + largest[1])
    refresh = 0 if state_format(shape.precision) == "bf16" else 4 * spec.n_layers * sum(
        refresh_excess_values(l.out_features, l.in_features, int(cfg.rank), cfg.proj_type) for l in spec.layer_linears)
    # galore.prepare puts the unprojected tensors in the first parameter group: their temporaries come and go before
    # the refresh creates the first projector.
    unprojected, projected = step_temp_bytes(spec, cfg, shape.precision)
    step = T.first_order_peak(spec, shape, activations=0, **kw).plus(
        other=max(unprojected, refresh + max(svd, projected), tied_embedding_grad_bytes(spec, shape.precision)))
    _, _, states = T.shard(shape, weights=0, gradients=0, optimizer=optimizer_bytes(spec, cfg, shape.precision))
    return (backward if backward.total >= step.total else step).plus(optimizer=states)


# The planner's view of this method (budgetune.planner, budgetune.flop_plan): its rank among methods by quality,
# the kind of step it runs for FLOPs, and how the tracer sets a model up for it.

QUALITY_RANK = 2  # close to full fine-tuning (Zhao et al. 2024)
RELIEVES = ("optimizer",)
UNSHARDABLE = "its gradient projection needs each whole weight matrix on the rank (SVD of the full gradient)"
PLAN_OPTIONS = [{}]  # its default rank, the one a run without options trains with


flop_kinds = whole_model.flop_kinds


trace_setup = whole_model.trace_setup


def trace_optimizer(model, cfg, trainable):
    """galore_torch's optimizer, projector included, as GaLoreStepper builds it."""
    from galore_torch import GaLoreAdamW

    groups = param_groups(model, cfg or Config(), galore_matrices(model))
    return GaLoreAdamW(groups, lr=1e-5, no_deprecation_warning=True)


def trace_after_step(optimizer) -> None:
    compact_projectors(optimizer)  # what GaLoreStepper does after each step
