"""Run directories that cannot be mixed up, one writer per run, non-finite numbers never trained on, and a killed
run resumed at random points ending exactly where an uninterrupted one does."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import small_split, tiny_run_config
from safetensors.torch import load_file

from budgetune import atomic, cli, runlock
from budgetune.errors import UserError
from budgetune.train import rundir
from budgetune.train.loop import train


def strict_lines(path: Path) -> list[dict]:
    """Records of a JSONL file read strictly: a bare NaN/Infinity fails."""
    def refuse(name):
        raise AssertionError(f"{path}: bare {name} in JSON")
    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines() if line.strip()]


# --- one writer ---------------------------------------------------------------------------------------------------

HOLD = ("import sys, time; sys.path.insert(0, 'src'); from budgetune import runlock; runlock.acquire(sys.argv[1]); "
        "print('held', flush=True); time.sleep(120)")


def test_second_writer_refused_in_one_line_and_a_dead_holders_lock_taken_over(tmp_path, capsys, tiny_config_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"model": {}, "data": {}, "train": {}, "budget": {}}))
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).parent.parent)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = sorted(os.listdir(run)), (run / "config.json").read_bytes()
        rc = cli.main(["run", "--model", tiny_config_path, "--out", str(run), "--resume", "--max-steps", "2",
                       "--generation-eval", "0"])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and f"in use by process {holder.pid}" in err[0]
        assert (sorted(os.listdir(run)), (run / "config.json").read_bytes()) == before
        with pytest.raises(UserError, match="in use by process"):
            runlock.acquire(run)
    finally:
        holder.kill()
        holder.wait()
    assert runlock.holder(run) is None  # the kernel dropped the dead process's lock
    runlock.acquire(run)
    assert f"process {holder.pid}, which is no longer running" in capsys.readouterr().err
    assert (run / runlock.LOCK).read_text().split()[0] == str(os.getpid())
    runlock.release(run)


# --- where a run may write -----------------------------------------------------------------------------------------

def _cfg(out, **kw):
    from budgetune.config import RunConfig

    cfg = RunConfig()
    cfg.out = str(out) if out else None
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def test_prepare_decides_without_writing(tmp_path):
    from budgetune.config import to_dict

    new = rundir.prepare(_cfg(tmp_path / "a" / "b"))
    assert new.path == tmp_path / "a" / "b" and not (tmp_path / "a").exists()  # nothing written yet
    # its own unfinished run (same config, stopped before any checkpoint) is taken again
    own = tmp_path / "own"
    own.mkdir()
    atomic.write_json(own / "config.json", to_dict(_cfg(own)))
    assert rundir.prepare(_cfg(own)).path == own
    other = _cfg(own)
    other.train.lr = 0.5
    with pytest.raises(UserError, match="holds an earlier run"):
        rundir.prepare(other)  # a different run's directory
    assert rundir.prepare(_cfg(own, overwrite=True)).replace
    (own / "checkpoints" / "step-00000002").mkdir(parents=True)
    with pytest.raises(UserError, match="--resume to continue it"):
        rundir.prepare(_cfg(own))  # the same config, but it has progress: resuming is the way on


def test_default_names_are_unique(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runs = []
    for _ in range(3):  # same method, same second
        run = rundir.prepare(_cfg(None))
        run.open({"model": {}, "data": {}, "train": {}, "budget": {}})
        runs.append(run.path)
    assert len(set(runs)) == 3 and all(p.is_dir() for p in runs)


def test_open_removes_leftovers_of_killed_writes_only(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints" / ".step-00000004.x1.tmp").mkdir(parents=True)
    (run / "checkpoints" / ".step-00000004.x1.tmp" / "weights.safetensors").write_bytes(b"\0" * 1000)
    (run / ".result.y.tmp").mkdir()
    (run / ".config.json.z.tmp").write_text("{")
    (tmp_path / ".notes.tmp").write_text("the user's")  # beside the run, not ours
    r = rundir.RunDir(run)
    r.open({"model": {}, "data": {}, "train": {}, "budget": {}})
    assert sorted(p.name for p in run.iterdir()) == [".lock", "checkpoints", "config.json"]
    assert list((run / "checkpoints").iterdir()) == []
    assert (tmp_path / ".notes.tmp").read_text() == "the user's"


def test_result_swapped_in_before_the_old_one_goes(tmp_path):
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "w").write_text("old")
    new = tmp_path / ".result.tmp"
    new.mkdir()
    (new / "w").write_text("new")
    seen = []
    real = atomic.shutil.rmtree

    def rmtree(path, *a, **k):  # when the old copy is removed, the new one is already in place
        seen.append((tmp_path / "adapter" / "w").read_text())
        return real(path, *a, **k)

    atomic.shutil.rmtree = rmtree
    try:
        atomic.replace_dir(new, tmp_path / "adapter")
    finally:
        atomic.shutil.rmtree = real
    assert seen == ["new"] and (tmp_path / "adapter" / "w").read_text() == "new"
    assert sorted(os.listdir(tmp_path)) == ["adapter"]


def test_json_is_written_strictly(tmp_path):
    atomic.write_json(tmp_path / "a.json", {"loss": float("nan"), "x": [float("inf"), 1.5]})
    assert json.loads((tmp_path / "a.json").read_text(), parse_constant=lambda c: 1 / 0) == {"loss": None,
                                                                                               "x": [None, 1.5]}
    r = rundir.RunDir(tmp_path)
    r.append(r.metrics, {"train_loss": float("-inf")})
    assert strict_lines(r.metrics) == [{"train_loss": None}]


def test_a_torn_last_log_line_is_dropped_but_a_damaged_middle_line_is_an_error(tmp_path):
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "lo')
    assert rundir.read_jsonl(log) == [{"step": 1}, {"step": 2}]
    log.write_text('{"step": 1}\n{"st\n{"step": 3}\n')
    with pytest.raises(UserError, match="metrics.jsonl:2"):
        rundir.read_jsonl(log)


def test_resume_never_takes_trust_remote_code_or_downloads_from_the_run_directory(tmp_path):
    import argparse

    from budgetune.commands.options import add_config_flags, apply_flags, resume_base
    from budgetune.config import RunConfig, to_dict

    saved = RunConfig()
    saved.model.trust_remote_code = saved.model.allow_download = True
    (tmp_path / "config.json").write_text(json.dumps(to_dict(saved)))
    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    args = parser.parse_args(["--resume", "--out", str(tmp_path)])
    cfg = apply_flags(resume_base(args, RunConfig()), args)
    assert not cfg.model.trust_remote_code and not cfg.model.allow_download
    args = parser.parse_args(["--resume", "--out", str(tmp_path), "--trust-remote-code"])
    assert apply_flags(resume_base(args, RunConfig()), args).model.trust_remote_code  # this invocation's word


def test_a_missing_gguf_makes_no_network_request(tmp_path, capsys, monkeypatch):
    import socket

    def no_network(*a, **k):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    for argv in (["run", "--model", str(tmp_path / "gone.gguf"), "--out", str(tmp_path / "r")],
                 ["generate", "--model", str(tmp_path / "gone.gguf"), "--prompt", "Hi"],
                 ["plan", "--model", str(tmp_path / "gone.gguf"), "--gpu-memory", "24GiB"]):
        assert cli.main(argv) == 2
        assert "no such GGUF file" in capsys.readouterr().err
    import huggingface_hub.constants

    assert huggingface_hub.constants.HF_HUB_OFFLINE and os.environ["HF_HUB_OFFLINE"] == "1"
    assert sorted(os.listdir(tmp_path)) == []


# --- non-finite numbers --------------------------------------------------------------------------------------------

def _poison(monkeypatch, bad_calls):
    """Make the optimizer steps numbered in `bad_calls` (1-based) leave NaN in a trained weight, as a non-finite
    gradient would; returns the learning rate of every step call."""
    from budgetune.methods import base

    real = base.FirstOrderStepper.step
    lrs = []

    def step(self, micro, lr):
        lrs.append(lr)
        result = real(self, micro, lr)
        if len(lrs) in bad_calls:
            with torch.no_grad():
                next(p for p in self.model.parameters() if p.requires_grad).fill_(float("nan"))
        return result

    monkeypatch.setattr(base.FirstOrderStepper, "step", step)
    return lrs


def test_non_finite_step_rolls_back_and_retries_at_half_the_learning_rate(tmp_path, tiny_config_path, tokenizer,
                                                                          monkeypatch):
    lrs = _poison(monkeypatch, {3})
    cfg = tiny_run_config(tiny_config_path, tmp_path / "run", max_steps=4, checkpoint_every=2, eval_every=0)
    result = train(cfg, tokenizer=tokenizer, data=small_split(tokenizer, 24, 4), progress=False)
    assert len(lrs) == 5  # steps 1, 2, 3 (bad), 3 again, 4
    assert lrs[3] == lrs[2] / 2 and lrs[4] < lrs[3] * 1.01  # the retry and what follows run at half the rate
    run = result.run_dir
    train_steps = [r["step"] for r in strict_lines(run / "metrics.jsonl") if r["kind"] == "train"]
    assert train_steps == [1, 2, 3, 4]  # the bad step is not logged, nothing twice
    rollbacks = [d for d in strict_lines(run / "decisions.jsonl") if d["action"] == "rollback"]
    assert len(rollbacks) == 1 and rollbacks[0]["step"] == 2 and rollbacks[0]["bad_step"] == 3
    summary = json.loads((run / "summary.json").read_text())
    assert summary["rollbacks"] == 1 and result.ledger.steps == 5  # the discarded step's FLOPs stay charged
    weights = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    assert all(torch.isfinite(v).all() for v in weights.values())


def test_always_non_finite_stops_in_one_line_naming_the_step_and_the_setting(tmp_path, tiny_config_path, tokenizer,
                                                                             monkeypatch):
    _poison(monkeypatch, set(range(1, 100)))
    cfg = tiny_run_config(tiny_config_path, tmp_path / "run", max_steps=4, eval_every=0, nonfinite_retries=2)
    with pytest.raises(UserError) as e:
        train(cfg, tokenizer=tokenizer, data=small_split(tokenizer, 24, 4), progress=False)
    message = str(e.value)
    assert "step 1:" in message and "--lr" in message and "after 2 rollback(s)" in message and "\n" not in message
    run = tmp_path / "run"
    assert not (run / "adapter").exists() and not (run / "summary.json").exists()
    for ck in (run / "checkpoints").iterdir():  # what is on disk is the last good state
        assert all(torch.isfinite(v).all() for v in load_file(str(ck / "weights.safetensors")).values())
    strict_lines(run / "metrics.jsonl")
    strict_lines(run / "decisions.jsonl")


def test_divergence_is_named():
    from budgetune.train.guard import divergence

    assert divergence([{"step": 0, "eval_loss": 2.18}, {"step": 9, "eval_loss": 10.80}], 2.18)["factor"] == \
        pytest.approx(10.80 / 2.18)
    assert divergence([{"step": 0, "eval_loss": 2.18}, {"step": 9, "eval_loss": 2.0}], 2.18) is None
    assert divergence([{"step": 0, "eval_loss": 2.18}, {"step": 9, "eval_loss": 4.3}], 2.18) is None  # below 2x


# --- overwrite, raised limits, the generation-eval charge -----------------------------------------------------------

def test_overwrite_raise_a_limit_and_the_generation_charge(tmp_path, tiny_config_path, tokenizer):
    from budgetune.train.outside import charge_generation_eval, done_generation_eval

    data = small_split(tokenizer, 24, 4)
    cfg = tiny_run_config(tiny_config_path, tmp_path / "run", max_steps=2)
    first = train(cfg, tokenizer=tokenizer, data=data, progress=False)
    assert first.ledger.steps == 2
    # the generation evaluation's charge goes through charges.json: ledger.json and summary.json agree
    gen = {"flops": 1e9, "tokens": 100, "seconds": 2.0}
    charge_generation_eval(first, dict(gen), dict(gen))
    ledger = json.loads((tmp_path / "run" / "ledger.json").read_text())
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["ledger"] == ledger
    assert ledger["flops"]["eval"] == first.ledger.flops["eval"] and ledger["external"] == 1
    assert done_generation_eval(first) == (gen, gen)  # a resumed run reuses it
    # a raised limit trains on, and keeps the charge once
    more = tiny_run_config(tiny_config_path, tmp_path / "run", max_steps=3)
    more.resume = True
    resumed = train(more, tokenizer=tokenizer, data=data, progress=False)
    assert resumed.ledger.steps == 3 and resumed.ledger.flops["eval"] > ledger["flops"]["eval"]
    assert done_generation_eval(resumed) is None  # stale after more training: it is done again
    # a fresh run on it is refused; --overwrite replaces it
    with pytest.raises(UserError, match="holds an earlier run"):
        train(tiny_run_config(tiny_config_path, tmp_path / "run", max_steps=1), tokenizer=tokenizer, data=data,
              progress=False)
    again = tiny_run_config(tiny_config_path, tmp_path / "run", max_steps=1)
    again.overwrite = True
    replaced = train(again, tokenizer=tokenizer, data=data, progress=False)
    assert replaced.ledger.steps == 1 and not (tmp_path / "run" / "charges.json").exists()
    steps = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert steps == ["step-00000000", "step-00000001"]  # nothing of the old run's checkpoints survives
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


# --- killed at random points ---------------------------------------------------------------------------------------

class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so no handler in the code under test can swallow it."""


