"""Which sharding a run uses, what is refused and why, and check_fits planning the run's layout (one process)."""

from __future__ import annotations

import json

import pytest

from budgetune import dist, sharding
from budgetune.errors import UserError
from budgetune.methods import registry


@pytest.fixture
def launched(monkeypatch):
    for name in ("ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED", "FSDP_RESHARD_AFTER_FORWARD",
                 "FSDP_SHARDING_STRATEGY", "ACCELERATE_DEEPSPEED_ZERO_STAGE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LOCAL_RANK", "0")
    return monkeypatch


@pytest.mark.parametrize("env, expected", [
    ({}, "none"),
    ({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2", "FSDP_RESHARD_AFTER_FORWARD": "true"}, "fsdp"),
    ({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2", "FSDP_RESHARD_AFTER_FORWARD": "false"}, "zero2"),
    ({"ACCELERATE_USE_FSDP": "true", "FSDP_SHARDING_STRATEGY": "SHARD_GRAD_OP"}, "zero2"),
    ({"ACCELERATE_USE_FSDP": "true", "FSDP_SHARDING_STRATEGY": "NO_SHARD"}, "none"),
    ({"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"}, "zero3"),
    ({"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "2"}, "zero2"),
])
def test_auto_follows_the_accelerate_config(launched, env, expected):
    for k, v in env.items():
        launched.setenv(k, v)
    assert sharding.resolve("auto") == expected
    assert sharding.resolve("none") == "none"  # --sharding wins over the config


def test_zero_stage_one_is_refused(launched):
    launched.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    launched.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "1")
    with pytest.raises(UserError, match="stage 1"):
        sharding.resolve("auto")


def test_sharding_without_a_launcher_is_refused(monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    with pytest.raises(UserError, match="accelerate launch"):
        sharding.resolve("fsdp")


@pytest.mark.parametrize("method, why", [("qlora", "4-bit"), ("galore", "whole weight matrix"),
                                         ("badam", "switches"), ("mezo", "in place")])
def test_methods_that_cannot_shard_are_refused_by_name(method, why):
    with pytest.raises(UserError, match=f"method '{method}' cannot run with sharding fsdp: .*{why}"):
        sharding.check(registry.get(method), "fsdp")
    sharding.check(registry.get(method), "none")  # unsharded data parallelism takes every method


def test_deepspeed_refused_with_the_reason():
    import importlib.util

    if importlib.util.find_spec("deepspeed") is not None:
        pytest.skip("deepspeed is installed here")
    with pytest.raises(UserError, match="DeepSpeed, which is not installed"):
        sharding.check(registry.get("lora"), "zero3")
    sharding.check(registry.get("lora"), "fsdp")
    sharding.check(registry.get("full"), "fsdp")


def test_cli_refuses_sharding_without_a_launcher(tmp_path, tiny_config_path, monkeypatch, capsys):
    from budgetune.cli import main

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    code = main(["run", "--model", tiny_config_path, "--sharding", "fsdp", "--out", str(tmp_path / "r"),
                 "--max-steps", "1"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "not started by a launcher" in err
    assert not (tmp_path / "r").exists()  # refused before anything was written


def test_reduce_or_raise_alone():
    assert dist.reduce_or_raise([1.0, 2.0], None, "x") == [1.0, 2.0]
    with pytest.raises(KeyError):
        dist.reduce_or_raise([1.0], KeyError("boom"), "x")


@pytest.mark.parametrize("gpus, kind", [(1, "none"), (4, "zero2"), (4, "zero3"), (8, "fsdp")])
def test_check_fits_plans_the_layout_plan_reports(tiny_config_path, capsys, gpus, kind):
    """check_fits with the run's world size and sharding gives the per-rank bytes `budgetune plan --gpus N
    --sharding S` prints for the same method and shape."""
    from budgetune.cli import main
    from budgetune.config import RunConfig
    from budgetune.planner.plan import check_fits

    cfg = RunConfig()
    cfg.model.model = tiny_config_path
    cfg.train.method = "full"
    cfg.budget.max_memory = "80GiB"
    got = check_fits(cfg, world=gpus, sharding=kind)
    s = got["shape"]
    assert (s["ranks"], s["sharding"]) == (gpus, kind)
    assert main(["plan", "--json", "--model", tiny_config_path, "--gpu-memory", "80GiB", "--method", "full",
                 "--gpus", str(gpus), "--sharding", kind, "--seq-len", str(s["seq_len"]),
                 "--batch-size", str(s["micro_batch"]), "--precision", s["precision"], "--attention", s["attention"],
                 "--overhead", f"{s['overhead_bytes']}B", "--fragmentation", str(s["fragmentation"])]) == 0
    plans = json.loads(capsys.readouterr().out)["plans"]
    row = [p for p in plans if p["gradient_checkpointing"] == got["gradient_checkpointing"]]
    assert row[0]["bytes"] == got["bytes"]
    one = check_fits(cfg)
    if kind != "none":  # model states really divided (AdamW states: 8 B per parameter over the ranks)
        assert got["bytes"]["optimizer"] * gpus == pytest.approx(one["bytes"]["optimizer"], abs=gpus)
