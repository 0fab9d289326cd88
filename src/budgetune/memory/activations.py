"""Activation memory as pure functions: what autograd saves for backward in the decoder layers, the loss's buffers
at vocabulary size, the live tensors of a forward without autograd, and the inference KV cache.

Activations are counted tensor by tensor from what PyTorch's autograd saves in a transformers decoder layer
(RMSNorm computed in fp32, SwiGLU/GeGLU MLP, rotary embeddings, SDPA or eager attention), following the method of
Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer Models", §4.1: s·b·h·(34+5as/h)
for GPT with dropout in 16-bit); the constants differ for Llama-style blocks, so they are derived per saved tensor
below and validated against the exact tracer (planner/trace.py) on a grid of configurations (bench/memory_accuracy.py).
terms.py re-exports every name.
"""

from __future__ import annotations

from dataclasses import dataclass

from .shape import Shape, precision_dtypes
from .spec import ModelSpec
from .states import WEIGHT_FORMATS, gradient_bytes


@dataclass(frozen=True)
class Adapters:
    """Low-rank adapters on some linear layers of every decoder layer (LoRA and its relatives)."""

    rank: int
    targets: tuple[str, ...]  # linear layer names (spec.linear_names)
    dtype_bytes: int = 4  # adapter activations: peft runs adapters in the adapter weights' dtype


# Which linear layers read which activation in a decoder layer (the module names of memory/spec.py).
_READS = {"attn_in": ("q_proj", "k_proj", "v_proj", "qkv_proj", "query_key_value"),
          "o": ("o_proj", "dense"),
          "mlp_in": ("gate_proj", "up_proj", "gate_up_proj", "dense_h_to_4h"),
          "down": ("down_proj", "dense_4h_to_h")}


def _linear_inputs(spec: ModelSpec, shape: Shape, base_trains: bool, targets: set[str]) -> int:
    """Bytes per token of the inputs that linear layers keep for their weight gradients.

    A trained weight needs its input (grad_W = δᵀ·x). One saved tensor serves every linear reading it, except when a
    cast makes a copy per linear: autocast casts an fp32 input to bf16 inside each F.linear (activations are not
    cached), and peft casts the input to the fp32 adapter dtype before lora_A (then autocast casts it back)."""
    _, E, R, _ = precision_dtypes(shape.precision)
    amp = shape.precision == "amp_bf16"
    qd = spec.n_heads * spec.head_dim
    total = 0
    for group, names in _READS.items():
        linears = [l for l in spec.layer_linears if l.name in names]
        needs = [l for l in linears if base_trains or l.name in targets]
        if not needs:
            continue
        width = needs[0].in_features
        if base_trains:
            if amp and group in ("attn_in", "mlp_in"):
                total += 2 * width * len(needs)  # fp32 norm output cast to bf16 by each linear
            elif group == "attn_in" or group == "mlp_in":
                total += R * width  # the norm output, in the residual dtype
            elif group == "o":
                # SDPA keeps its output (counted with attention); eager and GPT-NeoX make a contiguous copy.
                total += E * qd if (shape.attention == "eager" or spec.family == "gpt_neox") else 0
            else:
                total += E * width
        else:  # frozen base: only adapter inputs
            if shape.precision == "fp32":  # adapters share the input the frozen layer already reads
                if group != "o" or shape.attention == "eager" or spec.family == "gpt_neox":
                    total += 4 * width
            else:
                total += (2 if amp else 4) * width * len(needs)
    return total


