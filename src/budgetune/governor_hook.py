"""Build the governor a run config names (the `governor:` section); the fixed budget when none is named."""

from __future__ import annotations

from .governor.protocol import FixedBudget


def governor_from_config(cfg, budget):
    spec = dict(cfg.governor or {})
    if not spec:
        return FixedBudget()
    name = spec.pop("name", "marginal")
    from . import governor

    return governor.make(name, spec, budget)