def _kill_points(n: int, seed: int = 16) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    # how many of each event a 5-step run has: steps, checkpoint writes (steps 0, 2, 4, 5), metrics lines,
    # evaluations (steps 0, 2, 4, 5), result writes
    most = {"step": 5, "checkpoint": 4, "append": 9, "eval": 4, "result": 1, "torn": 5}
    points = [(k, rng.randint(1, m)) for k, m in most.items()]
    while len(points) < n:
        kind = rng.choice(list(most))
        points.append((kind, rng.randint(1, most[kind])))
    return points[:n]


def _armed(monkeypatch, kind: str, nth: int):
    """Raise Killed at the nth event of `kind` (an optimizer step, a checkpoint weights write, a metrics append, an
    evaluation, the result write); 'torn' kills at a step and leaves half a metrics line behind."""
    from budgetune.train import checkpoint, loop

    count = {"n": 0}

    def hit():
        count["n"] += 1
        if count["n"] == nth:
            raise Killed()

    if kind == "checkpoint":
        real = checkpoint.save_file

        def save_file(tensors, path, *a, **k):
            real(tensors, path, *a, **k)  # the weights are written, the rest of the checkpoint is not
            hit()
        monkeypatch.setattr(checkpoint, "save_file", save_file)
    elif kind == "append":
        real_append = rundir.RunDir.append

        def append(self, file, record):
            hit()
            real_append(self, file, record)
        monkeypatch.setattr(rundir.RunDir, "append", append)
    elif kind == "eval":
        real_eval = loop.heldout_losses

        def heldout(*a, **k):
            hit()
            return real_eval(*a, **k)
        monkeypatch.setattr(loop, "heldout_losses", heldout)
    elif kind == "result":
        real_replace = atomic.replace_dir

        def replace(new, path):
            if Path(path).name in ("adapter", "model"):
                hit()
            real_replace(new, path)
        monkeypatch.setattr(atomic, "replace_dir", replace)
    return (lambda step, ledger: hit()) if kind in ("step", "torn") else None


