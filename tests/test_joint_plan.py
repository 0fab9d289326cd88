"""The joint plan (budgetune.joint): choices made before any weight is loaded, refusals with the smallest budget
that would work (expected values by hand arithmetic on the tiny Llama), overrides, and the plan against the run."""

from __future__ import annotations

import json
import re

import pytest

from budgetune import config as config_mod
from budgetune.errors import UserError
from budgetune.joint import make_plan

GIB = 2**30
# The tiny Llama of conftest.py by hand: per layer q 64·64, k 64·32, v 64·32 (2 KV heads of 16), o 64·64,
# gate/up 64·128 each, down 128·64 = 36,864 weights; 2 layers; the tied head 64 × 49,152.
LAYER = 64 * 64 + 2 * 64 * 32 + 64 * 64 + 3 * 64 * 128
N = 2 * LAYER + 64 * 49152  # weights each token multiplies
PARAMS = N + 2 * 2 * 64 + 64  # plus 2 RMSNorms per layer and the final one (the head is the embedding)
L, D_ATTN = 2, 64


@pytest.fixture(scope="module")
def data(tokenizer):
    from budgetune.data import load_data

    return load_data(config_mod.default_run_config().data, tokenizer)  # the embedded chatterbot split


def _cfg(tiny, **budget):
    cfg = config_mod.default_run_config()
    cfg.model.model = tiny
    cfg.budget.max_seconds = None
    for k, v in budget.items():
        setattr(cfg.budget, k, v)
    return cfg


def _eval_by_hand(examples, batch: int = 16) -> float:
    """Forward FLOPs (2N + 4·L·s·d_attn per token, Kaplan et al. 2020) over length-sorted, padded batches."""
    lengths = sorted(e.n_tokens for e in examples)
    total = 0.0
    for i in range(0, len(lengths), batch):
        part = lengths[i: i + batch]
        s = part[-1]
        total += (2 * N + 4 * L * s * D_ATTN) * len(part) * s
    return total


def test_flop_refusal_names_the_smallest_budget_by_hand(tiny_config_path, tokenizer, data):
    # Full fine-tuning, so every weight trains: a step is (6N + 7 attention products of 2·s·d_attn per layer) per
    # padded token (2 forward, 5 fused backward).
    cfg = _cfg(tiny_config_path, max_flops=1e6)
    cfg.train.method = "full"
    cfg.governor = {"name": "none"}
    with pytest.raises(UserError) as e:
        make_plan(cfg, {"train.method", "budget.max_flops", "governor"}, tokenizer=tokenizer, data=data)
    msg = str(e.value)
    assert msg.startswith("budget field 'max_flops' is 1e+06")
    dev, test = _eval_by_hand(data.scoring), _eval_by_hand(data.test)
    test_reserve = dev * sum(x.n_tokens for x in data.test) / sum(x.n_tokens for x in data.dev)
    import numpy as np

    order = np.random.default_rng([0, 0]).permutation(len(data.train))[:8]
    s = max(data.train[i].n_tokens for i in order)
    step = (6 * N + 14 * L * s * D_ATTN) * 8 * s
    minimum = dev + test + step + dev + test_reserve
    stated = float(re.search(r"costs ([0-9.e+]+) FLOPs", msg).group(1))
    assert stated == pytest.approx(minimum, rel=1e-3)
    give = float(re.search(r"give --max-flops ([0-9.e+]+)", msg).group(1))
    assert minimum <= give <= minimum * 1.01
    cfg.budget.max_flops = give  # the budget the message names is accepted
    plan, _, _ = make_plan(cfg, {"train.method", "budget.max_flops", "governor"}, tokenizer=tokenizer, data=data)
    assert plan.numbers["minimum"] == pytest.approx(minimum, rel=1e-9)


