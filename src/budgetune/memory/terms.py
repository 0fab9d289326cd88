"""Memory terms of fine-tuning as pure functions: M = M_θ + M_G + M_O + M_A (+ other), in bytes.

API (stable; add, don't break):
  Shape(micro_batch, seq_len, precision, gradient_checkpointing, attention, ranks, sharding, overhead_bytes,
        fragmentation)                           what a run looks like on one device
  MemoryBreakdown(weights, gradients, optimizer, activations, other, notes)   .total, .binding_term, .to_dict()
  weight_bytes(n_params, fmt)                    fmt in WEIGHT_FORMATS: fp32, bf16, fp16, int8, nf4, fp4
  gradient_bytes(n_trainable, dtype)             dtype: fp32 / bf16
  adam_state_bytes(n_trainable, fmt)             fmt: fp32, bf16 or 8bit (two moments)
  optimizer_step_temp_bytes(n_trainable, fmt)    transient buffers inside optimizer.step (foreach AdamW)
  activation_bytes(spec, shape, *, base_trains, adapters, grad_layers, head_trains)
                                                 bytes saved for backward by the decoder layers
  logits_bytes(spec, shape, *, head_trains)      the LM head's logits and the loss's buffers (peak around the loss)
  fused_qkv_view_bytes(spec, shape)              what a fused qkv output kept alive by its v view adds per token
  forward_only_bytes(spec, shape)                live activations of an inference-style forward (zeroth order)
  kv_cache_bytes(spec, batch, context, dtype)    inference KV cache
  shard(breakdown parts...)                      ZeRO-2/3 / FSDP division over data-parallel ranks
  runtime_overhead(shape, subtotal)              CUDA context and allocator slack (configurable)
  precision_dtypes(precision)                    (weight dtype, activation bytes, residual bytes, grad dtype)

The terms live in three modules by job, and every name is importable from here:
  shape.py        Shape, MemoryBreakdown, precision_dtypes and the known precisions/attentions/shardings
  states.py       weights, gradients, optimizer states, sharding, runtime overhead, first_order_peak
  activations.py  activations, loss buffers, forward-only peak, KV cache

Activations are counted tensor by tensor from what PyTorch's autograd saves in a transformers decoder layer
(RMSNorm computed in fp32, SwiGLU/GeGLU MLP, rotary embeddings, SDPA or eager attention), following the method of
Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer Models", §4.1: s·b·h·(34+5as/h)
for GPT with dropout in 16-bit); the constants differ for Llama-style blocks, so they are derived per saved tensor
below and validated against the exact tracer (planner/trace.py) on a grid of configurations (bench/memory_accuracy.py).
"""

from __future__ import annotations

from .activations import (
    FUSED_QKV,
    Adapters,
    activation_bytes,
    attention_mask_bytes,
    forward_only_bytes,
    fused_qkv_view_bytes,
    kv_cache_bytes,
    logits_bytes,
    training_activation_bytes,
)
from .shape import (
    ATTENTIONS,
    DEFAULT_PADDING,
    PRECISIONS,
    SHARDINGS,
    TERMS,
    MemoryBreakdown,
    Shape,
    precision_dtypes,
)
from .states import (
    ADAM8_BLOCK,
    DTYPE_FORMATS,
    NF4_BLOCK,
    NF4_DQ_BLOCK,
    WEIGHT_FORMATS,
    adam_state_bytes,
    autocast_cache_bytes,
    first_order_peak,
    gradient_bytes,
    optimizer_step_temp_bytes,
    runtime_overhead,
    shard,
    weight_bytes,
)

__all__ = ["ADAM8_BLOCK", "ATTENTIONS", "DEFAULT_PADDING", "DTYPE_FORMATS", "FUSED_QKV", "NF4_BLOCK", "NF4_DQ_BLOCK", "PRECISIONS", "SHARDINGS", "TERMS", "WEIGHT_FORMATS", "Adapters", "MemoryBreakdown", "Shape", "activation_bytes", "adam_state_bytes", "attention_mask_bytes", "autocast_cache_bytes", "first_order_peak", "forward_only_bytes", "fused_qkv_view_bytes", "gradient_bytes", "kv_cache_bytes", "logits_bytes", "optimizer_step_temp_bytes", "precision_dtypes", "runtime_overhead", "shard", "training_activation_bytes", "weight_bytes"]