def _comparable(run: Path) -> tuple:
    ledger = json.loads((run / "ledger.json").read_text())
    metrics = [{k: v for k, v in r.items() if k != "seconds"} for r in strict_lines(run / "metrics.jsonl")]
    weights = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    return ({k: ledger[k] for k in ("flops", "tokens", "steps", "total_flops")}, metrics, weights)


@pytest.mark.slow
def test_killed_at_ten_random_points_resumes_to_the_same_ledger_metrics_and_weights(tmp_path, tiny_config_path,
                                                                                    tokenizer, monkeypatch):
    data = small_split(tokenizer, 24, 4)

    def config(out):
        return tiny_run_config(tiny_config_path, out, max_steps=5, checkpoint_every=2, eval_every=2)

    straight = train(config(tmp_path / "straight"), tokenizer=tokenizer, data=data, progress=False)
    want = _comparable(straight.run_dir)
    points = _kill_points(10)
    assert len(points) == 10
    for i, (kind, nth) in enumerate(points):
        out = tmp_path / f"killed-{i}-{kind}-{nth}"
        with monkeypatch.context() as m:
            on_step = _armed(m, kind, nth)
            try:
                train(config(out), tokenizer=tokenizer, data=data, on_step=on_step, progress=False)
                killed = False
            except Killed:
                killed = True
        assert killed, (kind, nth)
        if kind == "torn":
            with open(out / "metrics.jsonl", "a") as f:
                f.write('{"kind": "train", "step": 9, "train_lo')
        resumed_cfg = config(out)
        resumed_cfg.resume = True
        train(resumed_cfg, tokenizer=tokenizer, data=data, progress=False)
        got = _comparable(out)
        assert got[0] == want[0], (kind, nth)
        assert got[1] == want[1], (kind, nth)
        assert got[2].keys() == want[2].keys()
        for key in want[2]:
            assert torch.equal(got[2][key], want[2][key]), (kind, nth, key)
        assert not [p for p in out.rglob("*.tmp")], (kind, nth)  # the kill's leftovers are gone
