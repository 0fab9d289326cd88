"""train.restore_best: a governed stop above the best evaluation so far goes back to that evaluation's weights.

The expected weights come from a second run that the same governor stops at the best evaluation itself, with
restore_best off (the same seeds and schedule up to there: CPU training is deterministic), not from the
checkpoint the code under test kept."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import small_split, tiny_run_config
from safetensors.torch import load_file
from test_governor_cooldown import StopAt

from budgetune.train import best
from budgetune.train.loop import train


def _jsonl(path):
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _weights(run_dir) -> dict:
    files = [p for p in run_dir.rglob("*.safetensors") if "checkpoints" not in p.parts]
    assert files, f"no saved weights under {run_dir}"
    out = {}
    for f in files:
        out.update(load_file(str(f)))
    return out


def _cfg(tiny_config_path, out, restore: bool):
    # A high rate on a tiny model: its held-out loss rises again after a few steps (a bump to stop in).
    cfg = tiny_run_config(tiny_config_path, out, eval_every=1, warmup_steps=1, checkpoint_every=1,
                          keep_checkpoints=1, cooldown_fraction=0.0, lr=3e-2, restore_best=restore)
    cfg.budget.max_flops = 1e12
    return cfg


STOP = 8  # the decision at which the governor stops: one evaluation a step, decision k on step k


def test_a_stop_above_the_best_evaluation_restores_its_weights(tmp_path, tiny_config_path, tokenizer):
    data = small_split(tokenizer)
    run = train(_cfg(tiny_config_path, tmp_path / "restored", True), tokenizer=tokenizer, data=data,
                governor=StopAt(STOP), progress=False)
    evals = [r for r in _jsonl(run.run_dir / "metrics.jsonl") if r["kind"] == "eval"]
    stop_step = STOP  # a governor with no evaluation plan is not asked about the evaluation before training
    seen = [r for r in evals if r["step"] <= stop_step]
    best_eval = min(seen, key=lambda r: r["eval_loss"])
    assert seen[-1]["step"] == stop_step and best_eval["step"] < stop_step, [r["eval_loss"] for r in seen]
    restores = [d for d in _jsonl(run.run_dir / "decisions.jsonl") if d["action"] == "restore"]
    assert len(restores) == 1 and restores[0]["restored"] is True and restores[0]["best_step"] == best_eval["step"]
    assert restores[0]["best_loss"] == pytest.approx(best_eval["eval_loss"])
    assert (run.run_dir / "checkpoints" / f"step-{best_eval['step']:08d}").is_dir()  # kept past keep_checkpoints=1

    # The same run stopped at the best evaluation itself, nothing restored: the weights to expect.
    reference = train(_cfg(tiny_config_path, tmp_path / "reference", False), tokenizer=tokenizer, data=data,
                      governor=StopAt(best_eval["step"]), progress=False)
    expected, got = _weights(reference.run_dir), _weights(run.run_dir)
    assert expected.keys() == got.keys()
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], rtol=0, atol=0)
    # And the final whole-set loss is the best evaluation's (both read the whole held-out set here).
    assert run.after_loss == pytest.approx(best_eval["eval_loss"], rel=1e-6)


def test_evaluations_on_other_examples_are_not_compared():
    state: dict = {}
    assert best.is_new_best(state, {"step": 0, "eval_loss": 2.0})
    assert not best.is_new_best(state, {"step": 1, "eval_loss": 2.0})  # equal is not better
    assert best.is_new_best(state, {"step": 2, "eval_loss": 1.5})
    # A sample (a larger one granted later) starts its own best, even at a higher loss.
    assert best.is_new_best(state, {"step": 3, "eval_loss": 3.0, "eval_indices": [0, 2, 4]})
    assert state["best"]["step"] == 3
    assert not best.is_new_best(state, {"step": 4, "eval_loss": 3.5, "eval_indices": [4, 2, 0]})  # same examples
    assert best.is_new_best(state, {"step": 5, "eval_loss": 2.9, "eval_indices": [0, 2, 4]})
