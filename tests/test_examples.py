"""Every example config loads, names files that exist, and (where no weights are needed) plans."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from budgetune.config import load_yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def test_the_common_jobs_are_there():
    assert {p.name for p in EXAMPLES} >= {"lora-smollm2.yaml", "qlora-llama3-8b-24gb.yaml", "full-governed.yaml",
                                          "selection-target.yaml", "joint-plan.yaml"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_loads_and_its_plugins_exist(path, monkeypatch):
    from budgetune import governor, trackers
    from budgetune.methods import registry as methods
    from budgetune.selection import parse
    from budgetune.selection import registry as scorers

    monkeypatch.chdir(ROOT)  # the examples' paths are relative to the repository root
    cfg = load_yaml(path)
    if cfg.train.method != "auto":
        methods.make_config(cfg.train.method, cfg.train.method_options)  # options valid for the method
    if cfg.selection:
        parse(cfg.selection)
        scorers.REGISTRY.config(cfg.selection["scorer"], cfg.selection.get("options"))
    if cfg.governor:
        governor.make(dict(cfg.governor).pop("name"), {k: v for k, v in cfg.governor.items() if k != "name"})
    assert cfg.report_to in trackers.NAMES
    for ref in (cfg.model.model, cfg.data.data, cfg.data.target):
        if ref and ("/" in ref or ref.endswith((".json", ".jsonl"))):
            assert Path(ref).exists(), f"{path.name} names {ref}, which is not in the repository"


def test_qlora_8b_plans_for_24gb_without_weights(monkeypatch):
    from budgetune.errors import Infeasible
    from budgetune.planner.plan import check_fits

    monkeypatch.chdir(ROOT)
    cfg = load_yaml(ROOT / "examples/qlora-llama3-8b-24gb.yaml")
    plan = check_fits(cfg)
    assert plan["fits"] and plan["bytes"]["total"] <= 24 * 2**30
    config = json.loads((ROOT / "examples/llama-3-8b/config.json").read_text())
    assert (config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]) == (4096, 32, 128256)
    # Hand arithmetic: the 32 layers' linears, 32·(2·4096² + 2·4096·1024 + 3·4096·14336) = 6.98e9 params at 4.5
    # bits (NF4 + scales) = 3.93e9 B; the two 128256×4096 embeddings (1.05e9 params) stay unquantised, at 2 to 4 B.
    linears = 32 * (2 * 4096**2 + 2 * 4096 * 1024 + 3 * 4096 * 14336)
    embeddings = 2 * 128256 * 4096
    assert linears * 4.5 / 8 + 2 * embeddings <= plan["bytes"]["weights"] <= linears * 4.5 / 8 + 4 * embeddings
    # The same job as full fine-tuning needs 16 B/param (≈ 120 GiB): refused, before any weight is loaded.
    cfg.train.method, cfg.train.method_options = "full", {}
    with pytest.raises(Infeasible):
        check_fits(cfg)


def test_joint_plan_picks_a_method_for_its_memory(monkeypatch):
    from budgetune.planner.plan import check_fits

    monkeypatch.chdir(ROOT)
    cfg = load_yaml(ROOT / "examples/joint-plan.yaml")
    plan = check_fits(cfg)
    assert plan["fits"] and plan["method"] in ("full", "adamw8bit", "galore", "lora")  # 135M fits 8 GiB fully
