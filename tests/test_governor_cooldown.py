"""Decay on stop: a governed stop cools the learning rate down to 0 within the budget, then evaluates, and a run
killed while cooling down resumes in the cooldown."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import small_split, tiny_run_config
from safetensors.torch import load_file

from budgetune.errors import UserError
from budgetune.governor.protocol import Decision
from budgetune.train.loop import train


class StopAt:
    """Says stop at its n-th decision; its counter is checkpointed like any governor state."""

    def __init__(self, n: int):
        self.n, self.seen = n, 0

    def decide(self, evaluation, ledger, budget) -> Decision:
        self.seen += 1
        return Decision("stop" if self.seen >= self.n else "continue", f"test: decision {self.seen}", {})

    def state_dict(self) -> dict:
        return {"seen": self.seen}

    def load_state_dict(self, state: dict) -> None:
        self.seen = state.get("seen", 0)


class Killed(Exception):
    pass


def _jsonl(path):
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _cfg(tiny_config_path, out, *, fraction, max_flops=1e12, **train):
    train = {"eval_every": 1, "warmup_steps": 1, "checkpoint_every": 0, **train}
    cfg = tiny_run_config(tiny_config_path, out, cooldown_fraction=fraction, **train)
    cfg.budget.max_flops = max_flops
    return cfg


def _cooldown_steps(run_dir):
    """(train records of the cooldown, the total FLOPs when it began, its length, its starting rate)."""
    decisions = _jsonl(run_dir / "decisions.jsonl")
    start = next(d for d in decisions if d["action"] == "cooldown" and not d["done"])
    steps = [r for r in _jsonl(run_dir / "metrics.jsonl") if r["kind"] == "train" and r["step"] > start["step"]]
    return steps, start["flops"], start["cooldown_flops"], start["cooldown_lr"]


def test_stop_cools_the_rate_down_to_zero_then_evaluates(tmp_path, tiny_config_path, tokenizer):
    cfg = _cfg(tiny_config_path, tmp_path / "run", fraction=0.5)
    result = train(cfg, tokenizer=tokenizer, data=small_split(tokenizer), governor=StopAt(6), progress=False)

    decisions = _jsonl(result.run_dir / "decisions.jsonl")
    assert [d["action"] for d in decisions] == ["continue"] * 5 + ["stop", "cooldown", "cooldown"]
    assert decisions[-2]["step"] == 6 and decisions[-2]["done"] is False and decisions[-1]["done"] is True
    assert result.stop_reason.startswith("governor: test: decision 6")

    steps, from_flops, length, start_lr = _cooldown_steps(result.run_dir)
    metrics = _jsonl(result.run_dir / "metrics.jsonl")
    stop_lr = next(r["lr"] for r in metrics if r["kind"] == "train" and r["step"] == 6)
    assert start_lr == stop_lr and length == pytest.approx(0.5 * next(
        r["train_flops"] for r in metrics if r["kind"] == "eval" and r["step"] == 6))
    assert len(steps) >= 2
    # Linear in the FLOPs spent since the stop: rate_i = rate_0 · (1 − spent_before_i / length).
    before = [from_flops] + [r["flops"] for r in steps[:-1]]
    for r, spent in zip(steps, before):
        assert r["lr"] == pytest.approx(start_lr * (1 - (spent - from_flops) / length))
    assert steps[-2]["flops"] - from_flops < length <= steps[-1]["flops"] - from_flops
    step_share = (steps[-1]["flops"] - steps[-2]["flops"]) / length
    assert 0 < steps[-1]["lr"] <= start_lr * step_share * 1.0001  # the last step runs within one step of 0
    # No evaluation while cooling down; the final one follows the last cooldown step.
    evals = [r for r in metrics if r["kind"] == "eval"]
    assert [e["step"] for e in evals[-2:]] == [6, steps[-1]["step"]]
    assert result.ledger.steps == steps[-1]["step"] and result.ledger.total_flops <= cfg.budget.max_flops


def test_cooldown_is_capped_by_the_budget_left(tmp_path, tiny_config_path, tokenizer):
    data = small_split(tokenizer)
    probe = train(_cfg(tiny_config_path, tmp_path / "probe", fraction=0.0), tokenizer=tokenizer, data=data,
                  governor=StopAt(6), progress=False)
    at_stop = probe.ledger.total_flops  # the run stopped at once, after its sixth evaluation
    eval_cost = probe.evals[0]["eval_flops"]
    train_flops = probe.ledger.flops["train"]
    # Room for about 3.6 of the 6 steps that fraction=1 asks for, plus the reserved final evaluation.
    budget = at_stop + 0.6 * train_flops + eval_cost
    cfg = _cfg(tiny_config_path, tmp_path / "run", fraction=1.0, max_flops=budget)
    result = train(cfg, tokenizer=tokenizer, data=data, governor=StopAt(6), progress=False)

    assert result.ledger.total_flops <= budget
    steps, from_flops, length, start_lr = _cooldown_steps(result.run_dir)
    assert from_flops == pytest.approx(at_stop)
    mean_step = train_flops / probe.ledger.steps
    assert length == pytest.approx(budget - at_stop - eval_cost - mean_step) and length < train_flops
    assert len(steps) >= 2 and steps[-1]["lr"] < 0.5 * start_lr
    # It ran to its end (not cut off by the budget), and the final evaluation still fit.
    assert _jsonl(result.run_dir / "decisions.jsonl")[-1]["done"] is True
    assert result.stop_reason.startswith("governor")


def test_zero_fraction_stops_at_once(tmp_path, tiny_config_path, tokenizer):
    cfg = _cfg(tiny_config_path, tmp_path / "run", fraction=0.0)
    result = train(cfg, tokenizer=tokenizer, data=small_split(tokenizer), governor=StopAt(4), progress=False)
    assert result.ledger.steps == 4
    assert [d["action"] for d in _jsonl(result.run_dir / "decisions.jsonl")][-1] == "stop"


def test_kill_during_cooldown_resumes_in_the_cooldown(tmp_path, tiny_config_path, tokenizer):
    data = small_split(tokenizer)
    straight = train(_cfg(tiny_config_path, tmp_path / "straight", fraction=0.5, checkpoint_every=1),
                     tokenizer=tokenizer, data=data, governor=StopAt(6), progress=False)
    steps, *_ = _cooldown_steps(straight.run_dir)
    die_at = steps[1]["step"]  # after the second cooldown step was checkpointed

    def on_step(step, ledger):
        if step == die_at + 1:
            raise Killed()

    with pytest.raises(Killed):
        train(_cfg(tiny_config_path, tmp_path / "broken", fraction=0.5, checkpoint_every=1), tokenizer=tokenizer,
              data=data, governor=StopAt(6), on_step=on_step, progress=False)
    saved = json.loads(max((tmp_path / "broken" / "checkpoints").iterdir()).joinpath("state.json").read_text())
    assert saved["loop"]["cooldown"] is not None and saved["governor"] == {"seen": 6}

    cfg = _cfg(tiny_config_path, tmp_path / "broken", fraction=0.5, checkpoint_every=1)
    cfg.resume = True
    resumed = train(cfg, tokenizer=tokenizer, data=data, governor=StopAt(6), progress=False)

    a = load_file(str(straight.run_dir / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(resumed.run_dir / "adapter" / "adapter_model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    assert straight.ledger.flops == resumed.ledger.flops and straight.ledger.steps == resumed.ledger.steps
    assert straight.after_loss == resumed.after_loss and straight.stop_reason == resumed.stop_reason
    for name in ("metrics.jsonl", "decisions.jsonl"):  # the same rates, losses and decisions, each logged once
        rows = [_jsonl(run.run_dir / name) for run in (straight, resumed)]
        strip = [[{k: v for k, v in r.items() if k != "seconds"} for r in rs] for rs in rows]
        assert strip[0] == strip[1]


def test_cooldown_fraction_outside_zero_one_is_one_line(tmp_path, tiny_config_path, tokenizer):
    cfg = _cfg(tiny_config_path, tmp_path / "run", fraction=1.5)
    with pytest.raises(UserError, match="cooldown_fraction"):
        train(cfg, tokenizer=tokenizer, data=small_split(tokenizer), governor=StopAt(2), progress=False)
