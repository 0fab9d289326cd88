"""Governors decide, at each evaluation, whether the next FLOPs go to this run, elsewhere, or nowhere.

The one registry of governors is REGISTRY below (a plugins.Registry, like methods and scorers): adding one is a file
plus a line here. What a governor needs from the run is declared on it: its Config's fields (evaluation points,
sample sizes; shown in `--help`), NEEDS_BUDGET, and a `refresh_probe` field where it can ask a data refresher.
`make(name, options, budget)` builds one from a config section (`governor: {name: marginal, threshold: 0.01}`).
"""

from __future__ import annotations

from ..errors import UserError
from ..plugins import Registry
from .protocol import ACTIONS, ArmPolicy, ArmView, Decision, FixedBudget, Governor

DEFAULT = "marginal"

REGISTRY = Registry("governor", (
    ("fixed", "budgetune.governor.protocol:FixedBudget"),
    ("marginal", "budgetune.governor.marginal:MarginalGain"),
    ("patience", "budgetune.governor.baselines:Patience"),
    ("halving", "budgetune.governor.baselines:SuccessiveHalving"),
))
GOVERNORS = REGISTRY.modules

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
    return REGISTRY.names()


def get(name: str) -> type:
    return REGISTRY.get(name)


def make(name: str | None = None, options: dict | None = None, budget=None):
    """A governor from its name and options (strings from the CLI or typed values from YAML). A governor class
    with NEEDS_BUDGET = True prices FLOPs against a FLOP, token or time budget and is refused without one."""
    options = dict(options or {})
    name = (options.pop("name", None) if name is None else name) or DEFAULT
    cls = get(name)
    config = REGISTRY.config(name, options)
    governor = cls() if config is None else cls(config)
    if budget is not None and getattr(cls, "NEEDS_BUDGET", False) and budget.max_flops is None \
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
