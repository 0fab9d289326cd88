"""The plan as the user reads it: one row per choice (value, given or chosen, reason), before any work."""

from __future__ import annotations

from .choices import JointPlan


def table(plan: JointPlan, width: int = 0) -> str:
    """Rows of `choice  value  source  reason`; the value column as wide as its longest entry."""
    names = max(len(c.name) for c in plan.choices)
    values = max(len(c.value) for c in plan.choices)
    sources = max(len(c.source) for c in plan.choices)
    head = f"plan{'':{names - 2}}{'value':{values + 2}}{'by':{sources + 2}}why"
    rows = [head] + [f"  {c.name:{names}}  {c.value:{values}}  {c.source:{sources}}  {c.reason}" for c in plan.choices]
    foot = ("(given: a flag or the config; chosen: by the plan, override with the flag named in plan.json; "
            "detected: read off this machine)")
    return "\n".join(rows + [foot])
