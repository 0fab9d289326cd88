"""A FlopProfile read off a model as the training loop builds it: which matrix products a token runs through, and
which of their input and weight gradients backward computes.

Every parameter of two or more dimensions must belong to a layer type counted here (nn.Linear and its quantised
subclasses, transformers' Conv1D, embeddings, MoE routers, MoE experts stored as 3-D tensors); any other is refused
by name, never silently skipped. Within a decoder layer, gradients propagate as autograd sees them: a product's
input needs a gradient when anything below it trains (the layer input, a trainable norm, or a trainable product
feeding it); a LoRA B's input is its A's output. This is what makes a top-block step (BAdam, HiFT) cheaper than a
full one, and LoRA on the MLP alone skip the lowest layer's attention backward.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

from .errors import UserError
from .flops import FlopProfile

_ATTN_PART = re.compile(r"attn|attention", re.IGNORECASE)
_MLP_PART = re.compile(r"mlp|moe|feed_forward|ffn", re.IGNORECASE)
# Which of query, key and value a projection produces.
_QKV = {"q_proj": "q", "k_proj": "k", "v_proj": "v", "qkv_proj": "qkv", "query_key_value": "qkv", "c_attn": "qkv",
        "Wqkv": "qkv"}
# Products that read an MLP's activation (the rest of an MLP reads its input).
_MLP_OUT = {"down_proj", "c_proj", "fc2", "w2", "dense_4h_to_h"}
_ADAPTERS = ("lora_A", "lora_B")
# Something after the MLP's output product that saves a tensor for backward: a norm on the MLP output (Gemma-2) or
# residual dropout in training.
_TAIL_NORM = re.compile(r"post_feedforward|post_mlp", re.IGNORECASE)
_ATTN_DROPOUT = ("attn_pdrop", "attention_dropout", "attention_probs_dropout_prob")
_TAIL_DROPOUT = ("resid_pdrop", "hidden_dropout", "hidden_dropout_prob", "resid_dropout")
_WRAPPERS = ("base_layer",)  # peft's wrapped original module


@dataclass(frozen=True)
class Product:
    """One matrix product as a token sees it."""

    name: str
    weights: int  # weights per token (MoE experts: top-k of them)
    trains: bool  # its weight receives a gradient
    layer: int | None  # decoder layer index; None outside the layers (the LM head)
    group: tuple  # the module it belongs to within its layer (an adapter shares its base module's group)
    role: str  # "base", "lora_A" or "lora_B"
    shape: tuple = ()  # (in, out) of a 2-D product, for adapters the planner adds


def decoder_layers(model) -> list:
    """The model's decoder layers: the module list as long as config.num_hidden_layers (else the longest)."""
    return _layers_named(model)[1]


def _layers_named(model) -> tuple[str, list]:
    from torch import nn

    want = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    best: tuple[str, list] = ("", [])
    for name, m in model.named_modules():
        if not isinstance(m, nn.ModuleList):
            continue
        if want is not None and len(m) == want:
            if len(best[1]) != want or len(name) < len(best[0]):
                best = (name, list(m))
        elif len(m) > len(best[1]) and (want is None or len(best[1]) != want):
            best = (name, list(m))
    return best