def _layer_saved_bytes(spec: ModelSpec, shape: Shape, base_trains: bool, adapters: Adapters | None) -> int:
    """Bytes autograd keeps for backward in one decoder layer (no checkpointing), tensor by tensor as transformers'
    Llama-family layers save them (checked against torch.autograd.graph.saved_tensors_hooks and the tracer)."""
    T, s = shape.tokens, shape.seq_len
    h, i = spec.hidden, spec.intermediate
    qd, kvd = spec.n_heads * spec.head_dim, spec.n_kv_heads * spec.head_dim
    _, E, R, _ = precision_dtypes(shape.precision)
    if not base_trains and shape.precision == "amp_bf16":
        R = 2  # a frozen base is stored in bf16 (see methods/lora.py): its residual stream is bf16
    targets = set(adapters.targets) if adapters else set()
    per_token = 0
    # Norms: RMSNorm upcasts its input to fp32 and keeps it (4 B) and, when its weight trains, the normalised value
    # (in the residual dtype; Gemma multiplies in fp32). LayerNorm keeps its input and two per-token statistics.
    n_bytes = 4 if spec.family in ("gemma", "gemma2") else R
    if spec.norm_kind == "rmsnorm":
        per_token += spec.norms_per_layer * (4 * h + (n_bytes * h if base_trains else 0) + 4)
    else:
        inputs = 1 if spec.family == "gpt_neox" else spec.norms_per_layer  # parallel residual: one shared input
        per_token += inputs * 4 * h + spec.norms_per_layer * 8
    if spec.qk_norm:  # Qwen3: per-head RMSNorm on q and k keeps their fp32 input (and normalised value)
        per_token += 4 * (qd + kvd) + (R * (qd + kvd) if base_trains else 0)
    per_token += _linear_inputs(spec, shape, base_trains, targets)
    # Attention: q and k after rotary embeddings, v, and (SDPA) the output and fp32 logsumexp; eager attention keeps
    # q, K and V expanded to every head, the fp32 softmax and (16-bit) its cast copy instead.
    # A padded batch (Shape.masked) takes transformers' masked SDPA path (integrations/sdpa_attention.py): K/V are
    # expanded to every head (repeat_kv) before SDPA, which keeps the expanded copies instead, and SDPA turns the
    # boolean b×1×s×s mask into an additive one in the query dtype, kept per layer (added below).
    if shape.attention == "sdpa":
        # (with a single KV head the expansion is a view: repeat_kv's reshape needs no copy)
        kv_kept = qd if shape.masked and spec.n_kv_heads > 1 else kvd
        per_token += E * (2 * qd + 2 * kv_kept) + 4 * spec.n_heads
    else:
        per_token += E * 3 * qd + (4 + (E if E != 4 else 0)) * spec.n_heads * s
        if spec.attn_logit_softcapping:  # Gemma2: tanh(scores / cap) keeps its s×s output for backward
            per_token += E * spec.n_heads * s
    per_token += fused_qkv_view_bytes(spec, shape)
    # MLP: gated keeps gate (for the activation's backward), act(gate) and up (for the product); plain keeps the
    # up-projection output. The down projection's input is counted with the linear inputs.
    per_token += E * i * (3 if spec.mlp_kind != "plain" else 1)
    if adapters:  # A·x of every adapter, kept by B (bf16 under autocast, else the fp32 adapter dtype)
        per_token += (2 if shape.precision == "amp_bf16" else 4) * adapters.rank * len(targets & set(spec.linear_names))
    return per_token * T + (attention_mask_bytes(shape, E) if shape.attention == "sdpa" else 0)


FUSED_QKV = ("qkv_proj", "query_key_value")  # one linear whose output is split into q, k and v (Phi-3, GPT-NeoX)


