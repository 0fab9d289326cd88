"""plan --inference: the largest batch × context that fits, alone and with a draft."""

from __future__ import annotations

import argparse
import json

import pytest

from budgetune.errors import Infeasible, UserError
from budgetune.infer.capacity import (
    draft_spec_layerskip,
    inference_bytes,
    max_batch,
    max_context,
    plan_inference,
)
from budgetune.memory.spec import spec_from_dict

SMOL = {"model_type": "llama", "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
        "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49152, "tie_word_embeddings": True}


@pytest.fixture
def spec():
    return spec_from_dict(dict(SMOL), "smol")


def test_max_batch_is_the_largest_that_fits(spec):
    memory = 4 * 2**30
    for ctx in (512, 4096):
        b = max_batch(spec, memory, ctx)
        assert b > 0
        assert inference_bytes(spec, b, ctx)["total"] <= memory < inference_bytes(spec, b + 1, ctx)["total"]
    assert max_batch(spec, memory, 512) > max_batch(spec, memory, 4096)


def test_a_draft_costs_capacity(spec):
    draft = draft_spec_layerskip(spec, 4)
    memory = 2 * 2**30
    assert draft.n_layers == 4 and draft.n_params < spec.n_params
    assert max_batch(spec, memory, 2048, draft=draft) <= max_batch(spec, memory, 2048)
    terms = inference_bytes(spec, 3, 1000, draft=draft)
    # K and V, per layer, batch row, position, KV head and head dimension, 4 B each (hand arithmetic)
    per_layer = 2 * 3 * 1000 * spec.n_kv_heads * spec.head_dim * 4
    assert terms["kv_cache"] == spec.n_layers * per_layer
    assert terms["draft_kv_cache"] == 4 * per_layer
    ctx = max_context(spec, memory, 1, draft=draft)
    assert inference_bytes(spec, 1, ctx, draft=draft)["total"] <= memory < inference_bytes(spec, 1, ctx + 1,
                                                                                           draft=draft)["total"]


def test_plan_inference_table_and_json(spec, tmp_path):
    text, obj = plan_inference(spec, 8 * 2**30, argparse.Namespace(dtype="bf16", contexts=[1024, 8192]))
    assert [r["context"] for r in obj["rows"]] == [1024, 8192]
    assert all(r["max_batch_with_draft"] <= r["max_batch"] for r in obj["rows"])
    assert "with draft" in text and "8192" in text
    json.dumps(obj)
    cfg = tmp_path / "draft.json"
    cfg.write_text(json.dumps({**SMOL, "num_hidden_layers": 2}))
    _, with_file = plan_inference(spec, 8 * 2**30, argparse.Namespace(draft=str(cfg)))
    assert with_file["draft_weights_bytes"] < obj["weights_bytes"] * 2
    cfg.write_text(json.dumps({**SMOL, "vocab_size": 32000}))
    with pytest.raises(UserError, match="vocabulary"):
        plan_inference(spec, 8 * 2**30, argparse.Namespace(draft=str(cfg)))


def test_weights_that_do_not_fit_are_infeasible(spec):
    with pytest.raises(Infeasible, match="weights alone"):
        plan_inference(spec, 100 * 2**20, None)
