"""FLOPs of training and inference as pure functions of a model's shape.

Conventions (one multiply-add = 2 FLOPs; only matrix products are counted, as
`torch.utils.flop_counter.FlopCounterMode` does, so the two can be compared):
- Forward per token: 2·N_mm for the N_mm parameters used in matrix products (every linear layer, the LM head and
  adapters; an embedding lookup is free), plus attention 2·s·d_attn for QKᵀ and 2·s·d_attn for A·V per layer
  (Kaplan et al. 2020, "Scaling Laws for Neural Language Models", Table 1; counted over the full s×s score matrix,
  which is what the kernels and FlopCounterMode count).
- Backward: 2·N for the gradients of activations through every matrix product whose input needs a gradient, plus
  2·N only for parameters that receive gradients (Narayanan et al. 2021; so full fine-tuning is the familiar 6·N,
  a frozen base with adapters ≈ 4·N); attention backward is twice its forward (4 batched products).
- Gradient checkpointing recomputes the decoder layers' forward once more (Chen et al. 2016).
- Zeroth-order methods run forward passes only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class FlopProfile:
    """What the formulas need to know of a model and of which of its parameters train."""

    matmul_params: int  # parameters used in matrix products per token, LM head and adapters included
    trainable_matmul_params: int  # of those, the ones that receive weight gradients
    input_grad_params: int  # of those, the ones whose input needs a gradient in backward
    layer_matmul_params: int  # of those, the ones inside decoder layers (recomputed under checkpointing)
    n_layers: int
    attn_dim: int  # query heads × head dim


def forward_flops_per_token(p: FlopProfile, seq_len: int) -> float:
    """2·N_mm + 4·n_layers·s·d_attn (Kaplan et al. 2020)."""
    return 2.0 * p.matmul_params + 4.0 * p.n_layers * seq_len * p.attn_dim


def backward_flops_per_token(p: FlopProfile, seq_len: int) -> float:
    """2·N_input-grad + 2·N_trainable + 8·n_layers·s·d_attn (Narayanan et al. 2021)."""
    attention = 8.0 * p.n_layers * seq_len * p.attn_dim if p.input_grad_params or p.trainable_matmul_params else 0.0
    return 2.0 * p.input_grad_params + 2.0 * p.trainable_matmul_params + attention


def recompute_flops_per_token(p: FlopProfile, seq_len: int) -> float:
    """One more forward of the decoder layers under gradient checkpointing (Chen et al. 2016)."""
    return 2.0 * p.layer_matmul_params + 4.0 * p.n_layers * seq_len * p.attn_dim


def train_step_flops(p: FlopProfile, batch_size: int, seq_len: int, *, recompute: bool = False) -> float:
    """FLOPs of one forward+backward over a (batch_size × seq_len) padded batch."""
    per_token = forward_flops_per_token(p, seq_len) + backward_flops_per_token(p, seq_len)
    if recompute:
        per_token += recompute_flops_per_token(p, seq_len)
    return per_token * batch_size * seq_len


def forward_flops(p: FlopProfile, batch_size: int, seq_len: int) -> float:
    """FLOPs of one forward pass (evaluation, scoring, zeroth-order probes) over a padded batch."""
    return forward_flops_per_token(p, seq_len) * batch_size * seq_len


def decode_flops_per_token(p: FlopProfile, context_len: int) -> float:
    """One generated token with a KV cache: 2·N_mm + 4·n_layers·context·d_attn (Kaplan et al. 2020)."""
    return 2.0 * p.matmul_params + 4.0 * p.n_layers * context_len * p.attn_dim


# Linear layers that read a decoder layer's input directly; their input needs no gradient when nothing below them
# trains (a frozen embedding), which saves their activation-gradient products.
_LAYER_INPUT = re.compile(r"(^|\.)(q_proj|k_proj|v_proj|qkv_proj|query_key_value|c_attn|Wqkv)(\.|$)")


def profile_from_model(model) -> FlopProfile:
    """Read a FlopProfile off a (possibly peft-wrapped, possibly quantised) causal LM."""
    from torch import nn

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.config
    n_layers = int(config.num_hidden_layers)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    attn_dim = int(config.num_attention_heads * head_dim)

    layers = _decoder_layers(base)
    layer_ids = {id(m): i for i, layer in enumerate(layers) for m in layer.modules()}
    embedding = base.get_input_embeddings()
    needs = bool(embedding is not None and embedding.weight.requires_grad)

    def n_params(m) -> int:
        w = m.weight
        # bitsandbytes 4-bit weights are packed two per byte; count the logical matrix.
        return int(m.in_features * m.out_features) if hasattr(m, "in_features") else int(w.numel())

    def trains(m) -> bool:
        return bool(m.weight.requires_grad)

    linears = [(name, m) for name, m in base.named_modules() if isinstance(m, nn.Linear)]
    by_layer: dict[int, list] = {}
    outside = []
    for name, m in linears:
        (by_layer.setdefault(layer_ids[id(m)], []) if id(m) in layer_ids else outside).append((name, m))

    total = trainable = input_grad = in_layers = 0
    for i in range(len(layers)):
        mods = by_layer.get(i, [])
        layer_trains = any(trains(m) for _, m in mods)
        for name, m in mods:
            n = n_params(m)
            total += n
            in_layers += n
            trainable += n if trains(m) else 0
            reads_layer_input = bool(_LAYER_INPUT.search(name)) and ".lora_B" not in name
            if needs or (layer_trains and not reads_layer_input):
                input_grad += n
        needs = needs or layer_trains
    for _, m in outside:
        n = n_params(m)
        total += n
        trainable += n if trains(m) else 0
        input_grad += n if needs else 0
    return FlopProfile(total, trainable, input_grad, in_layers, n_layers, attn_dim)


def _decoder_layers(model) -> list:
    from torch import nn

    best: list = []
    for _, m in model.named_modules():
        if isinstance(m, nn.ModuleList) and len(m) > len(best):
            best = list(m)
    return best
