"""PEQA: parameter-efficient fine-tuning of a quantised model by its quantisation scales only (Kim et al. 2023,
"Memory-Efficient Fine-Tuning of Compressed Large Language Models via sub-4-bit Integer Quantization", NeurIPS 2023).

Every linear layer inside the decoder layers is quantised once, round-to-nearest, per output channel and asymmetric:
W ≈ s ⊙ (W̄ − z) with W̄ ∈ {0 … 2^b − 1}, one scale s and zero point z per row (PEQA §3.1). W̄ and z are frozen; only
s trains (PEQA §3.2). The result is still the b-bit model: the same integers, new scales, so it deploys at b bits
with no merge step (unlike a LoRA adapter on a quantised base, which has to be merged into float weights).

Written here rather than on bitsandbytes: its 4-bit layers keep their scales (absmax per 64-value block) inside a
QuantState that is not a parameter and not differentiable, and NF4's block-wise scales are not PEQA's per-channel
ones; no maintained package trains quantisation scales of a transformers model.

How the scale gradient stays cheap: with s per output row, y = x·Wᵀ = s ⊙ (x·(W̄ − z)ᵀ), so the layer computes
u = x·(W̄ − z)ᵀ and y = u ⊙ s. ∂L/∂s = Σ_tokens ∂L/∂y ⊙ u needs no weight-gradient product, and ∂L/∂x =
(∂L/∂y ⊙ s)·(W̄ − z) re-expands the integers in backward rather than keeping an m×n float copy per layer. The codes
are packed two to a byte (b ≤ 4). The embedding, norms and LM head stay in float and frozen, as in the paper.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..lazy import lazy
from ..memory import terms as T
from .base import FirstOrderStepper, TrainContext

torch = lazy("torch")

NAME = "peqa"
DEFAULT_LR = 2e-5  # a relative change of the scales: PEQA uses 1e-5 … 6e-5 for LLaMA (Table 9)


@dataclass(kw_only=True)
class Config:
    bits: int = 4  # integer width of the frozen weights (2, 3 or 4; stored two codes per byte)

    def __post_init__(self):
        if int(self.bits) not in (2, 3, 4):
            raise UserError(f"peqa option bits={self.bits}: use 2, 3 or 4 (PEQA's sub-4-bit integers)")


def quantize_model(model, bits: int) -> list[str]:
    from .int_layers import QuantLinear, decoder_linears

    names = []
    for name, module in decoder_linears(model):
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, QuantLinear(module, bits))
        names.append(name)
    return names


def peqa_profile(model):
    """The FLOP profile of a PEQA step: no weight-gradient products (the scale gradient is elementwise), input
    gradients through every linear except those reading the first layer's input (nothing below them trains)."""
    from ..flop_profile import attention_backward_everywhere
    from ..flops import profile_from_model
    from .int_layers import decoder_linears

    p = profile_from_model(model)
    first = [m for n, m in decoder_linears(model) if n.split(".")[-1] in ("q_proj", "k_proj", "v_proj")]
    qkv0 = sum(m.in_features * m.out_features for m in first[:3])
    decoder = sum(m.in_features * m.out_features for _, m in decoder_linears(model))
    return dataclasses.replace(p, trainable_matmul_params=0, input_grad_params=p.matmul_params - qkv0,
                               layer_matmul_params=decoder, recompute_layers=p.n_layers,
                               attn_backward_products=attention_backward_everywhere(model))


