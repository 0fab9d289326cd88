"""What the governor decided and what it saved, in the lines `budgetune run` prints after its summary."""

from __future__ import annotations

import json
from pathlib import Path


def _decisions(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "decisions.jsonl"
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def governor_lines(run_dir, ledger, max_flops: float | None, governor=None) -> list[str]:
    """'governor' and 'evaluation' lines: the plan, the decision that ended the run (or that none did) and the
    FLOPs it left unspent; evaluation's share of the FLOPs spent."""
    lines = []
    total = ledger.total_flops
    if total > 0:
        lines.append(f"evaluation   {ledger.flops.get('eval', 0.0):.3g} FLOPs, "
                     f"{ledger.flops.get('eval', 0.0) / total:.1%} of the FLOPs spent")
    note = getattr(governor, "note", None)
    ds = _decisions(run_dir)
    plan = next((d for d in ds if d.get("action") == "plan"), None)
    if plan is None:
        lines.append(f"governor     {note or 'none: fixed budget (--governor none)'}")
        return lines
    lines.append(f"governor     {plan['reason']}")
    acted = [d for d in ds if d.get("action") in ("stop", "refresh", "reallocate")]
    stop = next((d for d in acted if d["action"] == "stop"), None)
    refreshes = sum(1 for d in acted if d["action"] == "refresh")
    votes = [d for d in ds if d.get("action") in ("continue", "stop", "refresh")]
    if stop is not None:
        saved = f"; {max_flops - total:.3g} FLOPs ({(max_flops - total) / max_flops:.0%} of the budget) left " \
                f"unspent" if max_flops else ""
        lines.append(f"decided      stop at {stop['flops']:.3g} FLOPs after {len(votes)} decisions: {stop['reason']}"
                     f"{saved}")
    else:
        last = votes[-1]["reason"] if votes else "no evaluation was due"
        lines.append(f"decided      continue to the end of the budget ({len(votes)} decisions; last: {last})")
    if refreshes:
        lines.append(f"refreshed    {refreshes} time(s) (see decisions.jsonl)")
    return lines
