"""`budgetune report RUN_DIR`: (re)write a run's report.html from its metrics, ledger and decisions."""

from __future__ import annotations

from pathlib import Path

HELP = ("(re)write RUN_DIR/report.html from the files in the run directory (metrics.jsonl, ledger.json, "
        "decisions.jsonl, summary.json, generation_eval.json, ...): the same page `run` wrote")


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", help="a run directory written by `budgetune run` or `budgetune train`")
    parser.add_argument("--json", action="store_true",
                        help="print {report, run_dir, sections} as JSON instead of the report's path")


def main(args) -> int:
    from ..errors import UserError
    from ..report.html import write_report

    run_dir = Path(args.run_dir)
    for name in ("summary.json", "ledger.json", "metrics.jsonl"):
        if not (run_dir / name).exists():
            raise UserError(f"{run_dir}: no {name}; pass a finished run directory")
    path = write_report(run_dir)
    if args.json:
        import json
        import re

        sections = re.findall(r"<h2>(.*?)</h2>", path.read_text(encoding="utf-8"))
        print(json.dumps({"report": str(path), "run_dir": str(run_dir), "sections": sections}))
    else:
        print(path)
    return 0
