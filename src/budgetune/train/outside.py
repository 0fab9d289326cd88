"""The generation evaluation `budgetune run` does after training, charged like any work outside the loop: one
record in RUN_DIR/charges.json (with its scores), folded into ledger.json and summary.json. A run killed after the
charge and resumed finds the record and reuses it, so the work is neither redone nor counted twice."""

from __future__ import annotations

import json

from .. import atomic
from ..budget import Ledger, read_charges
from ..charges import charge_outside

COMMAND = "run --generation-eval"


def done_generation_eval(result) -> tuple[dict | None, dict | None] | None:
    """(before, after) recorded for this run at its current step count, or None when not done yet."""
    for r in reversed(read_charges(result.run_dir)):
        if r.get("command") == COMMAND and r.get("steps") == result.ledger.steps:
            before, after = r.get("result") or (None, None)
            return before, after
    return None


def charge_generation_eval(result, before: dict | None, after: dict | None) -> Ledger:
    spent = Ledger()
    for g in (before, after):
        if g:
            spent.charge("eval", g.get("flops", 0.0), g.get("tokens", 0))
            spent.seconds += float(g.get("seconds") or 0.0)
    ledger = charge_outside(result.run_dir / "ledger.json", spent, COMMAND,
                            {"steps": result.ledger.steps, "result": [before, after]})
    path = result.run_dir / "summary.json"
    if path.exists():  # the summary names the same totals as ledger.json
        summary = json.loads(path.read_text(encoding="utf-8"))
        summary["ledger"] = ledger.to_dict()
        atomic.write_json(path, summary)
    result.ledger = ledger
    return ledger
