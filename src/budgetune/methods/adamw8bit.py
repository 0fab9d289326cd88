"""Full fine-tuning with 8-bit AdamW (Dettmers et al. 2022, "8-bit Optimizers via Block-wise Quantization"),
from bitsandbytes: both moments stored as 8-bit block-quantised codes with one fp32 scale per 256 values
(≈ 2 B/param instead of 8). Tensors under `min_8bit_size` elements keep 32-bit moments, as bitsandbytes decides."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..memory import terms as T
from ..memory.terms import MemoryBreakdown, Shape
from . import whole_model
from .base import FirstOrderStepper, TrainContext, save_full_model
from .spec_parts import (
    formats,
    matmul_params,
    state_format,
    tensor_numels,
    tied_embedding_grad_bytes,
)

NAME = "adamw8bit"
DEFAULT_LR = 2e-5


@dataclass(kw_only=True)
class Config:
    min_8bit_size: int = 4096  # tensors with fewer elements keep fp32 moments (bitsandbytes' default)
    paged: bool = False  # paged optimizer states (evicted to host memory under GPU memory pressure; CUDA only)

    def __post_init__(self):
        if int(self.min_8bit_size) < 1:
            raise UserError(f"adamw8bit option min_8bit_size={self.min_8bit_size} must be at least 1")


class AdamW8bitStepper(FirstOrderStepper):
    def save_pretrained(self, directory: Path, tokenizer) -> str:
        return save_full_model(self.unwrapped, directory, tokenizer)


def prepare(model, cfg: Config, ctx: TrainContext) -> AdamW8bitStepper:
    import bitsandbytes as bnb

    for p in model.parameters():
        p.requires_grad_(True)
    params = [p for p in model.parameters() if p.requires_grad]
    kind = bnb.optim.PagedAdamW8bit if cfg.paged else bnb.optim.AdamW8bit
    optimizer = kind(params, lr=DEFAULT_LR, weight_decay=ctx.weight_decay, min_8bit_size=int(cfg.min_8bit_size))
    return AdamW8bitStepper(model, optimizer, ctx)


def optimizer_bytes(spec, cfg: Config, precision: str = "fp32") -> int:
    """bitsandbytes 0.50 8-bit AdamW state: per tensor of at least min_8bit_size elements two uint8 codes per value
    plus two fp32 absmax per 256-value block (its optimizer block size), and two 256-entry fp32 code books shared by
    all tensors; smaller tensors keep two moments in the parameter dtype (bitsandbytes/optim/optimizer.py)."""
    numels = tensor_numels(spec)
    big = [n for n in numels if n >= int(cfg.min_8bit_size)]
    small = sum(n for n in numels if n < int(cfg.min_8bit_size))
    quantised = sum(T.adam_state_bytes(n, "8bit") for n in big) + (2 * 256 * 4 if big else 0)
    return quantised + T.adam_state_bytes(small, state_format(precision))


def memory(spec, shape: Shape, cfg: Config) -> MemoryBreakdown:
    """As full fine-tuning (weights, gradients, every layer's activations; the peak of the backward and optimizer
    phases), with the moments 8-bit (optimizer_bytes); bitsandbytes updates in place, block by block, so the
    step adds no temporaries, and the tied embedding's gradient accumulation is the transient that shows."""
    wfmt, gfmt = formats(shape.precision)
    peak = T.first_order_peak(spec, shape, weights=T.weight_bytes(spec.n_params, wfmt), n_trainable=spec.n_params,
                              state_fmt=gfmt, activations=T.training_activation_bytes(spec, shape), adam=False,
                              cache=T.autocast_cache_bytes(matmul_params(spec), shape.precision),
                              notes=("8-bit block-wise Adam moments (Dettmers et al. 2022)",))
    _, _, states = T.shard(shape, weights=0, gradients=0, optimizer=optimizer_bytes(spec, cfg, shape.precision))
    return peak.plus(optimizer=states, other=tied_embedding_grad_bytes(spec, shape.precision))


# The planner's view of this method (budgetune.planner, budgetune.flop_plan): its rank among methods by quality,
# the kind of step it runs for FLOPs, and how the tracer sets a model up for it.

QUALITY_RANK = 1  # matches full fine-tuning (Dettmers et al. 2022, "8-bit Optimizers via Block-wise Quantization")
RELIEVES = ("optimizer",)
UNSHARDABLE = "bitsandbytes' 8-bit Adam keeps blockwise state of whole tensors, not of shards"


flop_kinds = whole_model.flop_kinds