def test_memory_refusal_names_the_smallest_budget(tiny_config_path, tokenizer, data):
    cfg = _cfg(tiny_config_path, max_flops=1e13, max_memory="300MiB")
    cfg.train.method = "lora"
    given = {"budget.max_memory", "budget.max_flops", "train.method"}
    with pytest.raises(UserError) as e:
        make_plan(cfg, given, tokenizer=tokenizer, data=data)
    msg = str(e.value)
    assert msg.startswith("budget field 'max_memory' is 0.29 GiB but method 'lora' needs at least")
    need = float(re.search(r"give --max-memory ([0-9.]+)GiB", msg).group(1))
    # By hand: the 512 MiB runtime overhead, and the fp32 base weights (4 B each), which LoRA keeps whole.
    assert need * GIB >= 512 * 2**20 + 4 * PARAMS
    cfg.budget.max_memory = f"{need}GiB"  # the budget the message names is accepted ...
    plan, _, _ = make_plan(cfg, given, tokenizer=tokenizer, data=data)
    assert plan.memory["planned_total"] <= need * GIB
    assert plan.config["train.micro_batch_size"] == 1  # ... at the smallest layout
    cfg.budget.max_memory = f"{need - 0.01}GiB"  # and a hundredth of a GiB less is not
    with pytest.raises(UserError, match="max_memory"):
        make_plan(cfg, given, tokenizer=tokenizer, data=data)


def test_tight_memory_lowers_the_micro_batch_and_keeps_the_step(tiny_config_path, tokenizer, data):
    cfg = _cfg(tiny_config_path, max_flops=1e13)
    roomy, _, _ = make_plan(cfg, {"budget.max_flops"}, tokenizer=tokenizer, data=data)
    assert roomy.config["train.micro_batch_size"] == 8 and roomy.config["train.gradient_checkpointing"] is False
    # Halfway between what micro-batch 8 needs and the fixed part: micro-batch 8 no longer fits.
    total = roomy.memory["planned_total"]
    cfg.budget.max_memory = f"{int(512 * 2**20 + (total - 512 * 2**20) * 0.6)}B"
    tight, _, _ = make_plan(cfg, {"budget.max_flops", "budget.max_memory"}, tokenizer=tokenizer, data=data)
    micro, accum = tight.config["train.micro_batch_size"], tight.config["train.grad_accum"]
    assert micro < 8 and micro * accum == 8  # the optimizer step keeps its 8 examples
    assert tight.memory["planned_total"] <= tight.memory["budget"]
    assert tight.get("micro-batch").source == "chosen"


def test_flags_given_are_kept_and_said_so(tiny_config_path, tokenizer, data):
    cfg = _cfg(tiny_config_path, max_flops=1e13, max_memory="4GiB")
    cfg.train.method, cfg.train.micro_batch_size = "full", 2
    cfg.governor, cfg.selection = {"name": "none"}, {"scorer": "none"}
    given = {"train.method", "train.micro_batch_size", "governor", "selection", "budget.max_memory",
             "budget.max_flops"}
    plan, _, _ = make_plan(cfg, given, tokenizer=tokenizer, data=data)
    sources = {c.name: c.source for c in plan.choices}
    for name in ("memory", "method", "micro-batch", "governor", "selection"):
        assert sources[name] == "given", (name, sources)
    for name in ("precision", "checkpointing", "final eval", "training"):
        assert sources[name] == "chosen", (name, sources)
    assert plan.config["train.method"] == "full" and plan.config["train.micro_batch_size"] == 2
    assert plan.config["selection"] == {} and plan.config["governor"] == {"name": "none"}
    assert all(c.reason for c in plan.choices)


def test_flops_planned_add_up_to_the_budget(tiny_config_path, tokenizer, data):
    cfg = _cfg(tiny_config_path, max_flops=3e11)
    plan, _, _ = make_plan(cfg, {"budget.max_flops"}, tokenizer=tokenizer, data=data)
    f = plan.flops
    assert f["train"] + f["eval"] + f["selection"] == pytest.approx(3e11, rel=1e-9)
    # whatever the plan, the reported loss before training reads the whole test set (by hand)
    assert f["train"] > 0 and f["eval"] >= _eval_by_hand(data.test)


