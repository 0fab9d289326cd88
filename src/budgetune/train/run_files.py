"""What a run leaves beside its metrics for the report to be rebuilt from: the generation evaluation
(generation_eval.json) and the planned (and, on a GPU, measured) memory by term (memory.json). The report reads
these files only; it never recomputes them."""

from __future__ import annotations

import json
from pathlib import Path


def save_generation_eval(result, before: dict | None, after: dict | None) -> Path | None:
    """The run's generation evaluation as RUN_DIR/generation_eval.json (what the report is rebuilt from), and its
    scores on the run's tracker."""
    if not after or not _main_process():
        return None
    from .. import atomic, trackers
    from ..report.summary import GENERATION_FILE

    path = Path(result.run_dir) / GENERATION_FILE
    model = json.loads((Path(result.run_dir) / "summary.json").read_text(encoding="utf-8")).get("model")
    atomic.write_json(path, {"run_dir": str(result.run_dir), "model": model,
                             "before": before, "after": after})
    tracker = trackers.live(result.run_dir)
    for label, g in (("before", before), ("after", after)):
        if g:
            tracker.log({f"generation/{label}/{k}": g.get(k) for k in ("f1", "rougeL", "token_accuracy", "n")},
                        result.ledger.steps)
    return path


def _main_process() -> bool:
    """Only the main process writes to the run directory (one writer)."""
    from accelerate import PartialState

    return PartialState().is_main_process


def save_memory(result, cfg) -> Path | None:
    """RUN_DIR/memory.json for a run with a memory budget: the planner's bytes by term for the method that ran,
    and on a GPU the measured peak (torch.cuda.max_memory_allocated) beside it."""
    if not cfg.budget.max_memory or not _main_process():
        return None
    from .. import atomic
    from ..planner.plan import check_fits
    from ..report.html import MEMORY_FILE

    # The plan the run checked, for its world size and sharding (train/ranks.py records it in summary.json).
    summary = Path(result.run_dir) / "summary.json"
    recorded = json.loads(summary.read_text(encoding="utf-8")).get("plan") if summary.exists() else None
    plan = recorded or check_fits(cfg)
    out = {"method": plan.get("method"), "planned": plan.get("bytes") or {}, "budget": plan.get("budget")}
    import torch

    if torch.cuda.is_available():
        out["measured_peak"] = int(torch.cuda.max_memory_allocated())
    path = Path(result.run_dir) / MEMORY_FILE
    atomic.write_json(path, out)
    return path
