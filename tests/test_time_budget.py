"""A --max-seconds budget planned as work (budgetune.joint.seconds, train/timing.py): the refusal of a budget below
the least a run can do, by hand arithmetic at a given throughput; the binding budget; and the loop under a fake
clock whose seconds are FLOPs over a known rate, slower than the plan assumed: the run ends on its time budget
with the final evaluation done and inside the budget, and drops the evaluations in between the share cannot pay."""

from __future__ import annotations

import json
import re
import types

import numpy as np
import pytest

from budgetune import config as config_mod
from budgetune.budget import Budget, Ledger, fold_outside
from budgetune.errors import UserError
from budgetune.joint import make_plan

# The tiny Llama of conftest.py by hand (as tests/test_joint_plan.py): q 64·64, k and v 64·32, o 64·64, gate/up/down
# 64·128 each per layer, 2 layers, the tied head 64 × 49,152.
LAYER = 64 * 64 + 2 * 64 * 32 + 64 * 64 + 3 * 64 * 128
N = 2 * LAYER + 64 * 49152
L, D_ATTN = 2, 64
MARGIN = 1.2  # train/timing.MARGIN, the final evaluation's reserve over its predicted seconds (documented there)


@pytest.fixture(scope="module")
def data(tokenizer):
    from budgetune.data import load_data

    return load_data(config_mod.default_run_config().data, tokenizer)


def _eval_by_hand(examples, batch: int = 16) -> float:
    lengths = sorted(e.n_tokens for e in examples)
    total = 0.0
    for i in range(0, len(lengths), batch):
        part = lengths[i: i + batch]
        total += (2 * N + 4 * L * part[-1] * D_ATTN) * len(part) * part[-1]
    return total


def _cfg(tiny, **budget):
    cfg = config_mod.default_run_config()
    cfg.model.model = tiny
    cfg.budget.max_flops = None
    for k, v in budget.items():
        setattr(cfg.budget, k, v)
    cfg.train.method = "full"
    cfg.governor = {"name": "none"}
    return cfg


GIVEN = {"train.method", "budget.max_seconds", "budget.flops_per_second", "governor"}


def test_time_refusal_names_the_smallest_budget_by_hand(tiny_config_path, tokenizer, data):
    rate = 1e10  # FLOP/s, given: no probe, so the seconds are the FLOPs over it
    cfg = _cfg(tiny_config_path, max_seconds=1.0, flops_per_second=rate)
    with pytest.raises(UserError) as e:
        make_plan(cfg, GIVEN, tokenizer=tokenizer, data=data)
    msg = str(e.value)
    assert msg.startswith("budget field 'max_seconds' is 1 ") and "\n" not in msg
    dev, test = _eval_by_hand(data.scoring), _eval_by_hand(data.test)
    reserve = dev + dev * sum(x.n_tokens for x in data.test) / sum(x.n_tokens for x in data.dev)
    order = np.random.default_rng([0, 0]).permutation(len(data.train))[:8]
    s = max(data.train[i].n_tokens for i in order)
    step = (6 * N + 14 * L * s * D_ATTN) * 8 * s
    need = (dev + test + step + MARGIN * reserve) / rate
    stated = float(re.search(r"takes about ([0-9.e+]+) s", msg).group(1))
    assert stated == pytest.approx(need, rel=1e-3)
    give = float(re.search(r"give --max-seconds ([0-9.e+]+)", msg).group(1))
    assert need <= give <= need * 1.01
    cfg.budget.max_seconds = give  # the budget the message names is planned
    plan, _, _ = make_plan(cfg, GIVEN, tokenizer=tokenizer, data=data)
    assert plan.numbers["minimum_seconds"] == pytest.approx(need, rel=1e-9)
    assert plan.numbers["binding"] == "seconds"



def test_a_seconds_limit_the_user_did_not_give_is_a_guard_not_a_refusal(tiny_config_path, tokenizer, data):
    cfg = _cfg(tiny_config_path, max_seconds=1.0, flops_per_second=1e10)  # the budget refused by hand above
    plan, _, _ = make_plan(cfg, GIVEN - {"budget.max_seconds"}, tokenizer=tokenizer, data=data)
    assert plan.numbers["max_seconds"] == 1.0  # given a throughput, it is still planned, never refused
    plan, _, _ = make_plan(cfg, GIVEN - {"budget.max_seconds", "budget.flops_per_second"}, tokenizer=tokenizer,
                           data=data)
    assert plan.get("binding") is None and not plan.seconds  # neither given: the FLOP plan, no seconds in it


