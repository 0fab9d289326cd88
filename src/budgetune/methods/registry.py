"""The one place methods are registered: name → module. Adding a method is one file plus one line here."""

from __future__ import annotations

import dataclasses
import importlib
import typing
from types import ModuleType

from ..errors import UserError

_MODULES = (
    ("full", "budgetune.methods.full"),
    ("lora", "budgetune.methods.lora"),
    ("adamw8bit", "budgetune.methods.adamw8bit"),
    ("qlora", "budgetune.methods.qlora"),
    ("galore", "budgetune.methods.galore"),
    ("badam", "budgetune.methods.badam"),
    ("hift", "budgetune.methods.hift"),
    ("mezo", "budgetune.methods.mezo"),
    ("lozo", "budgetune.methods.lozo"),
    ("addax", "budgetune.methods.addax"),
)

METHODS: dict[str, str] = {}
for _name, _module in _MODULES:
    if _name in METHODS:
        raise RuntimeError(f"method {_name!r} registered twice")
    METHODS[_name] = _module


def names() -> list[str]:
    return list(METHODS)


def get(name: str) -> ModuleType:
    if name not in METHODS:
        raise UserError(f"unknown method '{name}'; choose one of: {', '.join(METHODS)}")
    module = importlib.import_module(METHODS[name])
    if module.NAME != name:
        raise RuntimeError(f"method module {module.__name__} declares NAME={module.NAME!r}, registered as {name!r}")
    return module


def make_config(name: str, options: dict | None = None):
    """The method's Config from KEY=VALUE options (strings from the CLI, typed values from YAML)."""
    from ..config import coerce

    module = get(name)
    hints = typing.get_type_hints(module.Config)
    known = {f.name for f in dataclasses.fields(module.Config)}
    kwargs = {}
    for key, value in (options or {}).items():
        if key not in known:
            raise UserError(f"method '{name}' has no option '{key}'; its options are: {', '.join(sorted(known)) or 'none'}")
        hint = hints[key]
        if typing.get_origin(hint) is list or hint is list:
            kwargs[key] = value if isinstance(value, list) else [v for v in str(value).split(",") if v]
        else:
            kwargs[key] = coerce(value, hint, f"method '{name}' option '{key}'")
    return module.Config(**kwargs)
