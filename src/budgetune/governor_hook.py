"""Build the governor a run config names (the `governor:` section); the fixed budget when none is named."""

from __future__ import annotations

from .governor.protocol import FixedBudget


def governor_from_config(cfg, budget):
    spec = dict(cfg.governor or {})
    if not spec:
        return FixedBudget()
    name = spec.pop("name", "marginal")
    if cfg.train.eval_every == 0 and cfg.train.eval_points < 12:
        cfg.train.eval_points = 12  # a learning-curve fit needs points: the governor cannot act on four
    if cfg.selection and name == "marginal":
        spec.setdefault("refresh_probe", True)  # ask the refresher whether fresh scores would buy more
    from . import governor

    return governor.make(name, spec, budget)