def test_governor_kept_where_its_evaluations_cost_less_than_the_fixed_schedule(tiny_config_path, tokenizer, data):
    # At 3e11 FLOPs the governor's fewest evaluations are over the 10% share, so its plan evaluates nothing in
    # between; stepping aside would fall back to the fixed schedule, which reads the whole dev set before and twice
    # in between, and the test set before and after: by hand, several times dearer. The plan keeps it.
    cfg = _cfg(tiny_config_path, max_flops=3e11)
    plan, _, _ = make_plan(cfg, {"budget.max_flops"}, tokenizer=tokenizer, data=data)
    gov = next(c for c in plan.choices if c.name == "governor")
    assert gov.value.startswith("marginal") and gov.reason.startswith("kept")
    dev, test = _eval_by_hand(data.dev), _eval_by_hand(data.test)
    fixed = (1 + cfg.train.eval_points) * dev + 2 * test
    assert plan.flops["eval"] < 0.5 * fixed
    cfg = _cfg(tiny_config_path, max_flops=3e11)
    cfg.governor = {"name": "none"}
    fixed_plan, _, _ = make_plan(cfg, {"budget.max_flops", "governor"}, tokenizer=tokenizer, data=data)
    # the final test evaluation is reserved as the loop reserves it: dev's FLOPs scaled by the sets' token counts
    reserve = dev * sum(e.n_tokens for e in data.test) / sum(e.n_tokens for e in data.dev)
    assert fixed_plan.flops["eval"] == pytest.approx(fixed - test + reserve, rel=0.02)  # by hand: 2N + 4·L·s·d_attn a token


def test_plan_verb_prints_the_plan_and_refuses_without_writing(tiny_config_path, tmp_path, monkeypatch, capsys):
    from budgetune import cli

    monkeypatch.chdir(tmp_path)
    assert cli.main(["plan", "--model", tiny_config_path, "--max-flops", "3e11"]) == 0
    out = capsys.readouterr().out
    for row in ("memory", "method", "selection", "governor", "evaluation", "final eval", "training"):
        assert re.search(rf"^  {row} ", out, re.MULTILINE), out
    assert cli.main(["plan", "--model", tiny_config_path, "--max-flops", "1e6"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--max-flops" in err
    assert list(tmp_path.iterdir()) == []


def test_run_writes_the_plan_and_sets_it_beside_the_ledger(tiny_config_path, tmp_path, capsys):
    """A real run of the tiny model: the plan's priced evaluation and first step equal what the loop charged."""
    from budgetune import cli

    out = tmp_path / "run"
    # fixed budget: the first evaluation reads the whole dev set, which the plan prices exactly (a governed run's
    # first evaluation reads the governor's sample instead)
    rc = cli.main(["run", "--model", tiny_config_path, "--out", str(out), "--max-steps", "1", "--max-flops", "3e11",
                   "--max-seconds", "none", "--generation-eval", "0", "--selection", "scorer=none", "--no-report",
                   "--governor", "none"])
    assert rc == 0
    text = capsys.readouterr().out
    assert text.index("plan ") < text.index("held-out loss")  # printed before the run's summary
    plan = json.loads((out / "plan.json").read_text())
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    first_eval = next(m for m in metrics if m["kind"] == "eval")
    assert first_eval["eval_flops"] == pytest.approx(plan["numbers"]["dev_eval"], rel=1e-6)
    ledger = json.loads((out / "ledger.json").read_text())
    assert ledger["flops"]["train"] == pytest.approx(plan["numbers"]["first_step"], rel=1e-6)
    summary = json.loads((out / "summary.json").read_text())
    spent = summary["plan_vs_spent"]["phases"]
    assert spent["train"]["spent"] == ledger["flops"]["train"]
    assert spent["eval"]["planned"] == plan["planned_flops"]["eval"]
    assert summary["plan_vs_spent"]["memory"]["planned"] == plan["planned_memory"]["planned_total"]
    assert "plan vs spent" in text and "peak memory" in text