def products(model, adapters: dict[str, int] | None = None) -> tuple[list[Product], dict]:
    """Every matrix product of the model, and which non-product parameters (norms, biases) train, per layer.
    `adapters` (module name -> rank) adds trainable LoRA A (r×in) and B (out×r) products beside those modules, as
    peft would inject them (the planner's meta model has none)."""
    from torch import nn

    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover - transformers is a dependency
        Conv1D = ()
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.config
    prefix, layers = _layers_named(base)
    out: list[Product] = []
    counted: set[int] = set()
    for name, m in base.named_modules():
        layer, rel = _locate(name, prefix, len(layers))
        direct = [(pn, p) for pn, p in m.named_parameters(recurse=False) if p.dim() >= 2]
        if isinstance(m, nn.Linear):
            items = [("", int(m.in_features * m.out_features), m.weight)]
            shape = (int(m.in_features), int(m.out_features))
        elif Conv1D and isinstance(m, Conv1D):
            items = [("", int(m.weight.numel()), m.weight)]
            shape = tuple(int(d) for d in m.weight.shape)
        elif isinstance(m, nn.Embedding):
            counted.update(id(p) for p in m.parameters(recurse=False))
            continue  # a lookup, no product
        elif direct and all(p.dim() == 3 for _, p in direct):  # MoE experts stored as 3-D tensors
            k = getattr(config, "num_experts_per_tok", None) or getattr(m, "top_k", None)
            if not k:
                raise UserError(f"cannot count the FLOPs of {type(m).__name__} ('{name}'): its config has no "
                                f"num_experts_per_tok to say how many experts a token runs through")
            items = [(pn, int(k) * int(p[0].numel()), p) for pn, p in direct]
            shape = ()
        elif direct and type(m).__name__.endswith(("Router", "Gate")) and len(direct) == 1:
            items = [("", int(direct[0][1].numel()), direct[0][1])]
            shape = ()
        elif direct:
            pn, p = direct[0]
            raise UserError(f"cannot count the FLOPs of layer type {type(m).__name__} ('{name}', parameter '{pn}' "
                            f"of shape {tuple(p.shape)}); the FLOP profile knows Linear, Conv1D, embeddings, MoE "
                            f"routers and 3-D experts — train this model without a FLOP budget or add its formula "
                            f"to budgetune/flop_profile.py")
        else:
            continue
        for pn, weights, w in items:
            counted.add(id(w))
            if pn == "" and getattr(m, "bias", None) is not None:
                counted.add(id(m.bias))
            parts = [c for c in rel if c not in _WRAPPERS] + ([pn] if pn else [])
            role = next((a for a in _ADAPTERS if a in parts), "base")
            group = tuple(parts[: parts.index(role)]) if role != "base" else tuple(parts)
            out.append(Product(f"{name}.{pn}" if pn else name, weights, bool(w.requires_grad), layer, group, role,
                               shape if not pn else ()))
            r = (adapters or {}).get(name.rsplit(".", 1)[-1]) if not pn and role == "base" else None
            if r:
                out += [Product(f"{name}.lora_A", r * shape[0], True, layer, group, "lora_A"),
                        Product(f"{name}.lora_B", r * shape[1], True, layer, group, "lora_B")]
    for p in out:
        if p.layer is not None and (not p.group or not (_ATTN_PART.search(p.group[0]) or _MLP_PART.search(p.group[0]))):
            raise UserError(f"cannot count the FLOPs of '{p.name}': it is neither in an attention nor in an MLP "
                            f"block of its decoder layer; add its place to budgetune/flop_profile.py")
    others: dict = defaultdict(bool)  # layer index (None: outside) -> a non-product parameter trains there
    layer_of = {id(p): i for i, layer in enumerate(layers) for p in layer.parameters()}
    embeddings = {id(p) for m in base.modules() if isinstance(m, nn.Embedding) for p in m.parameters(recurse=False)}
    for p in base.parameters():
        if id(p) not in counted and p.requires_grad:
            others[layer_of.get(id(p))] = True
    others["embedding"] = any(p.requires_grad for p in base.parameters() if id(p) in embeddings)
    return out, others


def _locate(name: str, prefix: str, n_layers: int) -> tuple[int | None, list[str]]:
    if prefix and name.startswith(prefix + "."):
        index, _, rest = name[len(prefix) + 1:].partition(".")
        if index.isdigit() and int(index) < n_layers:
            return int(index), rest.split(".") if rest else []
    return None, name.split(".")


def attention_is_fused(base) -> bool:
    """Whether training runs a fused attention kernel (5 backward products per layer) or the unfused math (4)."""
    config = base.config
    fused = getattr(config, "_attn_implementation", "eager") != "eager"
    if fused and _on_cpu(base) and any(float(getattr(config, k, 0) or 0) > 0 for k in _ATTN_DROPOUT):
        fused = False  # CPU's fused kernel has no dropout: SDPA falls back to its unfused math (eager's products)
    return fused


def attention_backward_everywhere(model) -> float:
    """Attention backward products when q, k and v need gradients in every decoder layer."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return float(len(decoder_layers(base)) * (5 if attention_is_fused(base) else 4))


def read_profile(model, adapters: dict[str, int] | None = None) -> FlopProfile:
    """The FlopProfile of a (possibly peft-wrapped, possibly quantised) causal LM as it trains now (plus planned
    LoRA `adapters`, module name -> rank)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.config
    n_layers = len(decoder_layers(base))
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    attn_dim = int(config.num_attention_heads * head_dim)
    fused = attention_is_fused(base)
    prods, others = products(model, adapters)
    # The embedding output needs a gradient when the embedding trains or when checkpointing made it require one
    # (transformers' enable_input_require_grads, which budgetune turns on with checkpointing).
    grad = others["embedding"] or any(getattr(m, "_require_grads_hook", None) is not None for m in model.modules())
    tail_saves = any(float(getattr(config, k, 0) or 0) > 0 for k in _TAIL_DROPOUT) or any(
        _TAIL_NORM.search(n) for n, _ in base.named_modules())
    return assemble(prods, others, n_layers=n_layers, attn_dim=attn_dim, fused=fused, input_grad=grad,
                    tail_saves=tail_saves)