def test_binding_budget_and_planned_seconds(tiny_config_path, tokenizer, data):
    rate = 1e10
    cfg = _cfg(tiny_config_path, max_seconds=200.0, flops_per_second=rate, max_flops=1e15)
    plan, _, _ = make_plan(cfg, GIVEN | {"budget.max_flops"}, tokenizer=tokenizer, data=data)
    assert plan.numbers["binding"] == "seconds"  # 200 s buy 2e12 FLOPs, fewer than 1e15
    sec, flops = plan.seconds, plan.flops
    assert sec["train"] == pytest.approx(flops["train"] / rate, rel=1e-9)
    assert sec["eval"] == pytest.approx(flops["eval"] / rate, rel=1e-9)
    assert sum(sec.values()) == pytest.approx(200.0, rel=1e-6)  # the seconds are all planned
    assert plan.config["budget.flops_per_second"] == rate
    cfg.budget.max_flops = 1e12  # 1e12 FLOPs take 100 s: the FLOP budget binds
    plan, _, _ = make_plan(cfg, GIVEN | {"budget.max_flops"}, tokenizer=tokenizer, data=data)
    assert plan.numbers["binding"] == "flops"
    assert sum(plan.seconds.values()) == pytest.approx(1e12 / rate, rel=1e-6)


