"""A causal LM's shape from its config alone (no weights, no transformers import for the known families).

`spec_from_dict(config_dict)` reads a config.json's fields with each family's transformers defaults, so a config
that omits a field gets the value the real model class would use. `n_params` is exact: the tests build every
family on the meta device and compare. An architecture outside FAMILIES raises UnsupportedArchitecture (a
UserError); the planner then falls back to the tracer, which needs only that transformers knows the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError, close_matches


class UnsupportedArchitecture(UserError):
    """No analytic model for this model_type; the tracer (`budgetune plan --exact`) can still measure it."""


# Per family: transformers' config defaults (transformers 5.x `*Config.__init__`) and the module layout.
# attn: "split" (q/k/v/o_proj) or "fused" (one qkv linear + output); mlp: "gated" (gate/up/down), "gated_fused"
# (gate_up + down) or "plain" (up + down); norms: per-layer norm count; bias: which linears carry a bias.
_LLAMA_DEFAULTS = dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                       num_attention_heads=32, tie_word_embeddings=False, hidden_act="silu")
FAMILIES: dict[str, dict] = {
    "llama": dict(defaults=_LLAMA_DEFAULTS, attn="split", mlp="gated", norm="rmsnorm", norms=2),
    "mistral": dict(defaults={**_LLAMA_DEFAULTS, "intermediate_size": 14336, "num_key_value_heads": 8},
                    attn="split", mlp="gated", norm="rmsnorm", norms=2),
    "qwen2": dict(defaults={**_LLAMA_DEFAULTS, "vocab_size": 151936, "intermediate_size": 22016},
                  attn="split", mlp="gated", norm="rmsnorm", norms=2, qkv_bias=True),
    "qwen3": dict(defaults={**_LLAMA_DEFAULTS, "vocab_size": 151936, "intermediate_size": 22016, "head_dim": 128},
                  attn="split", mlp="gated", norm="rmsnorm", norms=2, qk_norm=True),
    "gemma": dict(defaults=dict(vocab_size=256000, hidden_size=3072, intermediate_size=24576, num_hidden_layers=28,
                                num_attention_heads=16, head_dim=256, tie_word_embeddings=True,
                                hidden_act="gelu_pytorch_tanh"),
                  attn="split", mlp="gated", norm="rmsnorm", norms=2, scaled_embedding=True),
    "gemma2": dict(defaults=dict(vocab_size=256000, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
                                 num_attention_heads=8, num_key_value_heads=4, head_dim=256,
                                 tie_word_embeddings=True, hidden_activation="gelu_pytorch_tanh",
                                 final_logit_softcapping=30.0, attn_logit_softcapping=50.0),
                   attn="split", mlp="gated", norm="rmsnorm", norms=4, scaled_embedding=True),
    "phi3": dict(defaults=dict(vocab_size=32064, hidden_size=3072, intermediate_size=8192, num_hidden_layers=32,
                               num_attention_heads=32, tie_word_embeddings=False, hidden_act="silu"),
                 attn="fused", mlp="gated_fused", norm="rmsnorm", norms=2),
    "gpt_neox": dict(defaults=dict(vocab_size=50432, hidden_size=6144, intermediate_size=24576,
                                   num_hidden_layers=44, num_attention_heads=64, tie_word_embeddings=False,
                                   hidden_act="gelu", attention_bias=True),
                     attn="fused", mlp="plain", norm="layernorm", norms=2, mlp_bias=True),
}

# Module names per layout, as the transformers model classes name them (LoRA target_modules use these).
_ATTN_NAMES = {"split": ("q_proj", "k_proj", "v_proj", "o_proj"), "fused": ("qkv_proj", "o_proj")}
_NEOX_NAMES = {"qkv_proj": "query_key_value", "o_proj": "dense", "up_proj": "dense_h_to_4h",
               "down_proj": "dense_4h_to_h"}


@dataclass(frozen=True)
class Linear:
    name: str  # the module's attribute name in a decoder layer (q_proj, gate_up_proj, query_key_value, ...)
    in_features: int
    out_features: int
    bias: bool

    @property
    def params(self) -> int:
        return self.in_features * self.out_features + (self.out_features if self.bias else 0)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str  # transformers model_type
    n_layers: int
    hidden: int
    intermediate: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    vocab: int
    tied_embeddings: bool
    mlp_kind: str  # gated (SwiGLU/GeGLU: gate, up, down), gated_fused (gate_up, down) or plain (up, down)
    norm_kind: str  # rmsnorm (weight only) or layernorm (weight and bias)
    norms_per_layer: int
    qk_norm: bool = False  # per-head RMSNorm on queries and keys (Qwen3)
    scaled_embedding: bool = False  # embeddings multiplied by sqrt(hidden) (Gemma): one more activation buffer
    final_logit_softcapping: float | None = None  # tanh soft-capping of logits (Gemma2): more logits buffers
    attn_logit_softcapping: float | None = None  # tanh soft-capping of attention scores (Gemma2): eager keeps s×s more
    layer_linears: tuple[Linear, ...] = field(default=())  # the linear layers of one decoder layer

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def head_params(self) -> int:
        """LM head parameters stored separately (0 when tied to the input embedding)."""
        return 0 if self.tied_embeddings else self.vocab * self.hidden

    @property
    def norm_params(self) -> int:
        return self.hidden * (2 if self.norm_kind == "layernorm" else 1)

    @property
    def layer_params(self) -> int:
        qk = 2 * self.head_dim if self.qk_norm else 0
        return sum(l.params for l in self.layer_linears) + self.norms_per_layer * self.norm_params + qk

    @property
    def n_params(self) -> int:
        """Exact parameter count of the model as transformers builds it (tied weights counted once)."""
        return self.embedding_params + self.head_params + self.n_layers * self.layer_params + self.norm_params

    @property
    def linear_names(self) -> list[str]:
        return [l.name for l in self.layer_linears]

    def linear(self, name: str) -> Linear:
        for l in self.layer_linears:
            if l.name == name:
                return l
        raise UserError(f"{self.name}: no linear layer '{name}'; its layers are {', '.join(self.linear_names)}")


def _get(cfg: dict, defaults: dict, key: str, fallback=None):
    value = cfg.get(key)
    if value is None:
        value = defaults.get(key, fallback)
    return value


def spec_from_dict(cfg: dict, name: str = "config") -> ModelSpec:
    """The spec of a config.json's contents (or a transformers config's `to_dict()`)."""
    if not isinstance(cfg, dict):
        raise UserError(f"{name}: a config must be a JSON object with model_type, hidden_size, ...")
    family = cfg.get("model_type")
    if not family:
        raise UserError(f"{name}: field 'model_type' is missing; add the architecture, e.g. \"model_type\": \"llama\"")
    if family not in FAMILIES:
        near = close_matches(family, FAMILIES)  # a typo ('lamma') is far likelier than a new architecture
        raise UnsupportedArchitecture(
            f"{name}: model_type '{family}' has no analytic memory model" + (f" ({near})" if near else "") +
            f" (known: {', '.join(FAMILIES)}); use --exact to trace it instead")
    fam = FAMILIES[family]
    d = fam["defaults"]
    try:
        hidden = int(_get(cfg, d, "hidden_size"))
        n_heads = int(_get(cfg, d, "num_attention_heads"))
        n_kv = int(_get(cfg, d, "num_key_value_heads", n_heads) or n_heads)
        head_dim = int(_get(cfg, d, "head_dim", 0) or hidden // n_heads)
        inter = int(_get(cfg, d, "intermediate_size"))
        layers = int(_get(cfg, d, "num_hidden_layers"))
        vocab = int(_get(cfg, d, "vocab_size"))
    except (TypeError, ValueError) as e:
        raise UserError(f"{name}: a size field is not an integer ({e}); fix the config") from None
    for key, value in (("hidden_size", hidden), ("num_attention_heads", n_heads), ("num_key_value_heads", n_kv),
                       ("intermediate_size", inter), ("num_hidden_layers", layers), ("vocab_size", vocab),
                       ("head_dim", head_dim)):
        if value <= 0:
            raise UserError(f"{name}: field '{key}' is {value}; it must be a positive integer")
    if n_heads % n_kv:
        raise UserError(f"{name}: num_attention_heads={n_heads} is not a multiple of num_key_value_heads={n_kv}")
    if family == "gpt_neox" and hidden % n_heads:
        raise UserError(f"{name}: hidden_size={hidden} is not a multiple of num_attention_heads={n_heads}")
    tied = bool(_get(cfg, d, "tie_word_embeddings", False))
    attn_bias = bool(_get(cfg, d, "attention_bias", False))
    mlp_bias = bool(_get(cfg, d, "mlp_bias", fam.get("mlp_bias", False)))
    q, kv = n_heads * head_dim, n_kv * head_dim
    linears: list[Linear] = []
    if fam["attn"] == "split":
        qkv_bias = attn_bias or fam.get("qkv_bias", False)
        linears += [Linear("q_proj", hidden, q, qkv_bias), Linear("k_proj", hidden, kv, qkv_bias),
                    Linear("v_proj", hidden, kv, qkv_bias), Linear("o_proj", q, hidden, attn_bias)]
    else:
        linears += [Linear("qkv_proj", hidden, q + 2 * kv, attn_bias), Linear("o_proj", q, hidden, attn_bias)]
    if fam["mlp"] == "gated":
        linears += [Linear("gate_proj", hidden, inter, mlp_bias), Linear("up_proj", hidden, inter, mlp_bias),
                    Linear("down_proj", inter, hidden, mlp_bias)]
    elif fam["mlp"] == "gated_fused":
        linears += [Linear("gate_up_proj", hidden, 2 * inter, mlp_bias), Linear("down_proj", inter, hidden, mlp_bias)]
    else:
        linears += [Linear("up_proj", hidden, inter, mlp_bias), Linear("down_proj", inter, hidden, mlp_bias)]
    if family == "gpt_neox":
        linears = [Linear(_NEOX_NAMES[l.name], l.in_features, l.out_features, l.bias) for l in linears]
    cap = cfg.get("final_logit_softcapping", d.get("final_logit_softcapping")) if family == "gemma2" else None
    attn_cap = cfg.get("attn_logit_softcapping", d.get("attn_logit_softcapping")) if family == "gemma2" else None
    return ModelSpec(
        name=name, family=family, n_layers=layers, hidden=hidden, intermediate=inter, n_heads=n_heads,
        n_kv_heads=n_kv, head_dim=head_dim, vocab=vocab, tied_embeddings=tied, mlp_kind=fam["mlp"],
        norm_kind=fam["norm"], norms_per_layer=fam["norms"], qk_norm=fam.get("qk_norm", False),
        scaled_embedding=fam.get("scaled_embedding", False),
        final_logit_softcapping=float(cap) if cap else None,
        attn_logit_softcapping=float(attn_cap) if attn_cap else None, layer_linears=tuple(linears))


def read_config_json(path: str | Path) -> dict:
    """A config.json's fields for the planner: the language model's where a multimodal wrapper nests them
    (budgetune.models.read_config_json, the one reader)."""
    from ..models import read_config_json as read

    return read(path, language_model=True)


def config_dict(name: str) -> dict:
    """A model reference's config as a dict, reading config.json directly where it can (fast: no transformers)."""
    from .. import models

    kind = models.resolve(name)
    if kind == "config":
        data = read_config_json(name)
        # never a size from a family's defaults (a config without model_type is refused for that first)
        return models.require_size(data, name) if data.get("model_type") else data
    if kind == "dir":
        return read_config_json(Path(name) / "config.json")
    if kind == "embedded":
        cached = models.cache_dir() / "models" / models.EMBEDDED[name][2] / "config.json"
        if cached.exists():
            return read_config_json(cached)
    if kind == "hub":
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(name, "config.json")
            if isinstance(cached, str):
                return read_config_json(cached)
        except ImportError:
            pass
    return models.load_config(name).to_dict()


def spec_from_model_name(name: str) -> ModelSpec:
    """The spec of a model reference (embedded name, config.json, model directory, cached Hugging Face id)."""
    from ..models import display_name

    return spec_from_dict(config_dict(name), name=display_name(name))
