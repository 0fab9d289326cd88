"""`budgetune plan` and the training loop's memory check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from budgetune.cli import main
from budgetune.errors import Infeasible

FIXTURES = Path(__file__).parent / "fixtures" / "memory"
LLAMA8B = str(FIXTURES / "llama3_8b.json")
PLAN_KEYS = {"method", "options", "gradient_checkpointing", "bytes", "traced_total", "fits", "binding_term",
             "flops_per_token"}


def plan_json(capsys, *argv):
    code = main(["plan", "--json", *argv])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if out.out.strip() else None), out.err


def test_json_schema_and_recommendation(capsys):
    from budgetune.methods import registry

    code, out, _ = plan_json(capsys, "--model", LLAMA8B, "--gpu-memory", "24GiB")
    assert code == 0
    assert set(out) == {"model", "plans", "recommended"}
    assert out["model"] == {"name": LLAMA8B, "params": 8_030_261_248}
    for plan in out["plans"]:
        assert set(plan) == PLAN_KEYS
        assert set(plan["bytes"]) == {"weights", "gradients", "optimizer", "activations", "other", "total"}
        assert plan["traced_total"] is None
        assert plan["flops_per_token"] > 0
    # Known by construction for 8.03e9 parameters in fp32: full fine-tuning holds 4 B of weights, 4 B of gradients
    # and 8 B of Adam moments per parameter (128 GB: it cannot fit 24 GiB); QLoRA's 4-bit base (~4.1 GB) can.
    n = 8_030_261_248
    for plan in (p for p in out["plans"] if p["method"] == "full"):
        assert plan["bytes"]["weights"] == pytest.approx(4 * n, rel=1e-6)
        assert plan["bytes"]["gradients"] == pytest.approx(4 * n, rel=1e-6)
        assert plan["bytes"]["optimizer"] == pytest.approx(8 * n, rel=1e-6)
        assert not plan["fits"]
    assert any(p["fits"] for p in out["plans"] if p["method"] == "qlora")
    assert {p["method"] for p in out["plans"]} == set(registry.names())
    best = out["plans"][out["recommended"]]
    assert best["fits"]
    full = [p for p in out["plans"] if p["method"] == "full"]
    assert not any(p["fits"] for p in full)  # 8B full fine-tuning needs > 100 GiB
    assert all(p["binding_term"] == "optimizer" for p in full)


def test_more_gpus_shard_model_states(capsys):
    _, one, _ = plan_json(capsys, "--model", LLAMA8B, "--gpu-memory", "80GiB", "--method", "full")
    _, eight, _ = plan_json(capsys, "--model", LLAMA8B, "--gpu-memory", "80GiB", "--method", "full", "--gpus", "8")
    assert eight["plans"][0]["bytes"]["optimizer"] * 8 == pytest.approx(one["plans"][0]["bytes"]["optimizer"], 1e-6)
    assert eight["plans"][0]["fits"] and not one["plans"][0]["fits"]


def test_longer_sequences_need_more_memory(capsys):
    _, short, _ = plan_json(capsys, "--model", LLAMA8B, "--gpu-memory", "24GiB", "--method", "lora")
    _, long, _ = plan_json(capsys, "--model", LLAMA8B, "--gpu-memory", "24GiB", "--method", "lora",
                           "--seq-len", "8192")
    assert long["plans"][0]["bytes"]["activations"] > 8 * short["plans"][0]["bytes"]["activations"]


def test_table_output(capsys):
    assert main(["plan", "--model", LLAMA8B, "--gpu-memory", "24GiB"]) == 0
    out = capsys.readouterr().out
    assert "recommended:" in out and "binding" in out and "qlora" in out


def test_impossible_budget_exits_1_with_advice(capsys):
    code, out, err = plan_json(capsys, "--model", LLAMA8B, "--gpu-memory", "2GiB")
    assert code == 1
    assert out["recommended"] is None and not any(p["fits"] for p in out["plans"])
    assert "smallest footprint" in err and "binding term" in err


@pytest.mark.parametrize("argv, message", [
    (["--gpu-memory", "lots"], "is not a size"),
    (["--gpu-memory", "24GiB", "--seq-len", "0"], "seq-len"),
    (["--gpu-memory", "24GiB", "--device", "abacus"], "--tflops"),
])
def test_bad_flags_exit_2(capsys, argv, message):
    assert main(["plan", "--model", LLAMA8B, *argv]) == 2
    assert message in capsys.readouterr().err


def test_malformed_config_exits_2(tmp_path, capsys):
    bad = tmp_path / "config.json"
    bad.write_text('{"model_type": "llama", "hidden_size": ')
    assert main(["plan", "--model", str(bad), "--gpu-memory", "24GiB"]) == 2
    err = capsys.readouterr().err
    assert "not a valid JSON" in err and len(err.strip().splitlines()) == 1


def test_unknown_architecture_falls_back_to_the_tracer(tmp_path, capsys):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "olmo2", "hidden_size": 64, "intermediate_size": 128,
                                "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 1000}))
    code, out, err = plan_json(capsys, "--model", str(path), "--gpu-memory", "1GiB", "--overhead", "0")
    assert "no analytic memory model" in err and "tracer" in err
    assert code == 0
    assert all(p["traced_total"] and p["traced_total"] > 0 for p in out["plans"])


def test_exact_traces_the_recommended_plan(capsys):
    code, out, _ = plan_json(capsys, "--model", str(FIXTURES / "llama.json"), "--gpu-memory", "1GiB",
                             "--method", "lora", "--overhead", "0", "--fragmentation", "0")
    assert code == 0 and all(p["traced_total"] is None for p in out["plans"])
    code, out, _ = plan_json(capsys, "--model", str(FIXTURES / "llama.json"), "--gpu-memory", "1GiB",
                             "--method", "lora", "--overhead", "0", "--fragmentation", "0", "--exact")
    best = out["plans"][out["recommended"]]
    assert best["traced_total"] == pytest.approx(best["bytes"]["total"], rel=0.05)


def run_config(method: str, memory: str):
    from budgetune.config import RunConfig

    cfg = RunConfig()
    cfg.model.model = LLAMA8B
    cfg.train.method = method
    cfg.train.micro_batch_size = 1
    cfg.budget.max_memory = memory
    return cfg


def test_check_fits_refuses_with_the_binding_term():
    from budgetune.planner.plan import check_fits

    with pytest.raises(Infeasible, match="binding term: optimizer") as info:
        check_fits(run_config("full", "24GiB"))
    assert "budgetune plan" in str(info.value)
    ok = check_fits(run_config("lora", "200GiB"))
    assert ok["fits"] and ok["method"] == "lora"


def test_check_fits_auto_picks_the_recommended_method():
    from budgetune.planner.plan import check_fits

    chosen = check_fits(run_config("auto", "24GiB"))
    assert chosen["fits"] and chosen["method"] in ("lora", "qlora", "badam", "hift", "galore", "adamw8bit")
    assert check_fits(run_config("auto", "2000GiB"))["method"] == "full"
    with pytest.raises(Infeasible, match="smallest footprint"):
        check_fits(run_config("auto", "1GiB"))


def test_analytic_plan_never_imports_torch():
    """The analytic planner must answer before torch is imported (importing it costs seconds): every method module
    binds torch lazily, and the plan verb imports nothing heavy."""
    import subprocess
    import sys

    code = ("import sys, json; from budgetune.cli import main; rc = main(['plan', '--json', '--model', %r, "
            "'--gpu-memory', '24GiB']); heavy = [m for m in ('torch', 'transformers', 'peft', 'numpy') "
            "if m in sys.modules]; print('HEAVY', heavy, rc, file=sys.stderr)") % LLAMA8B
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "HEAVY [] 0" in proc.stderr, proc.stderr[-2000:]
    assert len(json.loads(proc.stdout)["plans"]) > 10