class PeqaStepper(FirstOrderStepper):
    def __init__(self, model, optimizer, ctx: TrainContext):
        super().__init__(model, optimizer, ctx)
        self._profile = peqa_profile(self.unwrapped)

    def invalidate_profile(self) -> None:
        self._profile = peqa_profile(self.unwrapped)

    def save_pretrained(self, directory: Path, tokenizer) -> str:
        """A float model that from_pretrained opens (the scales applied to the integers) and, beside it, the
        b-bit form itself (peqa-lowbit.safetensors: codes, zero points, scales; peqa.json says how to read it)."""
        from safetensors.torch import save_file

        from .int_layers import QuantLinear

        model = self.unwrapped
        state = {k: v for k, v in model.state_dict().items()}
        low = {}
        for name, m in model.named_modules():
            if isinstance(m, QuantLinear):
                state[f"{name}.weight"] = m.dequantized().detach().contiguous()
                del state[f"{name}.scale"], state[f"{name}.zero"]
                low.update({f"{name}.codes": m.weight.detach(), f"{name}.zero": m.zero, f"{name}.scale": m.scale.detach()})
        model.save_pretrained(directory, state_dict=state, safe_serialization=True)
        save_file({k: v.contiguous() for k, v in low.items()}, str(Path(directory) / "peqa-lowbit.safetensors"))
        (Path(directory) / "peqa.json").write_text(json.dumps({
            "bits": next(m.bits for m in model.modules() if isinstance(m, QuantLinear)),
            "layout": "W = scale * (codes - zero) per output row; codes packed two per byte, high nibble first"}))
        if tokenizer is not None:
            tokenizer.save_pretrained(directory)
        return "model"


def prepare(model, cfg: Config, ctx: TrainContext) -> PeqaStepper:
    for p in model.parameters():
        p.requires_grad_(False)
    from .int_layers import QuantLinear

    quantize_model(model, int(cfg.bits))
    scales = [m.scale for m in model.modules() if isinstance(m, QuantLinear)]
    if not scales:
        raise UserError("peqa found no linear layers inside the model's decoder layers to quantise")
    optimizer = torch.optim.AdamW(scales, lr=DEFAULT_LR, weight_decay=0.0)  # decay would pull scales to zero
    return PeqaStepper(model, optimizer, ctx)


def quantized_counts(spec) -> tuple[int, int]:
    """(weights in the decoder linears, their output rows): what is stored as codes, and how many scales."""
    return (spec.n_layers * sum(l.in_features * l.out_features for l in spec.layer_linears),
            spec.n_layers * sum(l.out_features for l in spec.layer_linears))


def memory(spec, shape, cfg: Config):
    """Weights: packed codes (½ byte per weight, padding aside) plus fp32 scale and zero per row, the rest of the
    model in float; gradients and Adam moments: the scales only. Activations: those of a frozen-base backward plus
    each linear's integer product u (fp32, kept for the scale gradient; PEQA's only extra saved tensor). Other: the
    codes of one layer re-expanded to float (m×n·(1 + 4) B: uint8 and float) while it runs."""
    n_q, rows = quantized_counts(spec)
    fmt = "fp32" if shape.precision == "fp32" else "bf16"
    weights = spec.n_layers * sum(l.out_features * -(-l.in_features // 2) for l in spec.layer_linears)
    weights += 8 * rows + T.weight_bytes(spec.n_params - n_q, fmt)
    u = 4 * shape.tokens * sum(l.out_features for l in spec.layer_linears)
    acts = T.training_activation_bytes(spec, shape, base_trains=False)
    acts += u if shape.gradient_checkpointing else spec.n_layers * u
    largest = max(l.in_features * l.out_features for l in spec.layer_linears)
    return T.first_order_peak(spec, shape, weights=weights, n_trainable=rows, state_fmt="fp32", activations=acts,
                              cache=5 * largest, notes=(f"{cfg.bits}-bit codes, scales train",))


# The planner's view of this method (budgetune.planner, budgetune.flop_plan): its rank among methods by quality,
# the kind of step it runs for FLOPs, and how the tracer sets a model up for it.

QUALITY_RANK = 8


def flop_kinds(spec, cfg):
    """Only per-row scales train: no weight-gradient products."""
    from ..flop_plan import StepKind

    return [StepKind(scale_layers=frozenset(range(spec.n_layers)))]
