"""Two CPU processes (gloo) under `accelerate launch` and `torchrun`: one writer, one summary, a ledger that counts
every rank's work once, failures raised on every rank, sharded (FSDP2) runs that resume exactly, and a planner
that plans the layout the run uses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
SCRIPT = str(HERE / "ddp_train.py")
JOB = str(HERE / "dist_job.py")
SRC = str(HERE.parent / "src")
ACCELERATE = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
needs_accelerate = pytest.mark.skipif(shutil.which("accelerate") is None, reason="accelerate CLI not installed")


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
                PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _proc(args, timeout=420):
    return subprocess.run(args, check=False, capture_output=True, text=True, timeout=timeout, env=_env())


def _launch(args, out, timeout=420):
    proc = _proc(args, timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "result.json").read_text())


def _lines(stdout: str, start: str) -> int:
    """How many printed lines begin with `start` (a summary prints its 'wall time' and 'result' lines once)."""
    return sum(line.startswith(start) for line in stdout.splitlines())


def _ranks(out: Path) -> list[dict]:
    return [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


@pytest.fixture(scope="module")
def small_data(tmp_path_factory, tokenizer):
    """A 24-example training file and a 6-example target file from the embedded conversations."""
    sys.path.insert(0, str(HERE))
    from helpers import small_split

    from budgetune.commands.select import record

    split = small_split(tokenizer, 24, 6)
    root = tmp_path_factory.mktemp("data")
    for name, rows in (("train.jsonl", split.train), ("target.jsonl", split.target)):
        (root / name).write_text("".join(json.dumps(record(e)) + "\n" for e in rows))
    return str(root / "train.jsonl"), str(root / "target.jsonl")


def _run_argv(config, data, out, *extra):
    train, target = data
    return ["-m", "budgetune.cli", "run", "--model", config, "--data", train, "--target", target,
            "--max-seq-len", "64", "--max-steps", "2", "--max-flops", "none", "--max-seconds", "none",
            "--eval-batch-size", "8", "--warmup-steps", "1", "--generation-eval", "0", "--out", str(out), *extra]


@pytest.mark.slow  # the Python API on the path test_budgetune_run_under_accelerate_launch takes from the CLI
@needs_accelerate
def test_two_process_run_counts_global_flops(tmp_path, tiny_config_path):
    single = _launch([sys.executable, SCRIPT, str(tmp_path / "one"), tiny_config_path], tmp_path / "one")
    double = _launch([*ACCELERATE, SCRIPT, str(tmp_path / "two"), tiny_config_path], tmp_path / "two")
    assert double["world"] == 2 and single["world"] == 1
    # Same global batches in the same order: every token counted once across both processes.
    assert double["ledger"]["tokens"]["train"] == single["ledger"]["tokens"]["train"]
    assert double["ledger"]["tokens"]["eval"] == single["ledger"]["tokens"]["eval"]
    # Per-process padding differs a little; a rank-local count would be about half.
    ratio = double["ledger"]["flops"]["train"] / single["ledger"]["flops"]["train"]
    assert 0.8 < ratio <= 1.0
    assert double["ledger"]["steps"] == single["ledger"]["steps"] == 3


@needs_accelerate
def test_budgetune_run_under_accelerate_launch(tmp_path, tiny_config_path, small_data):
    """The CLI as a user launches it: exit 0, one summary, one report, the ledger of one process on the same
    global batches (2 × 2 examples per step against 1 × 4)."""
    two = _proc([*ACCELERATE, *_run_argv(tiny_config_path, small_data, tmp_path / "two", "--micro-batch-size", "2")])
    assert two.returncode == 0, two.stderr[-3000:]
    from budgetune.cli import main

    assert main(_run_argv(tiny_config_path, small_data, tmp_path / "one", "--micro-batch-size", "4",
                          "--no-report")[2:]) == 0  # the same run on this one process
    assert _lines(two.stdout, "wall time") == 1 and _lines(two.stdout, "result ") == 1
    assert "result       None" not in two.stdout
    assert (tmp_path / "two" / "report.html").is_file()
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["sharding"] == "none"
    a = json.loads((tmp_path / "two" / "ledger.json").read_text())
    b = json.loads((tmp_path / "one" / "ledger.json").read_text())
    assert a["tokens"] == b["tokens"] and a["steps"] == b["steps"] == 2
    # Each rank pads only to its own longest sequence, so two halves cost a little less than one whole batch;
    # a rank-local count would be about half, a doubled one about twice.
    for phase in ("train", "eval"):
        assert 0.8 < a["flops"][phase] / b["flops"][phase] <= 1.0


@pytest.mark.slow  # ~40 s on 2 cores; reduce_or_raise alone is in test_sharding.py
def test_a_failed_rank_stops_every_rank(tmp_path, tiny_config_path):
    """Rank 1's evaluation raises in its own forward pass, then (next run) rank 0's governor raises: the other rank
    learns it in the same collective and raises too, instead of waiting for the process-group timeout (60 s)."""
    proc = _proc([*TORCHRUN, JOB, "fail", str(tmp_path), tiny_config_path], timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = _ranks(tmp_path)
    assert r1["eval"]["error"] == "RuntimeError" and "injected evaluation failure" in r1["eval"]["message"]
    assert r0["eval"]["error"] == "RankFailed" and "held-out evaluation failed on rank(s) 1" in r0["eval"]["message"]
    assert r0["governor"]["error"] == "ValueError"
    assert r1["governor"]["error"] == "RankFailed" and "governor" in r1["governor"]["message"]
    # The run keeps its step-2 checkpoint and resumes from it on the same processes.
    assert r0["resume"]["error"] is None and r0["resumed"] == 6


@pytest.mark.slow
def test_selection_is_scored_in_shares(tmp_path, tiny_config_path):
    """The loss scorer on two halves of the pool gives each example the score one process gives it, and the
    ledger charges the scoring once (batch size 1: no padding, so the FLOPs must match exactly)."""
    proc = _proc([*TORCHRUN, JOB, "select", str(tmp_path), tiny_config_path], timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = _ranks(tmp_path)
    for r in (r0, r1):
        assert r["shared"]["values"] == pytest.approx(r["whole"]["values"], rel=1e-5)
        assert r["shared"]["flops"] == pytest.approx(r["whole"]["flops"], rel=1e-12)
        assert r["shared"]["tokens"] == r["whole"]["tokens"]
    assert r0["shared"]["chosen"] == r1["shared"]["chosen"]


@pytest.mark.slow  # ~35 s on 2 cores; check_fits against plan without a launch is in test_sharding.py
def test_sharded_run_plans_what_the_planner_plans(tmp_path, tiny_config_path, small_data):
    """`budgetune run --sharding fsdp` on 2 processes checks the per-rank memory `budgetune plan --gpus 2
    --sharding fsdp` reports for the same shape (with checkpointing, which FSDP2 wraps), and its result is a whole
    adapter saved once."""
    proc = _proc([*TORCHRUN, *_run_argv(tiny_config_path, small_data, tmp_path / "run", "--micro-batch-size", "2",
                                        "--sharding", "fsdp", "--max-memory", "64GiB", "--gradient-checkpointing",
                                        "--no-report")])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _lines(proc.stdout, "wall time") == 1
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["sharding"] == "fsdp" and summary["processes"] == 2
    plan, shape = summary["plan"], summary["plan"]["shape"]
    assert shape["ranks"] == 2 and shape["sharding"] == "fsdp" and plan["gradient_checkpointing"]
    assert (tmp_path / "run" / "checkpoints" / "step-00000002" / "shards").is_dir()
    from safetensors.torch import load_file

    adapter = load_file(str(tmp_path / "run" / "adapter" / "adapter_model.safetensors"))
    assert adapter and all(t.shape[0] == 16 or t.shape[1] == 16 for t in adapter.values())  # whole r=16 adapters

    def planned(gpus, sharding):
        cli = _proc([sys.executable, "-m", "budgetune.cli", "plan", "--json", "--model", tiny_config_path,
                     "--gpu-memory", "64GiB", "--method", "lora", "--gpus", str(gpus), "--sharding", sharding,
                     "--seq-len", str(shape["seq_len"]), "--batch-size", str(shape["micro_batch"]),
                     "--precision", shape["precision"], "--attention", shape["attention"],
                     "--overhead", f"{shape['overhead_bytes']}B", "--fragmentation", str(shape["fragmentation"])],
                    timeout=120)
        assert cli.returncode == 0, cli.stderr
        rows = [p for p in json.loads(cli.stdout)["plans"] if p["options"]["r"] == 16
                and p["gradient_checkpointing"] == plan["gradient_checkpointing"]]
        assert len(rows) == 1
        return rows[0]["bytes"]

    assert planned(2, "fsdp") == plan["bytes"]
    assert planned(1, "none")["weights"] > plan["bytes"]["weights"]  # sharding really divided the weights


@pytest.mark.slow
@pytest.mark.parametrize("sharding", ["fsdp", "none"])
def test_two_process_run_resumes_exactly(tmp_path, tiny_config_path, sharding):
    """LoRA and full fine-tuning on 2 processes, killed after step 3 and resumed from the step-2 checkpoint, end
    with the very weights and ledger of the uninterrupted run; FSDP2 checkpoints are written per rank."""
    proc = _proc([*TORCHRUN, JOB, "resume", str(tmp_path), tiny_config_path, sharding], timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = _ranks(tmp_path)[0]
    for method in ("lora", "full"):
        r = r0[method]
        assert r["same_keys"] and r["n_keys"] > 0
        assert r["max_diff"] == 0.0
        assert r["after_a"] == r["after_b"]
        for key in ("flops", "tokens", "steps"):
            assert r["ledger_a"][key] == r["ledger_b"][key]
        assert r["steps_logged"] == [1, 2, 3, 4, 5]
        assert r["sharded_checkpoint"] == (sharding == "fsdp")
        assert r["summary"]["sharding"] == sharding and r["summary"]["plan"]["shape"]["ranks"] == 2


@pytest.mark.slow
def test_budgetune_select_under_torchrun(tmp_path, tiny_config_path, small_data):
    """`budgetune select` on 2 processes: ranks score shares, rank 0 alone writes the subset and prints once; the
    scores equal those of one process (batch size 1: no padding)."""
    train, target = small_data
    argv = ["-m", "budgetune.cli", "select", "--scorer", "loss", "--budget", "50%", "--model", tiny_config_path,
            "--data", train, "--target", target, "--max-seq-len", "64", "-o", "batch_size=1"]
    two = _proc([*TORCHRUN, *argv, "--out", str(tmp_path / "two.jsonl")], timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("selected ") == 1
    from budgetune.cli import main

    assert main(argv[2:] + ["--out", str(tmp_path / "one.jsonl")]) == 0
    a = [json.loads(x) for x in (tmp_path / "two.jsonl.scores.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (tmp_path / "one.jsonl.scores.jsonl").read_text().splitlines()]
    assert [r["uid"] for r in a] == [r["uid"] for r in b]
    assert [r["score"] for r in a] == pytest.approx([r["score"] for r in b], rel=1e-5)
    sa = json.loads((tmp_path / "two.jsonl.summary.json").read_text())
    sb = json.loads((tmp_path / "one.jsonl.summary.json").read_text())
    assert sa["flops"] == pytest.approx(sb["flops"], rel=1e-12) and sa["selected"] == sb["selected"]
