"""A run never spends more than its FLOP budget: every step is priced before it runs, the first one after a start
or a resume included (the ledger once overshot 7.5e9 granted FLOPs by 30% that way)."""

from __future__ import annotations

import json

import pytest
from helpers import Killed, kill_at, small_split, tiny_run_config

from budgetune.train.loop import train


def _killed_run(path, tiny_config_path, tokenizer, data) -> dict:
    """A run killed after step 3 (its last checkpoint at step 2): what it had spent, and what its steps cost."""
    cfg = tiny_run_config(tiny_config_path, path, max_steps=None, checkpoint_every=2, eval_every=100)
    cfg.budget.max_flops = 1e15
    with pytest.raises(Killed):
        train(cfg, tokenizer=tokenizer, data=data, on_step=kill_at(3), progress=False)
    records = [json.loads(x) for x in (path / "metrics.jsonl").read_text().splitlines()]
    eval_flops = next(r["eval_flops"] for r in records if r["kind"] == "eval")
    flops = {r["step"]: r["flops"] for r in records if r["kind"] == "train"}
    spent = sum(json.loads((path / "ledger.json").read_text())["flops"].values())
    assert spent == pytest.approx(flops[2])
    return {"eval": eval_flops, "step1": flops[1] - eval_flops, "step3": flops[3] - flops[2], "spent": spent}


def test_first_step_is_priced_before_it_runs(tmp_path, tiny_config_path, tokenizer):
    """Room for the first evaluation and the reserved final one, not for a step: nothing may train."""
    data = small_split(tokenizer)
    probe = train(tiny_run_config(tiny_config_path, tmp_path / "probe", max_steps=1), tokenizer=tokenizer,
                  data=data, progress=False)
    eval_flops, step1 = probe.evals[0]["eval_flops"], probe.ledger.flops["train"]
    fresh = tiny_run_config(tiny_config_path, tmp_path / "fresh", max_steps=None)
    fresh.budget.max_flops = 2 * eval_flops + 0.5 * step1
    r = train(fresh, tokenizer=tokenizer, data=data, progress=False)
    assert r.ledger.steps == 0 and r.ledger.total_flops <= fresh.budget.max_flops


def test_first_step_after_a_resume_is_priced(tmp_path, tiny_config_path, tokenizer):
    """Resumed with less than step 3's cost granted beyond the final evaluation: step 3 must not run."""
    data = small_split(tokenizer)
    k = _killed_run(tmp_path / "run", tiny_config_path, tokenizer, data)
    tight = tiny_run_config(tiny_config_path, tmp_path / "run", max_steps=None, eval_every=100)
    tight.resume = True
    tight.budget.max_flops = k["spent"] + k["eval"] + 0.5 * k["step3"]
    r = train(tight, tokenizer=tokenizer, data=data, progress=False)
    assert r.ledger.steps == 2 and r.ledger.total_flops <= tight.budget.max_flops


@pytest.mark.slow
def test_resumed_run_trains_on_inside_its_budget(tmp_path, tiny_config_path, tokenizer):
    data = small_split(tokenizer)
    k = _killed_run(tmp_path / "run", tiny_config_path, tokenizer, data)
    room = tiny_run_config(tiny_config_path, tmp_path / "run", max_steps=None, eval_every=100)
    room.resume = True
    room.budget.max_flops = k["spent"] + k["eval"] + 1.5 * k["step3"]
    r = train(room, tokenizer=tokenizer, data=data, progress=False)
    assert r.ledger.steps >= 3 and r.ledger.total_flops <= room.budget.max_flops
