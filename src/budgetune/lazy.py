"""A module reference that imports on first attribute access.

`import torch` costs seconds, and the memory planner imports every method module for its `memory()` function, which
needs no torch at all. Method modules bind `torch` through `lazy("torch")`, so planning stays fast and training pays
the import once, on first use. Hand-written because importlib's LazyLoader replaces the entry in sys.modules and
breaks packages with compiled extensions that import their own submodules while loading (torch does).
"""

from __future__ import annotations

import importlib
from types import ModuleType


class _Lazy:
    __slots__ = ("_module", "_name")

    def __init__(self, name: str):
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str):
        module = self._module
        if module is None:
            module = self._module = importlib.import_module(self._name)
        return getattr(module, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


def lazy(name: str) -> _Lazy:
    return _Lazy(name)
