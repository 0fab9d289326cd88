"""What a training step looks like on one device (Shape), the breakdown of its memory (MemoryBreakdown), and the
dtypes each precision mode stores. The shared vocabulary of the memory terms (terms.py re-exports it)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..errors import UserError

PRECISIONS = ("fp32", "amp_bf16", "bf16")
DEFAULT_PADDING = 0.25  # padding share assumed for an unset Shape.padding (the peak does not depend on its value)
ATTENTIONS = ("sdpa", "eager")
SHARDINGS = ("none", "zero2", "zero3", "fsdp")
TERMS = ("weights", "gradients", "optimizer", "activations", "other")


@dataclass(frozen=True, kw_only=True)
class Shape:
    """How one device runs a training step."""

    micro_batch: int = 1
    seq_len: int = 512
    precision: str = "amp_bf16"  # fp32 | amp_bf16 (fp32 weights, bf16 autocast) | bf16 (pure bf16 weights)
    gradient_checkpointing: bool = False
    attention: str = "sdpa"  # sdpa (fused: no s×s matrix kept) | eager (s×s scores and probabilities kept)
    ranks: int = 1  # data-parallel processes
    sharding: str = "none"  # none | zero2 (grads + optimizer) | zero3 / fsdp (also weights)
    overhead_bytes: int = 0  # fixed runtime overhead (CUDA context, workspaces); 0 for tensor bytes only
    fragmentation: float = 0.0  # allocator slack as a share of the tensor bytes
    # Share of a micro-batch's positions that are padding (budgetune.data.collate pads every example to the
    # longest). None: as the training loop runs, where any micro-batch of 2 or more examples of unequal length has
    # some. Any padding makes transformers pass a mask to attention, which changes what attention keeps.
    padding: float | None = None

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise UserError(f"precision '{self.precision}' is not known; use one of {', '.join(PRECISIONS)}")
        if self.attention not in ATTENTIONS:
            raise UserError(f"attention '{self.attention}' is not known; use one of {', '.join(ATTENTIONS)}")
        if self.sharding not in SHARDINGS:
            raise UserError(f"sharding '{self.sharding}' is not known; use one of {', '.join(SHARDINGS)}")
        for name in ("micro_batch", "seq_len", "ranks"):
            if int(getattr(self, name)) < 1:
                raise UserError(f"{name.replace('_', '-')} must be at least 1 (got {getattr(self, name)})")
        if self.overhead_bytes < 0 or not 0 <= self.fragmentation < 1:
            raise UserError("runtime overhead must be >= 0 bytes and fragmentation in [0, 1)")
        if self.padding is not None and not 0 <= self.padding < 1:
            raise UserError(f"padding share {self.padding} must be in [0, 1)")

    @property
    def padding_share(self) -> float:
        """The padding share in use: none in a single-example micro-batch, DEFAULT_PADDING when unset."""
        if self.micro_batch == 1:
            return 0.0
        return DEFAULT_PADDING if self.padding is None else float(self.padding)

    @property
    def masked(self) -> bool:
        """Whether attention gets a mask: transformers drops an all-ones mask, so only a padded batch has one."""
        return self.padding_share > 0

    @property
    def tokens(self) -> int:
        return self.micro_batch * self.seq_len

    def with_(self, **kw) -> Shape:
        return replace(self, **kw)


@dataclass(frozen=True)
class MemoryBreakdown:
    weights: int = 0
    gradients: int = 0
    optimizer: int = 0
    activations: int = 0
    other: int = 0
    notes: tuple[str, ...] = field(default=())

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations + self.other

    @property
    def binding_term(self) -> str:
        """The largest term: the one to cut first when the total does not fit."""
        return max(TERMS, key=lambda t: getattr(self, t))

    def to_dict(self) -> dict:
        d = {t: int(getattr(self, t)) for t in TERMS}
        d["total"] = int(self.total)
        return d

    def plus(self, **terms) -> MemoryBreakdown:
        return replace(self, **{k: int(getattr(self, k) + v) for k, v in terms.items()})


def precision_dtypes(precision: str) -> tuple[str, int, int, str]:
    """(weight format, activation bytes, residual-stream bytes, gradient format) of a precision mode.

    Under autocast the linear layers run in bf16 but the residual stream stays fp32 (embedding output and every
    residual add are fp32 + bf16 → fp32), so the two are counted apart.
    """
    return {"fp32": ("fp32", 4, 4, "fp32"), "amp_bf16": ("fp32", 2, 4, "fp32"),
            "bf16": ("bf16", 2, 2, "bf16")}[precision]
