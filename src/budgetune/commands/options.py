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
                raise UserError(f"{flag} '{value}' is not JSON; write e.g. '{{\"scorer\": \"ifd\"}}'") from None
        else:
            value = config_mod.coerce(value, hint, f"flag {flag}")
        setattr(target, f.name, value)
    return cfg


def resume_base(args: argparse.Namespace, fallback: config_mod.RunConfig) -> config_mod.RunConfig:
    """With --resume --out DIR, start from the run's saved config (then flags override)."""
    out = getattr(args, "cfg____out", None)
    if getattr(args, "cfg____resume", None) and not out:
        raise UserError("--resume needs the run directory: add --out RUN_DIR")
    if getattr(args, "cfg____resume", None) and out:
        saved = Path(out) / "config.json"
        if not saved.exists():
            raise UserError(f"{out}: not a run directory (no config.json); check --out")
        try:
            data = json.loads(saved.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise UserError(f"{saved}: not valid JSON ({e}); the run directory is damaged, start a new run") from None
        if not isinstance(data, dict) or not {"model", "data", "train", "budget"} <= data.keys():
            raise UserError(f"{out}: not a run directory (its config.json is not a budgetune run's); check --out")
        cfg = config_mod.from_dict(data, str(saved))
        # Code execution and network access are this invocation's to allow, never a run directory's.
        cfg.model.trust_remote_code = False
        cfg.model.allow_download = False
        cfg.overwrite = False
        return cfg
    return fallback
