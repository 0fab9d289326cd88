"""CLI flags generated from the config dataclasses: each field's documentation is its --help text."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .. import config as config_mod
from ..errors import UserError


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    groups: dict = {}
    for section, f, hint in config_mod.all_fields():
        title = f"{section} options" if section else "run options"
        group = groups.setdefault(title, parser.add_argument_group(title))
        dest = f"cfg__{section}__{f.name}" if section else f"cfg____{f.name}"
        help_text = f.metadata.get("help", "")
        default = f.default if f.default is not config_mod.dataclasses.MISSING else None
        if f.name == "method_options":
            group.add_argument("--method-option", "-o", dest=dest, action="append", metavar="KEY=VALUE",
                               default=None, help=help_text)
        elif f.name in ("selection", "governor"):
            group.add_argument(_flag(f.name), dest=dest, default=None, metavar="JSON",
                               help=help_text + ' (JSON, e.g. \'{"scorer": "ifd", "budget": "10%%"}\')')
        elif hint is bool:
            group.add_argument(_flag(f.name), dest=dest, action=argparse.BooleanOptionalAction, default=None,
                               help=f"{help_text} (default: {default})")
        else:
            group.add_argument(_flag(f.name), dest=dest, default=None, metavar=f.name.upper(),
                               help=f"{help_text} (default: {default})".replace("%", "%%"))


def apply_flags(cfg: config_mod.RunConfig, args: argparse.Namespace) -> config_mod.RunConfig:
    """Set every flag the user gave (and only those) on cfg."""
    for section, f, hint in config_mod.all_fields():
        dest = f"cfg__{section}__{f.name}" if section else f"cfg____{f.name}"
        value = getattr(args, dest, None)
        if value is None:
            continue
        target = getattr(cfg, section) if section else cfg
        flag = "--method-option" if f.name == "method_options" else _flag(f.name)
        if f.name == "method_options":
            options = dict(target.method_options)
            for item in value:
                if "=" not in item:
                    raise UserError(f"--method-option '{item}' is not KEY=VALUE; write e.g. -o r=8")
                key, _, v = item.partition("=")
                options[key.strip()] = v.strip()
            value = options
        elif f.name in ("selection", "governor"):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                if f.name == "governor" and value.replace("-", "").isalnum():  # --governor none / patience
                    value = {"name": value}
                    setattr(target, f.name, value)
                    continue
                raise UserError(f"{flag} '{value}' is not JSON; write e.g. '{{\"scorer\": \"ifd\"}}'") from None
        else:
            value = config_mod.coerce(value, hint, f"flag {flag}")
        setattr(target, f.name, value)
    return cfg


def resume_base(args: argparse.Namespace, fallback: config_mod.RunConfig) -> config_mod.RunConfig:
    """With --resume --out DIR, start from the run's saved config (then flags override)."""
    out = getattr(args, "cfg____out", None)
    if getattr(args, "cfg____resume", None) and out:
        saved = Path(out) / "config.json"
        if not saved.exists():
            raise UserError(f"{out}: not a run directory (no config.json); check --out")
        data = json.loads(saved.read_text(encoding="utf-8"))
        return config_mod.from_dict(data, str(saved))
    return fallback
