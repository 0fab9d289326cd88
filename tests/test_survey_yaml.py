"""The survey's systems from a YAML config, as a user writes one: `selection: {scorer: staff}` or
`train: {method: colm}`. The default tests read the YAML into the run's config and build the plugin from it (a name
or option that is not registered fails here); the slow test trains from each YAML on the tiny model through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from budgetune.config import load_yaml
from budgetune.methods import registry as methods
from budgetune.selection import registry as scorers

# Cheap options for the tiny 2-layer model (as the contract tests use).
SCORERS = {
    "greats": {"group": 4, "batch_size": 4},
    "staff": {"proxy": "layers:1", "regions": 2, "verify": 2, "warmup_steps": 1, "batch_size": 4},
    "bids": {"k": 16, "batch_size": 4},
    "dart": {"proxy": "layers:1", "bins": 2, "batch_size": 4},
    "cads": {"rounds": 2, "inner_steps": 1, "k": 16, "batch_size": 4},
}
METHODS = {"colm": {"r": 4, "sketch": 8}, "subzero": {"rank": 4, "lazy": 2}, "peqa": {}, "dqt": {}}


def _data(directory: Path) -> tuple[str, str]:
    """A small pool and target (JSONL, prompt/response, two categories): scoring the whole embedded corpus on a
    loaded CPU outruns the test's time limit."""
    topics = {"ai": "Machines learn from data they are shown.", "food": "Bread is baked from flour and water."}
    rows = [{"prompt": f"Tell me fact {i} about {t}.", "response": f"{fact} Fact {i}.", "category": t}
            for i in range(12) for t, fact in topics.items()]
    pool, target = directory / "pool.jsonl", directory / "target.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows[:20]))
    target.write_text("".join(json.dumps(r) + "\n" for r in rows[20:]))
    return str(pool), str(target)


def _yaml(model: str, out: str, *, method: str = "lora", options: dict | None = None, scorer: str | None = None,
          scorer_options: dict | None = None, data: tuple[str, str] = ("chatterbot", "")) -> str:
    where = [f"  data: {data[0]}"] + ([f"  target: {data[1]}"] if data[1] else [])
    lines = ["model:", f"  model: {model}", "data:", *where, "  max_seq_len: 64", "train:",
             f"  method: {method}", f"  method_options: {json.dumps(options or {})}", "  micro_batch_size: 4",
             "  max_steps: 2", "  eval_points: 1", "  warmup_steps: 1", "budget:", "  max_flops: 1.0e12",
             "  max_seconds: 3000", f"out: {out}", "report_to: none"]
    if scorer:
        lines += ["selection:", f"  scorer: {scorer}", "  budget: 50%", f"  options: {json.dumps(scorer_options)}"]
    return "\n".join(lines) + "\n"


CASES = [("method", m, {"method": m, "options": o}) for m, o in METHODS.items()] + \
        [("scorer", s, {"scorer": s, "scorer_options": o}) for s, o in SCORERS.items()]


@pytest.mark.parametrize("kind,name,fields", CASES, ids=[c[1] for c in CASES])
def test_yaml_names_the_system(tmp_path, tiny_config_path, kind, name, fields):
    path = tmp_path / "c.yaml"
    path.write_text(_yaml(tiny_config_path, str(tmp_path / "run"), **fields))
    cfg = load_yaml(path)
    if kind == "method":
        assert cfg.train.method == name
        built = methods.make_config(name, cfg.train.method_options)
        assert type(built).__module__ == methods.get(name).__name__
    else:
        assert cfg.selection["scorer"] == name and cfg.selection["options"] == SCORERS[name]
        assert scorers.make(name, cfg.selection["options"]) is not None


@pytest.mark.slow
@pytest.mark.parametrize("kind,name,fields", CASES, ids=[c[1] for c in CASES])
def test_yaml_trains_the_system(tmp_path, tiny_config_path, kind, name, fields):
    path = tmp_path / "c.yaml"
    run = tmp_path / "run"
    path.write_text(_yaml(tiny_config_path, str(run), data=_data(tmp_path), **fields))
    proc = subprocess.run([sys.executable, "-m", "budgetune.cli", "train", str(path), "--generation-eval", "0"],
                          capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((Path(run) / "summary.json").read_text())
    if kind == "method":
        assert summary["method"] == name
    else:  # the scorer kept half of the 20-row pool and its FLOPs are on the ledger
        assert summary["pool_size"] == 10 and summary["ledger"]["flops"]["selection"] > 0, summary
    assert summary["steps"] == 2
