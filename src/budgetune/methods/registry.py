"""The one place methods are registered: name → module. Adding a method is one file plus one line here."""

from __future__ import annotations

from types import ModuleType

from ..plugins import Registry

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
    ("subzero", "budgetune.methods.subzero"),
    ("peqa", "budgetune.methods.peqa"),
    ("dqt", "budgetune.methods.dqt"),
    ("colm", "budgetune.methods.colm"),
)

REGISTRY = Registry("method", _MODULES)
METHODS = REGISTRY.modules


def names() -> list[str]:
    return REGISTRY.names()


def get(name: str) -> ModuleType:
    return REGISTRY.get(name)


def make_config(name: str, options: dict | None = None):
    """The method's Config from KEY=VALUE options (strings from the CLI, typed values from YAML)."""
    return REGISTRY.config(name, options)
