"""A plugin registry: name → module path (or "module:Class"), imported on first use, with options parsed into the
plugin's Config.

Methods, scorers and governors are each registered in one such table; a name registered twice is refused at import.
A plugin declares its name as NAME (a module) or `name` (a class), and its options as a `Config` dataclass; one
without a Config takes no options.
"""

from __future__ import annotations

import dataclasses
import importlib
import typing
from types import ModuleType

from .errors import UserError


class Registry:
    def __init__(self, kind: str, modules: tuple[tuple[str, str], ...]):
        self.kind = kind
        self.modules: dict[str, str] = {}
        for name, module in modules:
            if name in self.modules:
                raise RuntimeError(f"{kind} {name!r} registered twice")
            self.modules[name] = module

    def names(self) -> list[str]:
        return list(self.modules)

    def get(self, name: str) -> ModuleType:
        if name not in self.modules:
            raise UserError(f"unknown {self.kind} '{name}'; choose one of: {', '.join(self.modules)}")
        path, _, attr = self.modules[name].partition(":")
        plugin = importlib.import_module(path)
        if attr:
            plugin = getattr(plugin, attr)
        declared = getattr(plugin, "NAME", None) or getattr(plugin, "name", None)
        if declared != name:
            raise RuntimeError(f"{self.kind} {self.modules[name]} declares the name {declared!r}, "
                               f"registered as {name!r}")
        return plugin

    def config(self, name: str, options: dict | None = None):
        """The plugin's Config from KEY=VALUE options (strings from the CLI, typed values from YAML)."""
        from .config import coerce

        module = self.get(name)
        if getattr(module, "Config", None) is None:
            if options:
                raise UserError(f"{self.kind} '{name}' takes no options; remove {', '.join(sorted(options))}")
            return None
        hints = typing.get_type_hints(module.Config)
        known = {f.name for f in dataclasses.fields(module.Config)}
        kwargs = {}
        for key, value in (options or {}).items():
            if key not in known:
                raise UserError(f"{self.kind} '{name}' has no option '{key}'; its options are: "
                                f"{', '.join(sorted(known)) or 'none'}")
            hint = hints[key]
            if typing.get_origin(hint) is list or hint is list:
                kwargs[key] = value if isinstance(value, list) else [v for v in str(value).split(",") if v]
            else:
                kwargs[key] = coerce(value, hint, f"{self.kind} '{name}' option '{key}'")
        return module.Config(**kwargs)
