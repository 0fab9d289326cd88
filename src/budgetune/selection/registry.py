"""The one place scorers are registered: name → module. A scorer is one file in scorers/ plus one line here.

Each scorer module defines NAME, NEEDS_MODEL, DEFAULT_STRATEGY, a `Config` dataclass of its options (validated in
`__post_init__`) and `Scorer(config)` with `score(model, pool, target) -> Scores`.
"""

from __future__ import annotations

import dataclasses
import importlib
import typing
from types import ModuleType

from ..errors import UserError

_MODULES = (
    ("random", "budgetune.selection.scorers.random"),
    ("length", "budgetune.selection.scorers.length"),
    ("dsir", "budgetune.selection.scorers.dsir"),
    ("loss", "budgetune.selection.scorers.loss"),
    ("el2n", "budgetune.selection.scorers.el2n"),
    ("grand", "budgetune.selection.scorers.grand"),
    ("ifd", "budgetune.selection.scorers.ifd"),
    ("rho", "budgetune.selection.scorers.rho"),
    ("s2l", "budgetune.selection.scorers.s2l"),
    ("less", "budgetune.selection.scorers.less"),
)

SCORERS: dict[str, str] = {}
for _name, _module in _MODULES:
    if _name in SCORERS:
        raise RuntimeError(f"scorer {_name!r} registered twice")
    SCORERS[_name] = _module


def names() -> list[str]:
    return list(SCORERS)


def get(name: str) -> ModuleType:
    if name not in SCORERS:
        raise UserError(f"unknown scorer '{name}'; choose one of: {', '.join(SCORERS)}")
    module = importlib.import_module(SCORERS[name])
    if module.NAME != name:
        raise RuntimeError(f"scorer module {module.__name__} declares NAME={module.NAME!r}, registered as {name!r}")
    return module


def make(name: str, options: dict | None = None):
    """A scorer object built from KEY=VALUE options (strings from the CLI, typed values from YAML)."""
    from ..config import coerce

    module = get(name)
    hints = typing.get_type_hints(module.Config)
    known = {f.name for f in dataclasses.fields(module.Config)}
    kwargs = {}
    for key, value in (options or {}).items():
        if key not in known:
            raise UserError(f"scorer '{name}' has no option '{key}'; its options are: {', '.join(sorted(known)) or 'none'}")
        kwargs[key] = coerce(value, hints[key], f"scorer '{name}' option '{key}'")
    return module.Scorer(module.Config(**kwargs))
