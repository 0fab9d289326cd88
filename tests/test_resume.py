"""A run killed mid-way and resumed ends with the same weights and ledger as one that was never interrupted."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import Killed, kill_at, small_split, tiny_run_config
from safetensors.torch import load_file

from budgetune.train.loop import train


def _weights(run_dir, method):
    name = "adapter/adapter_model.safetensors" if method == "lora" else "model/model.safetensors"
    return load_file(str(run_dir / name))


@pytest.mark.parametrize("method", ["lora", "full"])
def test_resume_equals_uninterrupted(tmp_path, tiny_config_path, tokenizer, method):
    data = small_split(tokenizer)
    straight = tiny_run_config(tiny_config_path, tmp_path / "straight", method=method, max_steps=6)
    a = train(straight, tokenizer=tokenizer, data=data, progress=False)

    broken = tiny_run_config(tiny_config_path, tmp_path / "broken", method=method, max_steps=6)
    with pytest.raises(Killed):
        train(broken, tokenizer=tokenizer, data=data, on_step=kill_at(5), progress=False)
    resumed_cfg = tiny_run_config(tiny_config_path, tmp_path / "broken", method=method, max_steps=6)
    resumed_cfg.resume = True
    b = train(resumed_cfg, tokenizer=tokenizer, data=data, progress=False)

    wa, wb = _weights(a.run_dir, method), _weights(b.run_dir, method)
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=0, atol=0)
    assert a.ledger.flops == b.ledger.flops
    assert a.ledger.tokens == b.ledger.tokens
    assert a.ledger.steps == b.ledger.steps == 6
    assert a.after_loss == b.after_loss
    steps = [json.loads(x)["step"] for x in (b.run_dir / "metrics.jsonl").read_text().splitlines()
             if json.loads(x)["kind"] == "train"]
    assert steps == list(range(1, 7))  # nothing logged twice after the resume


def test_budget_stops_and_records_reason(tmp_path, tiny_config_path, tokenizer):
    cfg = tiny_run_config(tiny_config_path, tmp_path / "run", max_steps=None)
    cfg.budget.max_tokens = 600
    result = train(cfg, tokenizer=tokenizer, data=small_split(tokenizer), progress=False)
    assert "token budget" in result.stop_reason
    assert 600 <= result.ledger.tokens["train"] < 600 + 4 * 64
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["stop_reason"] == result.stop_reason


def test_flop_budget_is_never_exceeded(tmp_path, tiny_config_path, tokenizer):
    cfg = tiny_run_config(tiny_config_path, tmp_path / "run")
    cfg.budget.max_flops = 4e10
    result = train(cfg, tokenizer=tokenizer, data=small_split(tokenizer), progress=False)
    assert result.ledger.total_flops <= 4e10
    assert result.ledger.steps >= 1 and "flop budget" in result.stop_reason


def test_lora_result_opens_with_peft(tmp_path, tiny_config_path, tokenizer):
    from peft import PeftModel

    from budgetune.models import load_model

    cfg = tiny_run_config(tiny_config_path, tmp_path / "run", max_steps=2)
    result = train(cfg, tokenizer=tokenizer, data=small_split(tokenizer), progress=False)
    model = PeftModel.from_pretrained(load_model(tiny_config_path, seed=0), str(result.artefact))
    trained = _weights(result.run_dir, "lora")
    loaded = {k: v for k, v in model.state_dict().items() if "lora_B" in k}
    assert loaded and all(v.abs().sum() > 0 for v in loaded.values())  # B starts at zero: training moved it
    assert any("lora_B" in k for k in trained)


def test_full_result_opens_with_transformers(tmp_path, tiny_config_path, tokenizer):
    from transformers import AutoModelForCausalLM

    cfg = tiny_run_config(tiny_config_path, tmp_path / "run", method="full", max_steps=2)
    result = train(cfg, tokenizer=tokenizer, data=small_split(tokenizer), progress=False)
    model = AutoModelForCausalLM.from_pretrained(result.artefact)
    batch = torch.tensor([[1, 2, 3, 4]])
    trained_model = result.extra["model"]
    torch.testing.assert_close(model(batch).logits, trained_model(batch).logits)


def test_gradient_accumulation_matches_a_larger_batch(tmp_path, tiny_config_path, tokenizer):
    data = small_split(tokenizer, 16, 4)
    big = tiny_run_config(tiny_config_path, tmp_path / "big", method="full", max_steps=2, micro_batch_size=4,
                          checkpoint_every=0)
    acc = tiny_run_config(tiny_config_path, tmp_path / "acc", method="full", max_steps=2, micro_batch_size=2,
                          grad_accum=2, checkpoint_every=0)
    a = train(big, tokenizer=tokenizer, data=data, progress=False)
    b = train(acc, tokenizer=tokenizer, data=data, progress=False)
    wa, wb = _weights(a.run_dir, "full"), _weights(b.run_dir, "full")
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=1e-4, atol=1e-5)
    assert a.ledger.tokens["train"] == b.ledger.tokens["train"]


def test_report_command(tmp_path, tiny_config_path, tokenizer):
    from budgetune import cli

    cfg = tiny_run_config(tiny_config_path, tmp_path / "run", max_steps=2)
    train(cfg, tokenizer=tokenizer, data=small_split(tokenizer), progress=False)
    assert cli.main(["report", str(tmp_path / "run")]) == 0
    page = (tmp_path / "run" / "report.html").read_text()
    assert "held-out loss" in page and "<table>" in page
    assert cli.main(["report", str(tmp_path / "nothing")]) == 2


def test_memory_budget_refuses_before_loading(tmp_path, tiny_config_path, tokenizer):
    from budgetune.errors import Infeasible

    cfg = tiny_run_config(tiny_config_path, tmp_path / "run", method="full", max_steps=2)
    cfg.budget.max_memory = "1MiB"
    with pytest.raises(Infeasible, match="binding term"):
        train(cfg, tokenizer=tokenizer, data=small_split(tokenizer), progress=False)
    assert not (tmp_path / "run" / "checkpoints").exists()
    cfg.train.method = "auto"
    cfg.budget.max_memory = "8GiB"
    result = train(cfg, tokenizer=tokenizer, data=small_split(tokenizer), progress=False)
    assert result.ledger.steps == 2 and cfg.train.method != "auto"


def test_resume_keeps_charges_made_by_other_commands(tmp_path, tiny_config_path, tokenizer):
    """Work charged to a run's ledger by another command (here `generate --ledger`) between a kill and the resume is
    kept by the resumed run, once."""
    from budgetune.cli import main as cli

    data = small_split(tokenizer)
    cfg = tiny_run_config(tiny_config_path, tmp_path / "run", max_steps=6)
    with pytest.raises(Killed):
        train(cfg, tokenizer=tokenizer, data=data, on_step=kill_at(5), progress=False)
    ledger_path = tmp_path / "run" / "ledger.json"
    assert cli(["generate", "--model", tiny_config_path, "--ledger", str(ledger_path), "--prompt", "Hi",
                "--max-new-tokens", "3"]) == 0
    charged = json.loads(ledger_path.read_text())["flops"]["inference"]
    assert charged > 0
    cfg.resume = True
    resumed = train(cfg, tokenizer=tokenizer, data=data, progress=False)
    assert resumed.ledger.steps == 6 and resumed.ledger.flops["inference"] == charged
    again = train(cfg, tokenizer=tokenizer, data=data, progress=False)  # resumes from the end: nothing new to fold
    assert again.ledger.flops["inference"] == charged
    saved = json.loads(ledger_path.read_text())
    assert saved["flops"]["inference"] == charged and saved["external"] == 1


# --- what the run directory decides (train/rundir.py) ---------------------------------------------------------------

def test_a_resumed_run_keeps_the_governors_stop_and_clears_a_limits():
    from budgetune.train.rundir import stop_reason_on_resume

    assert stop_reason_on_resume("governor: the next 10% buys 0.2% (price 1%)") == \
        "governor: the next 10% buys 0.2% (price 1%)"
    assert stop_reason_on_resume("governor: x (after a learning-rate cooldown)").startswith("governor")
    flops = "flop budget spent (1e9 of 1e9 FLOPs; the final evaluation is reserved)"
    for limit in ("max_steps reached (2 steps)", flops, "token budget spent"):
        assert stop_reason_on_resume(limit) is None  # a raised limit trains on; an unchanged one stops at once
    assert stop_reason_on_resume(None) is None


def test_resume_point_and_logs_of_a_fresh_and_a_resumed_run(tmp_path):
    from budgetune.errors import UserError
    from budgetune.train.rundir import RunDir

    run = RunDir(tmp_path / "run")
    assert run.resume_point(True) is None and run.resume_point(False) is None  # nothing there yet
    run.path.mkdir()
    for name, lines in (("metrics.jsonl", [1, 2, 3]), ("decisions.jsonl", [0, 3])):
        (run.path / name).write_text("".join(json.dumps({"step": s}) + "\n" for s in lines))
    (run.path / "charges.json").write_text("{}")
    (run.path / "ledger.json").write_text("{}")
    with pytest.raises(UserError, match="no checkpoint to resume from"):  # a run that trained, without checkpoint
        run.resume_point(True)
    assert run.resume_point(False) is None  # a fresh start reads no checkpoint
    run.start_logs(2)  # resumed at step 2: later records go, earlier ones stay
    assert [json.loads(line)["step"] for line in (run.path / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert [json.loads(line)["step"] for line in (run.path / "decisions.jsonl").read_text().splitlines()] == [0]
    assert (run.path / "charges.json").exists()
    run.start_logs(None)  # a fresh run starts with no logs and no outside charges
    assert not any((run.path / n).exists() for n in ("metrics.jsonl", "decisions.jsonl", "charges.json"))
    reader = RunDir(tmp_path / "run", writer=False)
    (run.path / "metrics.jsonl").write_text("x")
    reader.start_logs(None)  # only the writer touches the directory
    assert (run.path / "metrics.jsonl").read_text() == "x"
