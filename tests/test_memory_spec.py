"""ModelSpec from config.json alone: exact parameter counts (against models built on the meta device) and clear
errors for malformed or unknown configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from budgetune.errors import UserError
from budgetune.memory.spec import (
    FAMILIES,
    UnsupportedArchitecture,
    spec_from_dict,
    spec_from_model_name,
)

FIXTURES = Path(__file__).parent / "fixtures" / "memory"
CONFIGS = sorted(FIXTURES.glob("*.json"))


def meta_param_count(config: dict) -> int:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    kw = {k: v for k, v in config.items() if k != "model_type"}
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(config["model_type"], **kw))
    return sum(p.numel() for p in model.parameters())  # parameters() yields tied weights once


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_param_count_matches_meta_model(path):
    config = json.loads(path.read_text())
    assert spec_from_dict(config, path.name).n_params == meta_param_count(config)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_defaults_match_transformers(family):
    """A config naming only its architecture gets transformers' defaults (the real model class's sizes)."""
    assert spec_from_dict({"model_type": family}).n_params == meta_param_count({"model_type": family})


def test_families_cover_the_issue():
    assert {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "gpt_neox"} <= set(FAMILIES)


def test_spec_fields_from_config():
    spec = spec_from_model_name(str(FIXTURES / "llama3_8b.json"))
    assert (spec.n_layers, spec.hidden, spec.intermediate, spec.n_heads, spec.n_kv_heads, spec.head_dim) == (
        32, 4096, 14336, 32, 8, 128)
    assert spec.vocab == 128256 and not spec.tied_embeddings
    assert spec.mlp_kind == "gated" and spec.norm_kind == "rmsnorm"
    assert spec.n_params == 8_030_261_248  # Llama-3-8B's published count
    phi3 = spec_from_dict(json.loads((FIXTURES / "phi3.json").read_text()))
    assert phi3.linear_names == ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]
    neox = spec_from_dict(json.loads((FIXTURES / "gpt_neox.json").read_text()))
    assert neox.norm_kind == "layernorm" and neox.mlp_kind == "plain"


def test_unknown_architecture_names_the_fallback(tmp_path):
    with pytest.raises(UnsupportedArchitecture, match="--exact"):
        spec_from_dict({"model_type": "mamba", "hidden_size": 64})


@pytest.mark.parametrize("content, message", [
    ("{not json", "not a valid JSON"),
    ("[1, 2]", "JSON object"),
    ('{"hidden_size": 64}', "model_type"),
    ('{"model_type": "llama", "hidden_size": -4}', "hidden_size"),
    ('{"model_type": "llama", "hidden_size": "wide", "num_hidden_layers": 2}', "not an integer"),
    ('{"model_type": "llama", "hidden_size": 60, "num_hidden_layers": 2, "num_attention_heads": 6, '
     '"num_key_value_heads": 4}', "multiple"),
    ('{"model_type": "llama", "hidden_size": 64}', "num_hidden_layers"),
])
def test_malformed_config_is_a_one_line_user_error(tmp_path, content, message):
    path = tmp_path / "config.json"
    path.write_text(content)
    with pytest.raises(UserError, match=message) as info:
        spec_from_model_name(str(path))
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="no such"):
        spec_from_model_name(str(tmp_path / "nope" / "config.json"))
