"""The one place scorers are registered: name → module. A scorer is one file in scorers/ plus one line here.

Each scorer module defines NAME, NEEDS_MODEL, DEFAULT_STRATEGY, a `Config` dataclass of its options (validated in
`__post_init__`) and `Scorer(config)` with `score(model, pool, target) -> Scores`.
"""

from __future__ import annotations

from types import ModuleType

from ..plugins import Registry

_MODULES = (
    ("random", "budgetune.selection.scorers.random"),
    ("length", "budgetune.selection.scorers.length"),
    ("dsir", "budgetune.selection.scorers.dsir"),
    ("classifier", "budgetune.selection.scorers.classifier"),
    ("loss", "budgetune.selection.scorers.loss"),
    ("el2n", "budgetune.selection.scorers.el2n"),
    ("grand", "budgetune.selection.scorers.grand"),
    ("ifd", "budgetune.selection.scorers.ifd"),
    ("rho", "budgetune.selection.scorers.rho"),
    ("s2l", "budgetune.selection.scorers.s2l"),
    ("less", "budgetune.selection.scorers.less"),
    ("greats", "budgetune.selection.scorers.greats"),
    ("staff", "budgetune.selection.scorers.staff"),
    ("bids", "budgetune.selection.scorers.bids"),
    ("dart", "budgetune.selection.scorers.dart"),
    ("cads", "budgetune.selection.scorers.cads"),
)

REGISTRY = Registry("scorer", _MODULES)
SCORERS = REGISTRY.modules


def names() -> list[str]:
    return REGISTRY.names()


def get(name: str) -> ModuleType:
    return REGISTRY.get(name)


def make(name: str, options: dict | None = None):
    """A scorer object built from KEY=VALUE options (strings from the CLI, typed values from YAML)."""
    return get(name).Scorer(REGISTRY.config(name, options))


def model_free() -> str:
    """The registered scorers that need no model (NEEDS_MODEL = False), as 'random, length or dsir' for errors."""
    free = [n for n in names() if not get(n).NEEDS_MODEL]
    return " or ".join([", ".join(free[:-1]), free[-1]] if len(free) > 1 else free)


def listing() -> str:
    """The registered scorers for help texts: 'random, length, ...'."""
    return ", ".join(names())
