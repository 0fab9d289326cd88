"""A cheap stand-in for the model that scores: the model's own first k decoder layers with its final norm and head
(a layer-skip copy, as infer/draft.py builds for speculative decoding), or another small model the user names that
shares the tokenizer (Superfiltering, Li et al. 2024; S2L's small proxies, Yang et al. 2024).

A scorer run on the proxy costs the proxy's FLOPs (`budgetune.flops` reads its own layer count), which is what the
ledger is charged; building the truncated copy is a weight copy, no floating-point work.
"""

from __future__ import annotations

from ..errors import UserError


def parse_proxy(spec) -> tuple[str, int | str] | None:
    """`4`, `layers:4` → ('layers', 4); a model reference → ('model', ref); None/'none'/0 → None."""
    if spec in (None, "", 0, False) or str(spec).lower() == "none":
        return None
    text = str(spec).strip()
    if text.startswith("layers:"):
        text = text.removeprefix("layers:")
        if not text.isdigit():
            raise UserError(f"selection proxy '{spec}': write layers:K with K a whole number of layers, e.g. layers:8")
    if text.isdigit():
        k = int(text)
        if k < 1:
            raise UserError(f"selection proxy '{spec}' keeps no layer; give at least 1, e.g. proxy: 8")
        return ("layers", k)
    return ("model", text)


def plain_state(model, n_layers: int) -> dict:
    """The first n_layers' weights (and the embedding, final norm, head) of `model` as a plain transformers state
    dict. A peft model (the training model a refresh re-scores with) has its adapters merged out of place, so the
    proxy is that model as it is now, and the training model is not touched."""
    if not hasattr(model, "peft_config"):
        return model.state_dict()
    base = model.get_base_model()

    def kept(key: str) -> bool:
        parts = key.split(".")
        return "layers" not in parts or int(parts[parts.index("layers") + 1]) < n_layers

    import torch

    merged = {}
    with torch.no_grad():
        for name, module in base.named_modules():
            if hasattr(module, "get_delta_weight") and hasattr(module, "base_layer") and kept(name):
                delta = sum(module.get_delta_weight(a) for a in module.active_adapters if a in module.lora_A)
                merged[f"{name}.weight"] = module.base_layer.weight + delta
    state = {}
    for key, value in base.state_dict().items():
        key = key.replace(".base_layer.", ".")
        if "lora_" not in key and kept(key):
            state[key] = merged.get(key, value)
    return state


def proxy_for(model, spec):
    """(the proxy model, a description) for a `proxy` setting; (model, 'the model itself') when unset."""
    parsed = parse_proxy(spec)
    if parsed is None or model is None:
        return model, "the model itself"
    kind, value = parsed
    if kind == "layers":
        from ..infer.draft import truncated_copy

        n = model.config.num_hidden_layers
        if value >= n:
            return model, f"the model itself (proxy of {value} layers is not smaller than its {n})"
        proxy = truncated_copy(model, value, source=plain_state(model, value))
        proxy.eval()
        return proxy, f"the model's first {value} of {n} layers and its head"
    from ..models import load_model

    proxy = load_model(str(value))
    vocab = model.get_output_embeddings().weight.shape[0]
    if proxy.get_output_embeddings().weight.shape[0] != vocab:
        raise UserError(f"selection proxy '{value}' has a vocabulary of {proxy.get_output_embeddings().weight.shape[0]}"
                        f" tokens, the model {vocab}; a proxy must share the model's tokenizer")
    proxy.eval()
    return proxy, f"the model {value}"