def fused_qkv_view_bytes(spec: ModelSpec, shape: Shape) -> int:
    """Bytes per token per layer that a fused q/k/v projection keeps beyond the q, k and v counted above.

    Phi-3 (`qkv[..., a:b]`) and GPT-NeoX (`qkv.view(...).chunk(3)`) take v as a view of the fused output, and
    attention saves v for backward (SDPA's saved inputs; eager's probs @ v). A view holds its whole storage, so the
    fused output (q, k and v: E·(q_dim + 2·kv_dim)) stays alive, not v's share of it; q and k are freed because
    rotary embeddings make new tensors of them. The exception is a v that repeat_kv copies first: more than one KV
    head repeated to more query heads, on the eager or the masked SDPA path (see above). Measured on real tensors
    with saved_tensors_hooks: GPT-NeoX keeps a (b, heads, s, head_dim) view of a 3·q_dim-wide storage."""
    fused = next((l for l in spec.layer_linears if l.name in FUSED_QKV), None)
    if fused is None:
        return 0
    copied = (spec.n_kv_heads > 1 and spec.n_heads > spec.n_kv_heads
              and (shape.attention == "eager" or shape.masked))
    if copied:
        return 0
    E = precision_dtypes(shape.precision)[1]
    return E * (fused.out_features - spec.n_kv_heads * spec.head_dim)


def attention_mask_bytes(shape: Shape, width: int) -> int:
    """The b×1×s×s mask of a padded batch at `width` bytes per entry (1: the boolean mask transformers builds once
    per forward; the query dtype: the additive copy SDPA makes and keeps in each layer); 0 without padding."""
    return width * shape.micro_batch * shape.seq_len ** 2 if shape.masked else 0


def activation_bytes(spec: ModelSpec, shape: Shape, *, base_trains: bool = True, adapters: Adapters | None = None,
                     grad_layers: int | None = None) -> int:
    """Activations saved for backward by the decoder layers at the end of the forward pass.

    base_trains: the base linear weights receive gradients (full fine-tuning) or not (frozen base).
    grad_layers: how many decoder layers, counted from the top, backward runs through (all by default; block-wise
    methods that freeze the lower layers need only those above the lowest trained one).
    With gradient checkpointing only each layer's input (the residual stream) is kept, plus one layer's full set
    while that layer is recomputed in backward (Chen et al. 2016).
    """
    layers = spec.n_layers if grad_layers is None else max(0, min(spec.n_layers, grad_layers))
    if layers == 0:
        return 0
    per_layer = _layer_saved_bytes(spec, shape, base_trains, adapters)
    _, _, R, _ = precision_dtypes(shape.precision)
    if not base_trains and shape.precision == "amp_bf16":
        R = 2
    if shape.gradient_checkpointing:
        return layers * R * shape.tokens * spec.hidden + per_layer
    return layers * per_layer


def logits_bytes(spec: ModelSpec, shape: Shape, *, head_trains: bool = True) -> int:
    """The buffers around the loss at vocabulary size, at their peak, plus the final norm's saved input.

    transformers computes logits for every position in the activation dtype. Forward: logits, their flattened
    copy (the shifted slice is not contiguous), the fp32 upcast and log_softmax's fp32 output (kept for backward)
    = 12 B per token per vocabulary entry with 16-bit or fp32 logits alike (E + E + 4 + 4, or 4 + 4 + 4). Backward
    starts with the fp32 gradient of log_softmax's output and its input gradient next to the kept output: again
    3 × 4 B. Gemma2's tanh soft-capping keeps one more logits-sized tensor (tanh's output, for its backward; the
    scaled logits around it are not saved, measured by the tracer).
    """
    T, V = shape.tokens, spec.vocab
    _, E, R, _ = precision_dtypes(shape.precision)
    per_token = 12 * V + (E * V if spec.final_logit_softcapping else 0)
    # Final norm: fp32 input, normalised value when its weight trains, and its output when the LM head trains.
    per_token += 4 * spec.hidden + ((R + R) * spec.hidden if head_trains else 0)
    return per_token * T


