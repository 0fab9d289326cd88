"""Governors decide, at each evaluation, whether the next FLOPs go to this run, elsewhere, or nowhere.

The one registry of governors is GOVERNORS below: adding one is a file plus a line here. `make(name, options,
budget)` builds one from a config section (`governor: {name: marginal, threshold: 0.01}`).
"""

from __future__ import annotations

import dataclasses
import importlib
import typing

from ..errors import UserError
from .protocol import ACTIONS, ArmPolicy, ArmView, Decision, FixedBudget, Governor

DEFAULT = "marginal"

GOVERNORS: dict[str, str] = {}
for _name, _target in (
    ("fixed", "budgetune.governor.protocol:FixedBudget"),
    ("marginal", "budgetune.governor.marginal:MarginalGain"),
    ("patience", "budgetune.governor.baselines:Patience"),
    ("halving", "budgetune.governor.baselines:SuccessiveHalving"),
):
    if _name in GOVERNORS:
        raise RuntimeError(f"governor {_name!r} registered twice")
    GOVERNORS[_name] = _target

__all__ = [
    "ACTIONS",
    "DEFAULT",
    "GOVERNORS",
    "ArmPolicy",
    "ArmView",
    "Decision",
    "FixedBudget",
    "Governor",
    "check_inputs",
    "get",
    "make",
    "names",
]


def names() -> list[str]:
    return list(GOVERNORS)


def get(name: str) -> type:
    if name not in GOVERNORS:
        raise UserError(f"unknown governor '{name}'; choose one of: {', '.join(GOVERNORS)}")
    module, cls = GOVERNORS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def make(name: str | None = None, options: dict | None = None, budget=None):
    """A governor from its name and options (strings from the CLI or typed values from YAML)."""
    from ..config import coerce

    options = dict(options or {})
    name = options.pop("name", None) if name is None else name
    cls = get(name or DEFAULT)
    config_cls = getattr(cls, "Config", None)
    if config_cls is None:
        if options:
            raise UserError(f"governor '{name}' takes no options; remove {', '.join(sorted(options))}")
        governor = cls()
    else:
        hints = typing.get_type_hints(config_cls)
        known = {f.name for f in dataclasses.fields(config_cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise UserError(f"governor '{name}' has no option {', '.join(unknown)}; "
                            f"its options are: {', '.join(sorted(known))}")
        kwargs = {k: coerce(v, hints[k], f"governor '{name}' option '{k}'") for k, v in options.items()}
        governor = cls(config_cls(**kwargs))
    if budget is not None and getattr(governor, "name", "") in ("marginal",) and budget.max_flops is None \
            and budget.max_tokens is None and budget.max_seconds is None:
        raise UserError(f"governor '{name}' prices FLOPs against the budget; set --max-flops (or --max-tokens / "
                        f"--max-seconds)")
    return governor


def check_inputs(budget, *, eval_flops: float, heldout_examples: int, train_step_flops: float = 0.0) -> None:
    """One clear line for inputs no governor can work with; the loop calls it once it knows the eval cost."""
    if heldout_examples <= 0:
        raise UserError("the governor needs a held-out target set to measure the gain of FLOPs; give --target or "
                        "a positive --heldout-fraction")
    if budget.max_flops is not None and budget.max_flops < eval_flops + train_step_flops:
        raise UserError(f"budget max_flops={budget.max_flops:.3g} is smaller than one evaluation and one step "
                        f"({eval_flops:.3g} + {train_step_flops:.3g} FLOPs on {heldout_examples} held-out "
                        f"examples); raise --max-flops or shrink the target set")
