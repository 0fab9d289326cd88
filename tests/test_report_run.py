"""A real (tiny) run through the CLI: `report RUN_DIR` rebuilds run's page byte for byte, the TensorBoard tracker
writes readable event files holding the run's own numbers, `--json` prints the summary, the run stores n_params."""

from __future__ import annotations

import importlib.util
import json

import pytest

from budgetune import cli
from budgetune.train.rundir import read_jsonl


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_config_path):
    if importlib.util.find_spec("tensorboard") is None:
        pytest.skip("tensorboard is not installed (pip install 'budgetune[tensorboard]')")
    root = tmp_path_factory.mktemp("run")
    data = root / "data.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"What is {i} plus {i}?", "response": f"It is {2 * i}."}) + "\n"
                            for i in range(24)))
    out = root / "r"
    argv = ["run", "--model", tiny_config_path, "--data", str(data), "--heldout-fraction", "0.25",
            "--max-steps", "2", "--micro-batch-size", "4", "--eval-every", "1", "--generation-eval", "1",
            "--report-to", "tensorboard", "--out", str(out), "--json"]
    return out, argv


@pytest.fixture(scope="module")
def ran(tiny_run):
    import contextlib
    import io

    out, argv = tiny_run
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert cli.main(argv) == 0
    return out, json.loads(buf.getvalue().strip().splitlines()[-1])


def test_report_rebuilds_the_same_page(ran):
    out, _ = ran
    first = (out / "report.html").read_bytes()
    assert b"Generated answers (held-out prompts)" in first  # from generation_eval.json, not from memory
    (out / "report.html").unlink()
    assert cli.main(["report", str(out)]) == 0
    assert (out / "report.html").read_bytes() == first


def test_json_summary_and_n_params(ran):
    out, summary = ran
    assert summary["run_dir"] == str(out) and summary["steps"] == 2
    assert summary["generation"]["after"]["n"] == 1 and 0 <= summary["generation"]["after"]["token_accuracy"] <= 1
    # tests/conftest.py's tiny Llama, counted by hand: tied embedding 49152·64; per layer q, o 64·64, k, v 64·32,
    # gate/up/down 3·64·128, two norms 2·64; final norm 64. LoRA's adapters are not part of N.
    per_layer = 2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 128 + 2 * 64
    assert summary["n_params"] == 49152 * 64 + 2 * per_layer + 64


def test_tensorboard_holds_the_runs_numbers(ran):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, _ = ran
    dirs = [p.parent for p in (out / "tensorboard").rglob("events.out.tfevents.*")]
    assert dirs
    acc = EventAccumulator(str(dirs[0]))
    acc.Reload()
    scalars = acc.Tags()["scalars"]
    evals = [r for r in read_jsonl(out / "metrics.jsonl") if r["kind"] == "eval"]
    logged = {e.step: e.value for e in acc.Scalars("eval/eval_loss")}
    assert logged == pytest.approx({r["step"]: r["eval_loss"] for r in evals}, rel=1e-6)
    trains = [r for r in read_jsonl(out / "metrics.jsonl") if r["kind"] == "train"]
    assert [e.value for e in acc.Scalars("train/train_loss")] == pytest.approx([r["train_loss"] for r in trains],
                                                                               rel=1e-6)
    ledger = json.loads((out / "ledger.json").read_text())
    assert acc.Scalars("ledger/total_flops")[-1].value == pytest.approx(ledger["total_flops"], rel=1e-6)
    assert "generation/after/token_accuracy" in scalars
    assert any(t.startswith("governor/decision") for t in acc.Tags()["tensors"])  # each decision, with its reason


@pytest.mark.parametrize("name", ["wandb", "mlflow"])
def test_other_trackers_offline(name, tmp_path, monkeypatch):
    if importlib.util.find_spec(name) is None:
        pytest.skip(f"{name} is not installed (pip install 'budgetune[{name}]')")
    from budgetune.trackers import Tracker

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    tracker = Tracker(name, tmp_path / "run", {"train": {"lr": 1e-4}})
    tracker.record(tmp_path / "metrics.jsonl", {"kind": "eval", "step": 1, "eval_loss": 2.5})
    tracker.end()
    assert any(tmp_path.rglob("*"))  # it wrote locally, with no server


def test_missing_tracker_names_the_extra(monkeypatch):
    from importlib import util

    from budgetune import trackers
    from budgetune.errors import UserError

    real = util.find_spec
    monkeypatch.setattr(util, "find_spec", lambda n, *a: None if n == "wandb" else real(n, *a))
    with pytest.raises(UserError, match=r"pip install 'budgetune\[wandb\]'"):
        trackers.check("wandb")
    with pytest.raises(UserError, match="use one of none, tensorboard, wandb, mlflow"):
        trackers.check("swanlab")


def test_progress_names_the_binding_limit():
    from budgetune.budget import Budget, Ledger
    from budgetune.train.progress import binding

    ledger = Ledger()
    ledger.charge("train", 1e12, 100)
    # 3 of 3 steps done, 1e12 of 1e15 FLOPs: the step limit binds and the bar is full.
    assert binding(Budget(max_flops=1e15), ledger, 3, 3) == ("steps", 1.0)
    assert binding(Budget(max_flops=2e12), ledger, 100, 3) == ("FLOPs", 0.5)
