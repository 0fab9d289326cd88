"""Governed runs in the real loop (tiny model, real data): the evaluation plan, the origin, reallocation that
really trains and refreshes that really re-select."""

import json

from helpers import small_split, tiny_run_config

from budgetune.governor import make
from budgetune.governor.protocol import Decision, FixedBudget
from budgetune.train.loop import train


def _lines(path):
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_governed_run_evaluates_a_sample_within_its_share_and_reports_on_the_whole_set(tmp_path, tiny_config_path,
                                                                                      tokenizer):
    cfg = tiny_run_config(tiny_config_path, tmp_path / "run", eval_every=0, checkpoint_every=0)
    cfg.budget.max_flops = 3e11
    data = small_split(tokenizer, n_target=24)
    n = len(data.target)  # the embedded data's test part may hold fewer than asked for
    assert n >= 12
    result = train(cfg, tokenizer=tokenizer, data=data, governor=make("marginal", {"eval_min_sample": 4}),
                   progress=False)
    decisions = _lines(result.run_dir / "decisions.jsonl")
    plan = decisions[0]
    assert plan["action"] == "plan" and 4 <= plan["sample_size"] < n
    assert decisions[1]["step"] == 0 and decisions[1]["action"] == "continue"  # the origin reached the governor
    evals = [e for e in _lines(result.run_dir / "metrics.jsonl") if e["kind"] == "eval"]
    assert len(evals[0]["eval_sums"]) == n and "eval_indices" not in evals[0]
    assert all(e["eval_indices"] == plan["sample"] for e in evals[1:-1])
    assert len(evals[-1]["eval_sums"]) == n and "eval_indices" not in evals[-1]  # the reported loss: whole set
    assert result.after_loss == evals[-1]["eval_loss"]
    assert result.ledger.flops["eval"] <= cfg.train.eval_share * cfg.budget.max_flops * 1.01


def test_a_finished_run_given_more_flops_trains_on(tmp_path, tiny_config_path, tokenizer):
    data = small_split(tokenizer)
    cfg = tiny_run_config(tiny_config_path, tmp_path / "arm", eval_every=2, checkpoint_every=0)
    cfg.budget.max_flops = 4e10
    first = train(cfg, tokenizer=tokenizer, data=data, progress=False)
    cfg.budget.max_flops = 1.2e11
    cfg.resume = True
    second = train(cfg, tokenizer=tokenizer, data=data, progress=False)
    assert second.ledger.steps > first.ledger.steps  # the arm granted more FLOPs really trained
    assert second.ledger.total_flops > 2 * first.ledger.total_flops


class RefreshOnce(FixedBudget):
    """Asks for a refresh at its second decision (the policy is not under test here; the refresh is)."""

    name = "refresh-once"

    def __init__(self):
        self.calls = 0

    def decide(self, evaluation, ledger, budget):
        self.calls += 1
        return Decision("refresh" if self.calls == 2 else "continue", "test")


def test_a_refresh_really_reselects_and_is_reported(tmp_path, tiny_config_path, tokenizer):
    from budgetune.selection.refresh import make_refresher

    data = small_split(tokenizer)
    cfg = tiny_run_config(tiny_config_path, tmp_path / "run", eval_every=2, checkpoint_every=0, lr=3e-2)
    cfg.budget.max_flops = 1e11
    refresher = make_refresher({"scorer": "loss", "budget": "50%"}, list(data.train), target=list(data.target),
                               probe_size=12, min_drift=0.0, max_cost_share=10.0)
    result = train(cfg, tokenizer=tokenizer, data=data, governor=RefreshOnce(), refresher=refresher, progress=False)
    reports = [d for d in _lines(result.run_dir / "decisions.jsonl") if d["action"] == "refresh-report"]
    assert len(reports) == 1 and reports[0]["reselected"] and reports[0]["drift"] is not None
    assert [m for m in _lines(result.run_dir / "metrics.jsonl") if m["kind"] == "refresh"]
    assert result.extra["data"].train is data.train
    assert result.ledger.flops["selection"] > 0  # the probes and the re-score are on the ledger
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["pool_size"] == len(data.train) // 2  # the loop trains on the re-selected half now
