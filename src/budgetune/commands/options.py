"""CLI flags generated from the config dataclasses: each field's documentation is its --help text."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .. import config as config_mod
from ..errors import UserError
from ..governor import DEFAULT as DEFAULT_GOVERNOR


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


# The KEY=VALUE form of the two dict-valued sections, with an example of each (JSON is accepted as well).
SECTION_EXAMPLES = {
    "selection": "scorer=auto budget=10%% options.batch_size=8",
    "governor": f"name={DEFAULT_GOVERNOR} threshold=0.01",
}


# What governor_from_config and the evaluation plan do (tests/test_help.py checks the two agree).
GOVERNOR_NOTE = ("; `budgetune run` is governed by default (marginal, decay on stop), --governor none gives the "
                 "fixed budget; a governor plans its own evaluations (its eval_points option, on a held-out sample "
                 "within --eval-share of the budget) and prints the plan before training")


def parse_pairs(items, flag: str, example: str, *, typed: bool = False) -> dict:
    """KEY=VALUE items (the project's one parser for them) into a dict; a dotted key (options.batch_size=8) nests.

    An item that starts with '{' is a JSON object, merged in. With `typed`, values are read as YAML scalars (8 → 8,
    0.5 → 0.5, true → True, 10% stays text), the same types the YAML section would give."""
    out: dict = {}
    for item in items or []:
        text = str(item).strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as e:
                raise UserError(f"{flag} '{text}' is not valid JSON ({e.msg}); write KEY=VALUE pairs, e.g. "
                                f"{flag} {example}") from None
            if not isinstance(value, dict):
                raise UserError(f"{flag} '{text}' is not a JSON object; write e.g. {flag} {example}")
            out.update(value)
            continue
        if "=" not in text:
            raise UserError(f"{flag} '{text}' is not KEY=VALUE; write e.g. {flag} {example}")
        key, _, value = text.partition("=")
        key, value = key.strip(), value.strip()
        if not key:
            raise UserError(f"{flag} '{text}' has no key before '='; write e.g. {flag} {example}")
        if typed:
            value = _scalar(value)
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise UserError(f"{flag} '{text}': '{p}' is a value, not a section; drop one of the two")
        node[leaf] = value
    return out


def _scalar(text: str):
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (int, float, bool)) or value is None else text


def _shown(value) -> str:
    if isinstance(value, float) and (abs(value) >= 1e5 or 0 < abs(value) < 1e-3):
        return f"{value:g}"
    return "unset" if value is None else str(value)


def add_config_flags(parser: argparse.ArgumentParser, defaults: config_mod.RunConfig | None = None,
                     default_note: str = "") -> None:
    """One flag per config field; `defaults` is the config this verb really starts from (its values are shown)."""
    defaults = defaults or config_mod.RunConfig()
    groups: dict = {}
    for section, f, hint in config_mod.all_fields():
        title = f"{section} options" if section else "run options"
        group = groups.setdefault(title, parser.add_argument_group(title))
        dest = f"cfg__{section}__{f.name}" if section else f"cfg____{f.name}"
        help_text = f.metadata.get("help", "").replace("%", "%%")
        default = getattr(getattr(defaults, section) if section else defaults, f.name)
        shown = f" (default: {_shown(default)}{default_note})".replace("%", "%%")
        if f.name == "method_options":
            group.add_argument("--method-option", "-o", dest=dest, action="append", metavar="KEY=VALUE",
                               default=None, help=help_text + " (repeatable; `budgetune plan` shows each method's "
                                                              "memory)")
        elif f.name in ("selection", "governor"):
            group.add_argument(_flag(f.name), dest=dest, default=None, nargs="+", action="extend",
                               metavar="KEY=VALUE",
                               help=f"{help_text}: KEY=VALUE pairs, e.g. {_flag(f.name)} {SECTION_EXAMPLES[f.name]}, "
                                    f"or one JSON object" + (GOVERNOR_NOTE if f.name == "governor" else ""))
        elif hint is bool:
            group.add_argument(_flag(f.name), dest=dest, action=argparse.BooleanOptionalAction, default=None,
                               help=help_text + shown)
        else:
            group.add_argument(_flag(f.name), dest=dest, default=None, metavar=f.name.upper(),
                               help=help_text + shown)


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
            value = {**target.method_options, **parse_pairs(value, flag, "-o r=8")}
        elif f.name in ("selection", "governor"):
            if f.name == "governor" and len(value) == 1 and "=" not in value[0] and not value[0].startswith("{"):
                value = [f"name={value[0]}"]  # --governor none / --governor patience
            value = parse_pairs(value, flag, SECTION_EXAMPLES[f.name].replace("%%", "%"), typed=True)
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
