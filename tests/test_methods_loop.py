"""The memory-saving methods through the one training loop (slow: `pytest -m slow tests/test_methods_loop.py`): a run killed mid-way and resumed ends exactly where an
uninterrupted run ends (the method state in the checkpoint is complete), and QLoRA's 4-bit loading goes through
the loop's load_kwargs."""

from __future__ import annotations

import pytest
import torch
from helpers import Killed, kill_at, small_split, tiny_run_config
from safetensors.torch import load_file

from budgetune.train.loop import train


def _weights(result):
    name = "adapter/adapter_model.safetensors" if (result.run_dir / "adapter").exists() else "model/model.safetensors"
    return load_file(str(result.run_dir / name))


def _resume_matches(tmp_path, model_path, tokenizer, method, options, lr):
    data = small_split(tokenizer)
    runs = {}
    for label in ("straight", "broken"):
        cfg = tiny_run_config(model_path, tmp_path / label, method=method, method_options=options, max_steps=6,
                              lr=lr)
        if label == "broken":
            with pytest.raises(Killed):
                train(cfg, tokenizer=tokenizer, data=data, on_step=kill_at(5), progress=False)
            cfg = tiny_run_config(model_path, tmp_path / label, method=method, method_options=options, max_steps=6,
                                  lr=lr)
            cfg.resume = True
        runs[label] = train(cfg, tokenizer=tokenizer, data=data, progress=False)
    a, b = runs["straight"], runs["broken"]
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=0, atol=0)
    assert a.ledger.flops == b.ledger.flops and a.ledger.steps == b.ledger.steps == 6
    assert a.after_loss < a.before_loss


@pytest.mark.slow
@pytest.mark.parametrize("method, options, lr", [
    ("badam", {"switch_every": "2"}, 3e-3),  # the resume falls inside the third block's span
    ("mezo", {}, 1e-3),
])
def test_resume_equals_uninterrupted(tmp_path, tiny_config_path, tokenizer, method, options, lr):
    _resume_matches(tmp_path, tiny_config_path, tokenizer, method, options, lr)


@pytest.mark.slow
@pytest.mark.parametrize("method, options, lr", [
    ("galore", {"rank": "8", "update_proj_gap": "3"}, 1e-2),
    ("hift", {"layers_per_group": "1"}, 3e-3),
    ("lozo", {"lazy": "4"}, 1e-3),
    ("addax", {"max_fo_len": "30"}, 0.1),
    ("adamw8bit", {}, 1e-3),
    ("subzero", {"rank": "4", "lazy": "4"}, 1e-3),  # the resume falls inside a subspace window
    ("dqt", {}, 3e-3),  # stochastic rounding draws the same after a resume
    ("peqa", {}, 3e-2),
])
def test_resume_equals_uninterrupted_slow(tmp_path, tiny_config_path, tokenizer, method, options, lr):
    _resume_matches(tmp_path, tiny_config_path, tokenizer, method, options, lr)


@pytest.mark.slow
def test_qlora_loads_4bit_through_the_loop(tmp_path, tiny_model, tokenizer):
    model_dir = tmp_path / "tiny"
    tiny_model.save_pretrained(model_dir, safe_serialization=True)
    cfg = tiny_run_config(str(model_dir), tmp_path / "run", method="qlora", method_options={"r": "4"}, max_steps=3,
                          lr=1e-2)
    result = train(cfg, tokenizer=tokenizer, data=small_split(tokenizer), progress=False)
    model = result.extra["model"]
    assert getattr(model.get_base_model(), "is_loaded_in_4bit", False)
    assert (result.run_dir / "adapter" / "adapter_model.safetensors").exists()
    assert result.after_loss < result.before_loss
