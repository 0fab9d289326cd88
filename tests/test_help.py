"""Help that tells the truth: real defaults per verb, choices from the registries, KEY=VALUE sections, inference
options reachable, and no error message or doc naming a flag the parser does not have."""

from __future__ import annotations

import argparse
import ast
import json
import re
from pathlib import Path

import pytest

from budgetune import cli
from budgetune.commands.options import (
    add_config_flags,
    apply_flags,
    parse_pairs,
)
from budgetune.config import RunConfig, default_run_config
from budgetune.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "budgetune"


def _help(*verb) -> str:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    p = sub.choices[verb[0]]
    for v in verb[1:]:
        p = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction)).choices[v]
    return " ".join(p.format_help().split())  # argparse wraps lines; compare on single spaces


def test_run_help_shows_the_budget_run_really_uses():
    text = _help("run")
    cfg = default_run_config()  # what `budgetune run` starts from
    assert f"(default: {cfg.budget.max_flops:g})" in text and "(default: 4e+13)" in text
    assert f"(default: {cfg.budget.max_seconds})" in text and "(default: 600.0)" in text
    assert "(default: None)" not in text
    # `train` starts from the YAML, over the dataclass defaults: no budget unless the YAML gives one.
    assert "stop when this many FLOPs (all phases) are spent (default: unset unless the YAML sets it)" in _help("train")


def test_choices_come_from_the_registries_one_line_each():
    from budgetune.governor import GOVERNORS
    from budgetune.methods.registry import METHODS
    from budgetune.selection.registry import SCORERS
    from budgetune.selection.strategies import STRATEGIES

    raw = cli.build_parser()._subparsers._group_actions[0].choices["run"].format_help()
    for names in (METHODS, SCORERS, GOVERNORS, STRATEGIES):
        for name in names:
            line = next((ln for ln in raw.splitlines() if re.match(rf"\s+{name}\s{{2,}}\S", ln)), None)
            assert line is not None, f"{name} not listed with a description"
            assert len(line) <= 120
    assert '"scorer": "ifd"' not in _help("run").split("--governor")[1]  # the governor's example is a governor's
    select = cli.build_parser()._subparsers._group_actions[0].choices["select"].format_help()
    assert all(re.search(rf"^\s+{n}\s{{2,}}\S", select, re.MULTILINE) for n in SCORERS)


def test_selection_and_governor_take_key_value_or_json():
    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    kv = apply_flags(RunConfig(), parser.parse_args(
        ["--selection", "scorer=ifd", "budget=10%", "options.batch_size=8", "dedup=0.8",
         "--governor", "name=patience", "patience=2"]))
    js = apply_flags(RunConfig(), parser.parse_args(
        ["--selection", '{"scorer": "ifd", "budget": "10%", "options": {"batch_size": 8}, "dedup": 0.8}',
         "--governor", '{"name": "patience", "patience": 2}']))
    assert kv.selection == js.selection == {"scorer": "ifd", "budget": "10%", "options": {"batch_size": 8},
                                            "dedup": 0.8}
    assert kv.governor == js.governor == {"name": "patience", "patience": 2}
    with pytest.raises(UserError, match="--selection 'scorer' is not KEY=VALUE"):
        apply_flags(RunConfig(), parser.parse_args(["--selection", "scorer"]))


def test_one_key_value_parser():
    assert parse_pairs(["r=8", "target_modules=q_proj,v_proj"], "-o", "r=8") == \
        {"r": "8", "target_modules": "q_proj,v_proj"}
    hits = [p for p in SRC.rglob("*.py") if 'partition("=")' in p.read_text() or 'split("=", 1)' in p.read_text()]
    assert [p.name for p in hits] == ["options.py"]


def test_governor_note_matches_what_the_hook_does():
    from budgetune.governor_hook import governor_from_config
    from budgetune.train.loop import make_budget

    cfg = default_run_config()
    cfg.governor = {"name": "marginal"}
    before = cfg.train.eval_points
    governor = governor_from_config(cfg, make_budget(cfg))
    assert cfg.train.eval_points == before  # the governor's needs are its own options, never set on the run
    assert governor.config.eval_points >= 6
    assert "prints the plan before training" in _help("run") and "--governor none" in _help("run")


def test_plan_inference_options_reach_the_planner(capsys):
    assert cli.main(["plan", "--model", str(ROOT / "examples/llama-3-8b/config.json"), "--gpu-memory", "24GiB",
                     "--method", "lora", "--inference", "--dtype", "nf4", "--contexts", "1024,4096",
                     "--draft-layers", "2", "--json"]) in (0, 1)
    inf = json.loads(capsys.readouterr().out)["inference"]
    assert inf["dtype"] == "nf4" and [r["context"] for r in inf["rows"]] == [512, 1024, 4096]
    assert "first 2 layers" in inf["draft"]
    # 8B at 4 bits: about 0.5 B per parameter (hand arithmetic: 8.03e9 × 0.5 B ≈ 3.7 GiB, plus scales)
    assert 3.5 * 2**30 < inf["weights_bytes"] < 6 * 2**30


def _all_flags() -> set[str]:
    flags = set()

    def walk(p):
        for a in p._actions:
            flags.update(o for o in a.option_strings if o.startswith("--"))
            if isinstance(a, argparse._SubParsersAction):
                for sp in a.choices.values():
                    walk(sp)
    walk(cli.build_parser())
    return flags


FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def _error_strings():
    """(file, line, text) of every string inside a raise, a UserError/Infeasible call or a print to stderr."""
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            target = None
            if isinstance(node, ast.Raise) and node.exc is not None:
                target = node.exc
            elif isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("UserError", "Infeasible") or isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print" and any(
                    k.arg == "file" for k in node.keywords):
                target = node
            if target is None:
                continue
            for sub in ast.walk(target):
                if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                    yield path.relative_to(SRC), sub.lineno, sub.value


def test_every_flag_an_error_names_exists():
    flags = _all_flags()
    missing = []
    for path, line, text in _error_strings():
        text = re.sub(r"pip install[^`'\"]*", "", text)  # pip's own flags
        text = re.sub(r"--nproc_per_node|--num_processes|--num_machines", "", text)  # launchers' flags
        missing += [f"{path}:{line} {f}" for f in FLAG.findall(text) if f not in flags]
    assert not missing, missing


def test_docs_name_only_flags_that_exist():
    flags = _all_flags()
    missing = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for line in doc.read_text(encoding="utf-8").splitlines():
            if "budgetune " not in line:
                continue  # flags of pip, accelerate or the benchmark scripts
            line = re.sub(r"pip install[^&`]*", "", line.split("budgetune ", 1)[1])
            missing += [f"{doc.name}: {f}" for f in FLAG.findall(line) if f not in flags]
    assert not missing, missing
