"""Model loading: the embedded model, its cache, config-only models, and clear errors offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from budgetune import models
from budgetune.errors import UserError


def test_embedded_model_is_real_smollm2_and_cached():
    first = models.embedded_dir()
    stamp = (first / "model.safetensors").stat().st_mtime
    again = models.embedded_dir()
    assert again == first and (again / "model.safetensors").stat().st_mtime == stamp  # not converted twice
    config = json.loads((first / "config.json").read_text())
    assert config["num_hidden_layers"] == 30 and config["hidden_size"] == 576
    assert "quantization_config" not in config
    assert models.embedded_gguf().name.endswith(".gguf")


def test_embedded_model_answers(tokenizer):
    import torch

    model = models.load_model("smollm2-135m")
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                        add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids["input_ids"].shape[1]:])


def test_config_only_model_is_random_and_seeded(tiny_config_path):
    a = models.load_model(tiny_config_path, seed=1)
    b = models.load_model(tiny_config_path, seed=1)
    c = models.load_model(tiny_config_path, seed=2)
    wa, wb, wc = (m.model.layers[0].mlp.up_proj.weight for m in (a, b, c))
    assert (wa == wb).all() and not (wa == wc).all()


def test_bad_model_references(tmp_path):
    with pytest.raises(UserError, match="not in the local Hugging Face cache"):
        models.load_model("no-such-org/no-such-model")
    bad = tmp_path / "config.json"
    bad.write_text('{"hidden_size": 8}')
    with pytest.raises(UserError, match="model_type"):
        models.load_model(str(bad))
    bad.write_text("{oops")
    with pytest.raises(UserError, match="not a valid JSON config"):
        models.load_model(str(bad))
    with pytest.raises(UserError, match="no such model file"):
        models.load_model("./missing-dir")


def test_missing_hub_model_fails_fast_without_offline_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env["HF_HOME"] = str(tmp_path / "hf")
    proc = subprocess.run([sys.executable, "-c", ("from budgetune import models\n"
                           "try:\n  models.load_model('someone/missing-model')\n"
                           "except Exception as e: print(type(e).__name__, e)")],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.stdout.startswith("UserError") and "local Hugging Face cache" in proc.stdout
