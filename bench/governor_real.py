"""Real governed runs for bench/governor.py: a recorded suite setting trained again with the default governor in the
loop (its evaluation plan, decay on stop), on the budget the fixed run of the replay is charged (its training FLOPs
plus the whole held-out set evaluated before and after). Cached per run under bench/out/<directory>/ (default
governor_governed_v3: runs with today's defaults; governor_governed holds runs with the defaults of an earlier day).
A run's checkpoints are deleted once its summary is written (the numbers are in summary.json and the logs)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import shutil

import governor_suite as suite

GOVERNED = suite.OUT / f"governor_governed_v3{suite.TAG}"
CAPPED = suite.OUT / f"governor_governed_capped{suite.TAG}"  # bench/governor_policies.py's CAPPED: not the default
GATED = suite.OUT / f"governor_governed_gated{suite.TAG}"  # bench/governor_policies.py's GATED: not the default
HALF = suite.OUT / f"governor_governed_half{suite.TAG}"  # bench/governor_policies.py's HALF: not the default
BUMPED = suite.OUT / f"governor_governed_bump{suite.TAG}"  # the same runs with bench/governor.py's BUMP options
# the default governor with train.restore_best (train/best.py)
RESTORED = suite.OUT / f"governor_governed_restore{suite.TAG}"


# bench/governor.py's first CANDIDATES option set (t=0.02 with a bump wait), trained for real: not the default
CANDIDATE = suite.OUT / f"governor_governed_t02bump{suite.TAG}"
OLD = suite.OUT / f"governor_governed{suite.TAG}"  # runs trained with an earlier day's defaults: read, never written
# Each finished run's row, committed (bench/out is not kept between machines): bench/records/<directory>.json.
RECORDS = suite.ROOT / "bench" / "records"


def _records(directory: Path) -> tuple[Path, dict]:
    path = RECORDS / f"{directory.name}.json"
    return path, (json.loads(path.read_text()) if path.exists() else {})


def _keep(directory: Path, name: str, row: dict) -> None:
    path, rows = _records(directory)
    rows[name] = row
    RECORDS.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows, indent=1) + "\n")
    tmp.replace(path)


def run(curves: dict, n: int, directory: Path | None = None, train_missing: bool = True,
        options: dict | None = None, train_options: dict | None = None) -> list[dict]:
    """The first n of `curves` governed for real (the governor's defaults, or `options`; `train_options` set fields
    of the run's train config); those not trained and not kept are left out unless train_missing."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from governor import costs

    from budgetune.governor import make
    from budgetune.models import load_model, load_tokenizer
    from budgetune.train.loop import train

    tokenizer = load_tokenizer("smollm2-135m")
    rows = []
    directory = directory or GOVERNED
    kept = _records(directory)[1]
    for name, curve in list(curves.items())[:n]:
        out = directory / name
        if name in kept and not (out / "summary.json").exists():
            rows.append(kept[name])
            continue
        if not (out / "summary.json").exists():
            if not train_missing:
                continue
            setting = next(s for s in suite.SETTINGS if s[0] == curve["setting"])
            split, dc = suite.load_split(setting[1], tokenizer, setting[2])
            model = load_model("smollm2-135m", seed=curve["seed"])
            cfg = suite.setting_config(name, setting, curve["budget_key"], curve["seed"], out, 0.0)
            cfg.data = dc
            cfg.budget.max_flops = costs(curve)["budget"]
            for field, value in (train_options or {}).items():
                setattr(cfg.train, field, value)
            train(cfg, model=model, tokenizer=tokenizer, data=split, governor=make("marginal", dict(options or {})),
                  progress=False)
            shutil.rmtree(out / "checkpoints", ignore_errors=True)
        summary = json.loads((out / "summary.json").read_text())
        ledger = summary["ledger"]
        fixed = curve["evals"][-1]
        fixed_flops = fixed["train_flops"] + 2 * costs(curve)["whole"]
        rows.append({"run": name, "fixed_loss": fixed["eval_loss"], "loss": summary["after_loss"],
                     "flops_vs_fixed": ledger["total_flops"] / fixed_flops,
                     "eval_share": ledger["flops"]["eval"] / ledger["total_flops"],
                     "stop_reason": summary["stop_reason"], "steps": summary.get("steps"),
                     "cooldown": bool(summary.get("cooldown"))})
        _keep(directory, name, rows[-1])
    return rows


def main() -> int:
    """Train the named recorded runs, in the order named: with the default governor and train.restore_best (rows in
    bench/records/governor_governed_restore.json), or with --policy gated / half, bench/governor_policies.py's GATED /
    HALF (rows in bench/records/governor_governed_gated_big.json / governor_governed_half_big.json)."""
    import argparse

    from governor_policies import GATED as GATED_OPTIONS
    from governor_policies import HALF as HALF_OPTIONS

    policies = {"restore": (RESTORED, {}, {"restore_best": True}), "gated": (GATED, GATED_OPTIONS, None),
                "half": (HALF, HALF_OPTIONS, None)}  # directory, governor options, train options
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--runs", required=True, help="comma-separated recorded runs (bench/records/governor_curves)")
    ap.add_argument("--policy", choices=tuple(policies), default="restore")
    args = ap.parse_args()
    curves = suite.load_curves()
    chosen = {r: curves[r] for r in args.runs.split(",") if r}
    directory, options, train_options = policies[args.policy]
    rows = run(chosen, len(chosen), directory, options=options, train_options=train_options)
    for row in rows:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