def assemble(prods: list[Product], others: dict, *, n_layers: int, attn_dim: int, fused: bool, input_grad: bool,
             tail_saves: bool) -> FlopProfile:
    """The profile of a model's products (from a real model, or from a config for the planner): which gradients
    backward computes, layer by layer. `others[i]`: a non-product parameter (a norm) trains in layer i (None:
    outside the layers); `input_grad`: the embedding output needs a gradient."""
    by_layer: dict = defaultdict(list)
    for p in prods:
        by_layer[p.layer].append(p)
    grad = input_grad
    totals = defaultdict(float)
    for i in range(n_layers):
        grad, reached = _layer(by_layer.get(i, []), grad, bool(others.get(i)), fused, totals)
        if reached:
            totals["layer_weights"] += _recomputed(by_layer.get(i, []), tail_saves)
            totals["layers_reached"] += 1
    _stage(by_layer.get(None, []), grad or bool(others.get(None)), totals)
    return FlopProfile(
        matmul_params=int(totals["forward"]), trainable_matmul_params=int(totals["weight_grad"]),
        input_grad_params=int(totals["input_grad"]), layer_matmul_params=int(totals["layer_weights"]),
        n_layers=n_layers, attn_dim=attn_dim, attn_backward_products=float(totals["attn_backward"]),
        recompute_layers=int(totals["layers_reached"]))


def _on_cpu(model) -> bool:
    p = next(model.parameters(), None)
    return p is not None and p.device.type == "cpu"


def _recomputed(prods: list[Product], tail_saves: bool) -> int:
    """Weights a checkpointed layer's recompute runs. torch's non-reentrant checkpoint stops recomputing once the
    last saved tensor is repacked, which happens when the op that saves it is about to run: the layer's final
    product (the MLP's output projection, or the last adapter on it) never reruns unless something after it saves
    its output (a post-MLP norm, residual dropout; MoE outputs are weighted by the router)."""
    total = sum(p.weights for p in prods)
    if tail_saves:
        return total
    last = [p for p in prods if len(p.group) == 2 and _MLP_PART.search(p.group[0]) and p.group[-1] in _MLP_OUT]
    if not last:
        return total
    return total - (next((p for p in last if p.role == "lora_B"), None) or last[0]).weights


def _stage(prods: list[Product], x_grad: bool, totals: dict) -> dict[tuple, bool]:
    """Charge one stage of products reading the same input; returns whether each group's output needs a gradient."""
    groups: dict[tuple, list[Product]] = defaultdict(list)
    for p in prods:
        groups[p.group].append(p)
    out = {}
    for g, items in groups.items():
        a_trains = any(p.trains for p in items if p.role == "lora_A")
        for p in items:
            totals["forward"] += p.weights
            if x_grad or (p.role == "lora_B" and a_trains):
                totals["input_grad"] += p.weights
            if p.trains:
                totals["weight_grad"] += p.weights
        out[g] = x_grad or any(p.trains for p in items)
    return out


def _layer(prods: list[Product], grad_in: bool, others_train: bool, fused: bool, totals: dict) -> tuple[bool, bool]:
    """Charge one decoder layer; returns (its output needs a gradient, backward reaches it)."""
    attn = [p for p in prods if _ATTN_PART.search(p.group[0])]
    mlp = [p for p in prods if p not in attn]
    x = grad_in or others_train  # a trainable norm makes its output need a gradient
    qkv = _stage([p for p in attn if p.group[-1] in _QKV], x, totals)
    needs = {h: any(r for g, r in qkv.items() if h in _QKV[g[-1]]) for h in "qkv"}
    any_qkv = any(needs.values())
    if fused:
        totals["attn_backward"] += 5 if any_qkv else 0
    else:
        totals["attn_backward"] += (needs["q"] or needs["k"]) + needs["q"] + needs["k"] + needs["v"]
    o = _stage([p for p in attn if p.group[-1] not in _QKV], any_qkv, totals)
    mid = x or any(o.values())
    mlp_in = _stage([p for p in mlp if p.group[-1] not in _MLP_OUT], mid, totals)
    act: dict[tuple, bool] = defaultdict(bool)
    for g, r in mlp_in.items():
        act[g[:-1]] |= r
    outs = {}
    for sub in {p.group[:-1] for p in mlp if p.group[-1] in _MLP_OUT}:
        outs.update(_stage([p for p in mlp if p.group[-1] in _MLP_OUT and p.group[:-1] == sub],
                           act.get(sub, mid), totals))
    out = mid or any(mlp_in.values()) or any(outs.values())
    return out, out


def profile_with(model, trainable: set[str], adapters: dict[str, int] | None = None) -> FlopProfile:
    """The profile the model would have with exactly the named parameters trainable (the next block of a
    block-wise method, a planner's candidate); the model's own trainable set is left as it was."""
    params = dict(model.named_parameters())
    before = {n: p.requires_grad for n, p in params.items()}
    try:
        for n, p in params.items():
            p.requires_grad_(n in trainable)
        return read_profile(model, adapters)
    finally:
        for n, p in params.items():
            p.requires_grad_(before[n])
