"""The plan against the outcome: planned vs spent FLOPs per ledger phase, and planned vs measured peak memory.

Spent comes from the run's ledger.json; the generation evaluation `run` does after training (charges.json, charged
to eval) is outside the plan and shown on its own line. Measured memory is the accelerator's allocator peak on a
GPU (torch.cuda.max_memory_allocated); on CPU it is the process's peak resident set (getrusage), which also holds
the Python runtime, the libraries and the tokenizer, so it reads above the planner's tensor bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..budget import PHASES, read_charges
from .runner import PLAN_FILE

GENERATION = "run --generation-eval"


def measured_peak() -> tuple[int | None, str]:
    import torch

    if torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated()), "GPU allocator peak (torch.cuda.max_memory_allocated)"
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024, "process peak RSS (CPU: Python included)"


def compare(run_dir: Path, peak: tuple[int | None, str] | None = None) -> dict | None:
    """{"phases": {phase: {planned, spent}}, "outside": {...}, "memory": {...}}, or None without a plan."""
    run_dir = Path(run_dir)
    try:
        plan = json.loads((run_dir / PLAN_FILE).read_text(encoding="utf-8"))
        ledger = json.loads((run_dir / "ledger.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    outside = {p: 0.0 for p in PHASES}
    outside_seconds = 0.0
    for r in read_charges(run_dir):
        if r.get("command") == GENERATION:
            for p, v in r["flops"].items():
                outside[p] = outside.get(p, 0.0) + float(v)
            outside_seconds += float(r.get("seconds") or 0.0)
    planned = plan.get("planned_flops") or {}
    # The plan reserves the generation evaluation inside its evaluation share, so it is spent inside eval too;
    # "outside" says how much of a phase it was.
    phases = {p: {"planned": planned.get(p), "spent": float(ledger["flops"].get(p, 0.0))} for p in PHASES}
    mem = plan.get("planned_memory") or {}
    out = {"phases": phases, "outside": {p: v for p, v in outside.items() if v},
           "memory": {"planned": mem.get("planned_total"), "budget": mem.get("budget")}}
    if peak is not None:
        out["memory"].update(measured=peak[0], measured_what=peak[1])
    planned_s = plan.get("planned_seconds") or {}
    if planned_s:  # a time budget was planned: seconds by phase too (the plan's probe is phase "plan")
        spent_s = ledger.get("phase_seconds") or {}
        out["seconds"] = {p: {"planned": planned_s.get(p), "spent": float(spent_s.get(p, 0.0))}
                          for p in ("plan",) + PHASES}
        out["seconds_total"] = {"planned": float(sum(v for v in planned_s.values() if v)),
                                "spent": float(ledger.get("seconds", 0.0)),
                                "budget": (plan.get("numbers") or {}).get("max_seconds")}
        out["outside_seconds"] = outside_seconds
    return out


def record(run_dir: Path) -> dict | None:
    """Write the comparison into summary.json (key plan_vs_spent), where the report reads it."""
    from .. import atomic

    result = compare(run_dir, measured_peak())
    path = Path(run_dir) / "summary.json"
    if result is None or not path.exists():
        return result
    summary = json.loads(path.read_text(encoding="utf-8"))
    summary["plan_vs_spent"] = result
    atomic.write_json(path, summary)
    return result


def _g(v) -> str:
    return "-" if v is None else f"{v:.3g}"


def _s(v) -> str:
    return "-" if v is None else f"{v:.0f}" if v >= 10 else f"{v:.2g}"


def lines(result: dict | None) -> list[str]:
    if not result:
        return []
    parts = []
    for p, row in result["phases"].items():
        if row["planned"] is None and not row["spent"]:
            continue
        parts.append(f"{p} {_g(row['planned'])} / {_g(row['spent'])}")
    out = ["plan vs spent " + "   ".join(parts) + "   (FLOPs planned / spent)"]
    if result["outside"]:
        out.append("              of which the generation evaluation after training: "
                   + ", ".join(f"{p} {v:.3g}" for p, v in result["outside"].items()))
    if result.get("seconds"):
        parts = [f"{p} {_s(row['planned'])} / {_s(row['spent'])}" for p, row in result["seconds"].items()
                 if row["planned"] or row["spent"]]
        t = result["seconds_total"]
        out.append("              " + "   ".join(parts) + f"   all {_s(t['planned'])} / {_s(t['spent'])}"
                   + "   (seconds planned / spent)")
        if result.get("outside_seconds"):
            out.append(f"              of which the generation evaluation after training: "
                       f"{result['outside_seconds']:.0f} s")
    m = result["memory"]
    if m.get("planned"):
        measured = f"{m['measured'] / 2**30:.2f} GiB {m['measured_what']}" if m.get("measured") else "not measured"
        out.append(f"peak memory   planned {m['planned'] / 2**30:.2f} GiB, measured {measured}")
    return out
