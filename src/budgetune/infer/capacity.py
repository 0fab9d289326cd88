"""How many sequences of which length fit in memory for generation: weights + KV cache + the prefill's working set,
for the model alone and with a speculative draft beside it. Pure functions of a ModelSpec; `budgetune plan
--inference` prints the table.

Terms (bytes):
- weights: memory.terms.weight_bytes of the model's parameters in the chosen format;
- KV cache: memory.terms.kv_cache_bytes, 2·L·b·ctx·h_kv·d_head·bytes (Pope et al. 2022, "Efficiently Scaling
  Transformer Inference", §2), held for every sequence at full context;
- prefill working set: the residual stream (2 buffers of b·ctx·hidden) plus one layer's largest intermediate
  (3 of b·ctx·intermediate for a gated MLP), and the logits of the last position only (b·vocab·4 B, fp32) —
  transformers' generate asks the model for the last position's logits alone (`logits_to_keep=1`);
- a draft adds its own weights, KV cache and working set (it runs beside the target, never at the same instant,
  so the larger of the two working sets counts).
"""

from __future__ import annotations

import dataclasses

from ..errors import Infeasible, UserError
from ..memory.terms import WEIGHT_FORMATS

DEFAULT_CONTEXTS = (256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
DRAFT_LAYERS = 4  # the embedded model's draft keeps this many of the target's layers (infer/draft.py)
MAX_BATCH = 1 << 20
_FLOAT_FORMATS = {f for f, b in WEIGHT_FORMATS.items() if b >= 2}  # fp32, bf16, fp16: formats that compute as stored


def draft_spec_layerskip(spec, n_layers: int = DRAFT_LAYERS):
    """The shape of a layer-skip draft: the target's first n layers with its own copy of embedding and head."""
    return dataclasses.replace(spec, name=f"{spec.name} (first {n_layers} layers)", n_layers=min(n_layers, spec.n_layers))


def working_set_bytes(spec, batch: int, context: int, fmt: str = "fp32") -> int:
    e = int(WEIGHT_FORMATS[fmt]) if fmt in _FLOAT_FORMATS else 2  # quantised weights compute in 16 bits
    tokens = batch * context
    mlp = (3 if spec.mlp_kind.startswith("gated") else 2) * e * tokens * spec.intermediate
    attn = 3 * e * tokens * spec.n_heads * spec.head_dim
    return 2 * e * tokens * spec.hidden + max(mlp, attn) + 4 * batch * spec.vocab


def inference_bytes(spec, batch: int, context: int, fmt: str = "fp32", draft=None) -> dict:
    """Every term of generating `batch` sequences of `context` tokens, with an optional draft spec."""
    from ..memory.terms import kv_cache_bytes, weight_bytes

    kv_fmt = fmt if fmt in _FLOAT_FORMATS else "bf16"  # quantised weights still keep a 16-bit cache
    terms = {"weights": weight_bytes(spec.n_params, fmt), "kv_cache": kv_cache_bytes(spec, batch, context, kv_fmt)}
    work = working_set_bytes(spec, batch, context, kv_fmt)
    if draft is not None:
        terms["draft_weights"] = weight_bytes(draft.n_params, fmt)
        terms["draft_kv_cache"] = kv_cache_bytes(draft, batch, context, kv_fmt)
        work = max(work, working_set_bytes(draft, batch, context, kv_fmt))
    terms["working_set"] = work
    terms["total"] = sum(terms.values())
    return terms


def max_batch(spec, memory_bytes: int, context: int, fmt: str = "fp32", draft=None) -> int:
    """The largest batch of `context`-token sequences that fits (0 when not even one does); totals grow with the
    batch, so a binary search is exact."""
    if inference_bytes(spec, 1, context, fmt, draft)["total"] > memory_bytes:
        return 0
    lo, hi = 1, 2
    while hi < MAX_BATCH and inference_bytes(spec, hi, context, fmt, draft)["total"] <= memory_bytes:
        lo, hi = hi, hi * 2
    while lo + 1 < hi:
        mid = (lo + hi) // 2
        if inference_bytes(spec, mid, context, fmt, draft)["total"] <= memory_bytes:
            lo = mid
        else:
            hi = mid
    return lo


def max_context(spec, memory_bytes: int, batch: int = 1, fmt: str = "fp32", draft=None, limit: int = 1 << 22) -> int:
    if inference_bytes(spec, batch, 1, fmt, draft)["total"] > memory_bytes:
        return 0
    lo, hi = 1, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if inference_bytes(spec, batch, mid, fmt, draft)["total"] <= memory_bytes:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def _draft_from_args(spec, args):
    """The draft's spec: a config.json / model directory given as --draft, else the layer-skip shape."""
    draft = getattr(args, "draft", None)
    if draft in (None, "", "auto", "layerskip"):
        return draft_spec_layerskip(spec, int(getattr(args, "draft_layers", None) or DRAFT_LAYERS))
    from pathlib import Path

    from ..memory.spec import read_config_json, spec_from_dict

    path = Path(draft)
    path = path / "config.json" if path.is_dir() else path
    d = spec_from_dict(read_config_json(path), str(path))
    if d.vocab != spec.vocab:
        raise UserError(f"draft {draft}: vocabulary {d.vocab} differs from the model's {spec.vocab}; a draft must "
                        f"share the tokenizer")
    return d


def plan_inference(spec, memory_bytes: int, args=None) -> tuple[str, dict]:
    """The largest batch for each context (and the longest context at batch 1) that fits `memory_bytes`, for the
    model alone and with a draft. Reads optional `args` fields: dtype (fp32/bf16/fp16/int8/nf4) or else precision
    (fp32/amp_bf16/bf16; default fp32), contexts (list of ints; seq_len is added), draft (config.json or model
    directory; default: the layer-skip draft's shape), draft_layers. Returns (text table, JSON-ready dict)."""
    if memory_bytes is None or memory_bytes <= 0:
        raise UserError("plan --inference needs the memory to plan for; pass --gpu-memory, e.g. --gpu-memory 24GiB")
    # Weights as generation holds them: --dtype when given, else from the training precision (mixed precision
    # keeps fp32 master weights for training only; generation runs in bf16).
    fmt = getattr(args, "dtype", None) or {"amp_bf16": "bf16"}.get(getattr(args, "precision", None) or "fp32",
                                                                  getattr(args, "precision", None) or "fp32")
    from ..memory.terms import DTYPE_FORMATS

    fmt = DTYPE_FORMATS.get(fmt, fmt)
    contexts = list(getattr(args, "contexts", None) or DEFAULT_CONTEXTS)
    seq_len = getattr(args, "seq_len", None)
    if isinstance(seq_len, int) and seq_len > 0 and seq_len not in contexts:
        contexts = sorted(contexts + [seq_len])
    draft = _draft_from_args(spec, args)
    rows = []
    for ctx in contexts:
        alone = max_batch(spec, memory_bytes, ctx, fmt)
        with_draft = max_batch(spec, memory_bytes, ctx, fmt, draft)
        rows.append({"context": ctx, "max_batch": alone, "max_batch_with_draft": with_draft,
                     "kv_bytes_per_sequence": inference_bytes(spec, 1, ctx, fmt)["kv_cache"],
                     "total_bytes": inference_bytes(spec, max(alone, 1), ctx, fmt)["total"],
                     "total_bytes_with_draft": inference_bytes(spec, max(with_draft, 1), ctx, fmt, draft)["total"]})
    weights = inference_bytes(spec, 1, 1, fmt)["weights"]
    draft_weights = inference_bytes(spec, 1, 1, fmt, draft)["draft_weights"]
    if weights > memory_bytes:
        raise Infeasible(f"{spec.name}: its {fmt} weights alone take {_gib(weights)}, more than the "
                         f"{_gib(memory_bytes)} given; quantise (--dtype nf4/int8) or give more memory")
    obj = {"model": spec.name, "memory_bytes": int(memory_bytes), "dtype": fmt, "weights_bytes": weights,
           "draft": draft.name, "draft_weights_bytes": draft_weights,
           "max_context_batch1": max_context(spec, memory_bytes, 1, fmt),
           "max_context_batch1_with_draft": max_context(spec, memory_bytes, 1, fmt, draft), "rows": rows}
    lines = [(f"inference capacity of {spec.name} in {_gib(memory_bytes)} ({fmt} weights {_gib(weights)}; "
             f"draft {draft.name}: {_gib(draft_weights)})"),
             f"{'context':>8}  {'KV/seq':>10}  {'max batch':>9}  {'with draft':>10}  {'tokens cached':>13}"]
    for r in rows:
        lines.append(f"{r['context']:>8}  {r['kv_bytes_per_sequence'] / 2**20:>7.1f} MiB  {r['max_batch']:>9}  "
                     f"{r['max_batch_with_draft']:>10}  {r['max_batch'] * r['context']:>13}")
    lines.append(f"longest context at batch 1: {obj['max_context_batch1']} tokens alone, "
                 f"{obj['max_context_batch1_with_draft']} with the draft (positions beyond the model's trained "
                 f"length are not checked)")
    return "\n".join(lines), obj
