"""FLOPs of training and inference as pure functions of a FlopProfile and a padded batch's shape.

Conventions (one multiply-add = 2 FLOPs; only matrix products are counted, as torch's FlopCounterMode does, so the
two can be compared; see budgetune.flops_reference):
- Forward per token: 2·N for the N weights each token multiplies (every Linear, GPT-2's Conv1D, fused qkv and
  gate_up projections, MoE routers, the top-k routed experts plus shared experts, the LM head and adapters; an
  embedding lookup is free), plus per layer 2·s·d_attn for QKᵀ and 2·s·d_attn for A·V over the full s×s score
  matrix of a padded batch (Kaplan et al. 2020, "Scaling Laws for Neural Language Models", Table 1), which is what
  the kernels compute and FlopCounterMode counts.
- Backward (Narayanan et al. 2021, "Efficient Large-Scale Language Model Training on GPU Clusters"): 2·N for the
  activation gradient of every product whose input needs a gradient, plus 2·N for every product whose weight
  trains (full fine-tuning: the familiar 6·N; a frozen base with adapters ≈ 4·N; a top block alone much less).
  Attention backward runs only in layers where a query, key or value needs a gradient: a fused kernel (SDPA, flash)
  recomputes the scores and runs 5 products there (torch.utils.flop_counter.sdpa_backward_flop_count, after Dao et
  al. 2022, "FlashAttention"); eager attention runs only the products whose operands need a gradient.
- Gradient checkpointing runs the forward of every decoder layer that backward reaches once more (Chen et al. 2016,
  "Training Deep Nets with Sublinear Memory Cost").
- Zeroth-order methods run forward passes only.

Which products need which gradient is read off the model as the loop builds it (budgetune.flop_profile).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FlopProfile:
    """Per-token weight counts of a model as it trains now, and its attention shape."""

    matmul_params: int  # weights each token multiplies in a forward pass (MoE: routed experts only)
    trainable_matmul_params: int  # of those, the ones whose weight gradient backward computes
    input_grad_params: int  # of those, the ones whose input gradient backward computes
    layer_matmul_params: int  # weights of the decoder layers backward reaches (recomputed under checkpointing)
    n_layers: int
    attn_dim: int  # query heads × head dim: the width of QKᵀ and of A·V
    attn_backward_products: float = 0.0  # attention products backward runs, summed over layers (5 per fused layer)
    recompute_layers: int = 0  # decoder layers backward reaches: their attention forward reruns under checkpointing


def forward_flops_per_token(p: FlopProfile, seq_len: int) -> float:
    """2·N + 4·n_layers·s·d_attn (Kaplan et al. 2020)."""
    return 2.0 * p.matmul_params + 4.0 * p.n_layers * seq_len * p.attn_dim


def backward_flops_per_token(p: FlopProfile, seq_len: int) -> float:
    """2·N_input-grad + 2·N_trainable + 2·s·d_attn per attention product backward runs (Narayanan et al. 2021)."""
    return 2.0 * p.input_grad_params + 2.0 * p.trainable_matmul_params \
        + 2.0 * p.attn_backward_products * seq_len * p.attn_dim


def recompute_flops_per_token(p: FlopProfile, seq_len: int) -> float:
    """One more forward of the decoder layers backward reaches, under gradient checkpointing (Chen et al. 2016)."""
    return 2.0 * p.layer_matmul_params + 4.0 * p.recompute_layers * seq_len * p.attn_dim


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
    """One generated token with a KV cache: 2·N + 4·n_layers·context·d_attn (Kaplan et al. 2020)."""
    return 2.0 * p.matmul_params + 4.0 * p.n_layers * context_len * p.attn_dim


def profile_from_model(model) -> FlopProfile:
    """The FlopProfile of a (possibly peft-wrapped, possibly quantised) causal LM as it trains now."""
    from .flop_profile import read_profile

    return read_profile(model)


def _decoder_layers(model) -> list:
    from .flop_profile import decoder_layers

    return decoder_layers(model)
