"""Shared fixtures: the embedded tokenizer and tiny random-init models (2 layers, 64 dims) for fast tests."""

from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TINY_LLAMA = {
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 49152,
    "max_position_embeddings": 512,
    "tie_word_embeddings": True,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 2,
}


@pytest.fixture(scope="session")
def tiny_config_path(tmp_path_factory):
    """A config.json for a 2-layer, 64-dim Llama that uses the embedded tokenizer's vocabulary."""
    path = tmp_path_factory.mktemp("tiny") / "config.json"
    path.write_text(json.dumps(TINY_LLAMA))
    return str(path)


@pytest.fixture(scope="session")
def tokenizer():
    from budgetune.models import load_tokenizer

    return load_tokenizer("smollm2-135m")


@pytest.fixture
def tiny_model(tiny_config_path):
    from budgetune.models import load_model

    return load_model(tiny_config_path, seed=0)
