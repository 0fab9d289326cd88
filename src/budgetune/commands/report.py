"""`budgetune report RUN_DIR`: (re)write a run's report.html from its metrics, ledger and decisions."""

from __future__ import annotations

from pathlib import Path

HELP = "write RUN_DIR/report.html from the run's metrics.jsonl, ledger.json and decisions.jsonl"


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", help="a run directory written by `budgetune run` or `budgetune train`")


def main(args) -> int:
    from ..errors import UserError
    from ..report.html import write_report

    run_dir = Path(args.run_dir)
    for name in ("summary.json", "ledger.json", "metrics.jsonl"):
        if not (run_dir / name).exists():
            raise UserError(f"{run_dir}: no {name}; pass a finished run directory")
    print(write_report(run_dir))
    return 0
