"""`budgetune VERB ...`: each verb is a module in budgetune.commands with HELP, add_arguments(parser) and
main(args) -> exit code. Modules import torch/transformers inside main(), so `--help` stays fast."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .errors import UserError

COMMANDS = {
    "run": "budgetune.commands.run",
    "train": "budgetune.commands.train",
    "plan": "budgetune.commands.plan",
    "select": "budgetune.commands.select",
    "scaling": "budgetune.commands.scaling",
    "generate": "budgetune.commands.generate",
    "eval": "budgetune.commands.evaluate",
    "report": "budgetune.commands.report",
}


class _Parser(argparse.ArgumentParser):
    """Bad flags are one line too (argparse's usage block would make them two)."""

    def error(self, message: str):
        self.exit(2, f"budgetune: error: {message}; see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="budgetune",
        description="Plan and run LLM fine-tuning under explicit memory, data and compute budgets.",
    )
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb, module_name in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name == module_name:
                continue  # a verb whose module is not part of this installation
            raise
        p = sub.add_parser(verb, help=module.HELP, description=module.HELP,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_module", None):
        parser.print_help()
        return 2
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from .models import offline

    offline(bool(getattr(args, "cfg__model__allow_download", None)))  # no network unless asked, this invocation
    try:
        return int(args._module.main(args) or 0)
    except UserError as e:
        print(f"budgetune: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("budgetune: interrupted; resume with --resume --out RUN_DIR", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