def training_activation_bytes(spec: ModelSpec, shape: Shape, *, base_trains: bool = True,
                              adapters: Adapters | None = None, grad_layers: int | None = None,
                              head_trains: bool | None = None) -> int:
    """Activation peak of a backprop step: the decoder layers' saved tensors plus the loss buffers (they coexist at
    the end of forward). Under gradient checkpointing the layers keep only their inputs, and the peak is the larger
    of the loss moment and the moment the top layer is recomputed in backward (its saved set plus the gradient of
    the hidden state flowing down)."""
    head = base_trains if head_trains is None else head_trains
    layers = spec.n_layers if grad_layers is None else max(0, min(spec.n_layers, grad_layers))
    loss = logits_bytes(spec, shape, head_trains=head)
    if layers == 0:
        return loss
    if not shape.gradient_checkpointing:
        return activation_bytes(spec, shape, base_trains=base_trains, adapters=adapters, grad_layers=layers) + loss
    _, _, R, _ = precision_dtypes(shape.precision)
    if not base_trains and shape.precision == "amp_bf16":
        R = 2  # a frozen base is stored in bf16: its residual stream is bf16
    inputs = layers * R * shape.tokens * spec.hidden
    gfmt = precision_dtypes(shape.precision)[3]
    recompute = _layer_saved_bytes(spec, shape, base_trains, adapters) + 2 * 4 * shape.tokens * spec.hidden
    if shape.attention == "eager":  # the softmax backward's gradients of the s×s probabilities
        recompute += 4 * shape.micro_batch * spec.n_heads * shape.seq_len ** 2
    if head:  # the LM head's (or tied embedding's) gradient already exists when the top layer is recomputed
        recompute += gradient_bytes(spec.vocab * spec.hidden, gfmt)
    return inputs + max(loss, recompute)


def forward_only_bytes(spec: ModelSpec, shape: Shape) -> int:
    """Peak live activations of a forward without autograd (zeroth-order methods, evaluation; no K/V cache): the
    residual stream, and the largest of one layer's intermediates, the LM head's matmul and the loss's buffers.
    Under AMP the fp32 weights (zeroth-order methods update them) are cast to bf16 at each use and, without
    autograd, not cached: one weight's cast is alive at a time, the head's (V×h) the largest (measured by the
    tracer); accelerate converts the bf16 logits to fp32 as the forward returns, so the loss sees fp32 logits.
    A padded batch adds the boolean mask for the whole forward and, per layer, K/V expanded to every head and the
    additive mask (see _layer_saved_bytes)."""
    T = shape.tokens
    _, E, R, _ = precision_dtypes(shape.precision)
    amp = shape.precision == "amp_bf16"
    qd = spec.n_heads * spec.head_dim
    cast = 2 if amp else 0
    attention = 3 * E * T * qd
    if shape.masked and shape.attention == "sdpa":
        kv = qd if spec.n_kv_heads > 1 else spec.n_kv_heads * spec.head_dim
        attention = E * T * (2 * qd + 2 * kv) + attention_mask_bytes(shape, E)
    layer = max(2 * E * T * spec.intermediate + E * T * spec.intermediate, attention)
    layer += cast * max(l.in_features * l.out_features for l in spec.layer_linears) if spec.layer_linears else 0
    if shape.attention == "eager":
        layer = max(layer, (4 + E) * shape.micro_batch * spec.n_heads * shape.seq_len ** 2)
    head = E * T * spec.vocab + max(cast * spec.vocab * spec.hidden, 4 * T * spec.vocab if amp else 0)
    L = 4 if amp else E  # the logits' dtype at the loss
    loss = L * T * spec.vocab + (4 * T * spec.vocab if L != 4 else 0) + 4 * T * spec.vocab
    # The loss runs after the forward has returned: the residual stream and the mask are gone by then.
    return max(2 * R * T * spec.hidden + attention_mask_bytes(shape, 1) + max(layer, head), loss)


def kv_cache_bytes(spec: ModelSpec, batch: int, context: int, dtype: str = "bf16") -> int:
    """K and V for every layer, KV head and position: 2·L·b·ctx·n_kv·d_head·bytes (Pope et al. 2022)."""
    return int(2 * spec.n_layers * batch * context * spec.n_kv_heads * spec.head_dim * WEIGHT_FORMATS[dtype])