def test_fixed_schedule_keeps_the_share_of_seconds(tiny_config_path, tokenizer, data):
    rate = 1e10
    cfg = _cfg(tiny_config_path, max_seconds=400.0, flops_per_second=rate)
    cfg.train.eval_points = 20
    plan, _, _ = make_plan(cfg, GIVEN | {"train.eval_points"}, tokenizer=tokenizer, data=data)
    n = plan.numbers
    # after training a fixed run with dev and test apart reads the test set only
    assert n["fixed_final_reserve"] < n["final_reserve"]
    ends = (n["before_eval"] + MARGIN * n["fixed_final_reserve"]) / rate
    keep = int((0.1 * 400.0 - ends) // (n["dev_eval"] / rate))  # by hand: what the 10% share pays for
    assert 0 <= keep < 20
    assert plan.get("evaluation").value.startswith(f"{keep} of 20 ")
    assert plan.numbers["eval_between"] == pytest.approx(keep * n["dev_eval"])


def test_planning_flops_and_phase_seconds():
    b = Budget(max_flops=1e12, max_seconds=100.0, flops_per_second=2e9)
    ledger = Ledger()
    assert b.planning_flops() == 2e11  # 100 s × 2e9 FLOP/s, fewer than 1e12
    ledger.charge("eval", 5e10)
    ledger.add_seconds("eval", 40.0)
    assert b.planning_flops(ledger) == 5e10 + 60.0 * 2e9
    assert Budget(max_flops=1e11, max_seconds=100.0, flops_per_second=2e9).planning_flops() == 1e11
    fold_outside(ledger, [{"flops": {"eval": 3.0, "train": 1.0}, "tokens": {}, "seconds": 2.5}])
    assert ledger.phase_seconds == {"eval": 42.5} and ledger.seconds == 42.5
    assert Ledger.from_dict(ledger.to_dict()).phase_seconds == {"eval": 42.5}


class _Clock:
    """Fake time: the loop's perf_counter, advanced by the work done at a known rate (seconds = FLOPs / rate)."""

    def __init__(self):
        self.t = 0.0

    def perf_counter(self):
        return self.t


def _fake_time(monkeypatch, rate: float):
    from budgetune.train import loop, testset

    clock = _Clock()
    fake = types.SimpleNamespace(perf_counter=clock.perf_counter)
    monkeypatch.setattr(loop, "time", fake)
    monkeypatch.setattr(testset, "time", fake)

    def timed(fn):
        def run(*a, **k):
            r = fn(*a, **k)
            clock.t += r["flops"] / rate
            return r
        return run

    monkeypatch.setattr(loop, "heldout_losses", timed(loop.heldout_losses))
    monkeypatch.setattr(testset, "heldout_losses", timed(testset.heldout_losses))
    real_set_up = loop.set_up

    def set_up(*a, **k):
        s = real_set_up(*a, **k)
        step = s.stepper.step

        def slow(micro, lr):
            r = step(micro, lr)
            clock.t += r.flops / rate
            return r
        s.stepper.step = slow
        return s

    monkeypatch.setattr(loop, "set_up", set_up)
    return clock


def _run(tiny, out, *flags):
    from budgetune import cli

    return cli.main(["run", "--model", tiny, "--out", str(out), "--max-flops", "none", "--generation-eval", "0",
                     "--selection", "scorer=none", "--no-report", "--governor", "none", "--method", "full", *flags])


def _read(out):
    ledger = json.loads((out / "ledger.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return ledger, summary, [m for m in metrics if m["kind"] == "eval"]


def test_slower_than_planned_run_ends_with_its_final_evaluation_inside_the_budget(tiny_config_path, tmp_path,
                                                                                  monkeypatch, capsys):
    # The plan assumes 1e10 FLOP/s; the machine does 5e9 (the fake clock). 60 s pay for the evaluations before and
    # after (about 23 s at the true rate, 27 with the margin) and some steps, not for the 1000 steps asked.
    _fake_time(monkeypatch, 5e9)
    out = tmp_path / "run"
    assert _run(tiny_config_path, out, "--max-seconds", "60", "--flops-per-second", "1e10", "--max-steps", "1000",
                "--eval-share", "1") == 0
    text = capsys.readouterr().out
    ledger, summary, evals = _read(out)
    assert "reserved for the final evaluation" in summary["stop_reason"]
    assert 1 <= ledger["steps"] < 1000
    # the final evaluation ran: on the test set (dev and test apart), charged beyond the dev evaluations logged
    assert summary["after_loss"] is not None and ledger["flops"]["eval"] > sum(e["eval_flops"] for e in evals)
    assert ledger["seconds"] <= 60.0  # ... inside the budget
    assert ledger["phase_seconds"]["train"] == pytest.approx(ledger["flops"]["train"] / 5e9, rel=1e-9)
    assert ledger["phase_seconds"]["eval"] == pytest.approx(ledger["flops"]["eval"] / 5e9, rel=1e-9)
    seconds = summary["plan_vs_spent"]["seconds"]
    assert seconds["train"]["spent"] == ledger["phase_seconds"]["train"]
    assert seconds["train"]["planned"] > 0 and "(seconds planned / spent)" in text


def test_evaluations_in_between_are_dropped_when_time_binds(tiny_config_path, tmp_path, monkeypatch, capsys):
    _fake_time(monkeypatch, 5e9)
    common = ("--flops-per-second", "5e9", "--eval-points", "3")
    out = tmp_path / "steps"  # 1000 s: the step limit ends the run; its 3 evaluations in between run
    assert _run(tiny_config_path, out, "--max-seconds", "1000", "--max-steps", "4", "--eval-share", "0", *common) == 0
    _, summary, evals = _read(out)
    # dev: before training and 3 in between; after training only the test set is read (dev and test apart)
    assert summary["stop_reason"].startswith("max_steps") and len(evals) == 1 + 3
    out = tmp_path / "time"  # 30 s, which end the run before its steps: time binds and the share pays for none
    assert _run(tiny_config_path, out, "--max-seconds", "30", "--max-steps", "1000", "--eval-share", "0",
                *common) == 0
    ledger, summary, evals = _read(out)
    assert summary["stop_reason"].startswith("time budget spent") and len(evals) == 1
    assert ledger["seconds"] <= 30.0
    capsys.readouterr()


def test_plan_verb_plans_seconds_and_refuses_without_writing(tiny_config_path, tmp_path, monkeypatch, capsys):
    from budgetune import cli

    monkeypatch.chdir(tmp_path)
    assert cli.main(["plan", "--model", tiny_config_path, "--max-seconds", "500", "--flops-per-second", "1e10"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^  binding +seconds: 500 s ", out, re.MULTILINE), out
    assert cli.main(["plan", "--model", tiny_config_path, "--max-seconds", "1", "--flops-per-second", "1e10"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "give --max-seconds" in err
    assert cli.main(["plan", "--model", tiny_config_path, "--max-flops", "3e11", "--max-seconds", "none"]) == 0
    assert "binding" not in capsys.readouterr().out  # no time budget: nothing to bind
    assert list(tmp_path.iterdir()) == []


def test_reserve_grows_when_the_machine_slows_down():
    from budgetune.train import timing

    budget = Budget(max_seconds=100.0)
    ledger, state = Ledger(), {}
    ledger.charge("eval", 1e10)
    ledger.add_seconds("eval", 2.0)  # 2e-10 s per evaluation FLOP
    for flops, seconds in ((1e10, 1.0), (1e10, 1.0)):  # two steps at 1e-10 s per FLOP
        ledger.charge("train", flops)
        ledger.add_seconds("train", seconds)
        timing.should_stop(budget, ledger, 0.0, 0.0, state)
    assert timing.reserve_seconds(ledger, budget, 5e9, state) == pytest.approx(MARGIN * 5e9 * 2e-10)
    ledger.charge("train", 1e10)
    ledger.add_seconds("train", 4.0)  # the third step runs 4x slower than the first two
    timing.should_stop(budget, ledger, 0.0, 0.0, state)
    mean = 6.0 / 3e10
    assert timing.reserve_seconds(ledger, budget, 5e9, state) == pytest.approx(MARGIN * 5e9 * 2e-10 * 4e-10 / mean)
    # and the next step is priced at the last step's rate, the slower one
    reason = timing.should_stop(budget, ledger, 1e10, 5e9, state)
    assert reason is None and timing.train_seconds_per_flop(ledger, budget, state) == pytest.approx(4e-10)
