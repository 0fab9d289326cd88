"""`budgetune train CONFIG.yaml`: a run described by a YAML config (flags override its fields)."""

from __future__ import annotations

from .options import add_config_flags, apply_flags, resume_base

HELP = "train from a YAML config (sections model, data, train, budget, selection, governor); flags override it"


def add_arguments(parser) -> None:
    from .choices import lazy_epilog

    parser.add_argument("config", help="YAML file with sections model, data, train, budget and the run options "
                                       "below (examples/ has configs to start from)")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    add_config_flags(parser, default_note=" unless the YAML sets it")  # --generation-eval too (stored with the run)
    lazy_epilog(parser)


def main(args) -> int:
    from .. import config as config_mod
    from ..joint.runner import given_of
    from .run import execute

    cfg = resume_base(args, config_mod.load_yaml(args.config))
    return execute(apply_flags(cfg, args), as_json=args.json, given=given_of(args, args.config))
