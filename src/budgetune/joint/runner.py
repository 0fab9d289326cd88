"""The plan inside `budgetune run` / `train`: made and printed before any weight is loaded, handed to the loop
(which writes RUN_DIR/plan.json when it opens the directory), and set beside the outcome at the end."""

from __future__ import annotations

import sys
from pathlib import Path

PLAN_FILE = "plan.json"


def prepare(cfg, given: set[str], *, as_json: bool = False) -> dict:
    """Plan `cfg` in place and print the table; the loop's inputs (tokenizer, data, plan) to hand on.

    A resumed run keeps the plan it started with: its config.json already holds the choices."""
    if cfg.resume:
        path = Path(cfg.out or "") / PLAN_FILE
        if path.exists():
            print(f"plan: resumed; the plan made at the start is kept ({path})", file=sys.stderr)
        return {}
    from .plan import apply, make_plan
    from .show import table

    plan, tokenizer, data = make_plan(cfg, given)
    apply(cfg, plan)
    print(table(plan), file=sys.stderr if as_json else sys.stdout, flush=True)
    return {"tokenizer": tokenizer, "data": data, "joint_plan": plan.to_json()}


def given_of(args, yaml_path: str | None = None) -> set[str]:
    """What the user gave: every config flag on this command line, and every field the YAML sets."""
    from .choices import fields_of, given_fields

    given = given_fields(args)
    if yaml_path:
        import yaml

        try:
            given |= fields_of(yaml.safe_load(Path(yaml_path).read_text(encoding="utf-8")) or {})
        except (OSError, yaml.YAMLError, AttributeError):
            pass  # load_yaml has already reported a bad file
    return given
