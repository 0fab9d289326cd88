"""Build the governor a run config names (the `governor:` section).

An empty section means the default governor (marginal gain, with decay on stop); `{name: none}` or `{name: fixed}`
(`--governor none`) is the fixed budget. The default steps aside, with a note, where it cannot work: a run with no
FLOP, token or time budget to price FLOPs against (only --max-steps). What a governor needs from the run (its
evaluation points and sample) is declared in its Config and planned by train/evalplan.py, never set here.
"""

from __future__ import annotations

import dataclasses

from .governor.protocol import FixedBudget

FIXED_NAMES = ("none", FixedBudget.name)  # `--governor none` is the fixed budget too


def governor_from_config(cfg, budget):
    from . import governor

    spec = dict(cfg.governor or {})
    asked = bool(spec)
    name = spec.pop("name", governor.DEFAULT)
    if name in FIXED_NAMES:
        if spec:
            from .errors import UserError

            raise UserError(f"governor '{name}' takes no options; remove {', '.join(sorted(spec))}")
        return FixedBudget()
    if not asked and budget.max_flops is None and budget.max_tokens is None and budget.max_seconds is None:
        gov = FixedBudget()
        gov.note = "fixed budget: the default governor needs a FLOP, token or time budget to price FLOPs against"
        return gov
    config = getattr(governor.get(name), "Config", None)
    if cfg.selection and config is not None and "refresh_probe" in {f.name for f in dataclasses.fields(config)}:
        spec.setdefault("refresh_probe", True)  # a governor that can probe the refresher asks it (its Config says)
    return governor.make(name, spec, budget)
