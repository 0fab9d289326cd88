"""`budgetune train CONFIG.yaml`: a run described by a YAML config (flags override its fields)."""

from __future__ import annotations

from .options import add_config_flags, apply_flags, resume_base

HELP = "train from a YAML config (sections model, data, train, budget, selection, governor); flags override it"


def add_arguments(parser) -> None:
    parser.add_argument("config", help="YAML file; `budgetune train --help` lists every field")
    add_config_flags(parser)


def main(args) -> int:
    from .. import config as config_mod
    from .run import execute

    cfg = resume_base(args, config_mod.load_yaml(args.config))
    return execute(apply_flags(cfg, args))
