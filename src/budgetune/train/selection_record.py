"""The run's data selection, kept in its run directory: every pool example's score and whether it was picked
(selection.scores.jsonl, the format `budgetune select` writes beside its subset) and the selection's summary, so
the report can draw the score histogram and the cut from files."""

from __future__ import annotations

import json

from .. import atomic

SCORES = "selection.scores.jsonl"  # read by report/html.py (SELECTION_SCORES)
SUMMARY = "selection.summary.json"


def apply_and_record(selection: dict, model, tokenizer, split, ledger, run, **plan) -> list:
    """The selected training subset of `split.train` (what selection.apply returns), with its scores written to
    the run directory by the writing process; the scoring FLOPs are charged to `ledger`."""
    from ..selection import select
    from .progress import stage

    with stage(f"selecting data with {selection.get('scorer')}", show=run.writer):
        result = select(selection, model, split.train, split.target, ledger, **plan)  # plan: auto's FLOP budget
    if run.writer:
        values = result.scores.values
        chosen = {int(i) for i in result.indices}
        atomic.write_text(run.path / SCORES, "".join(
            json.dumps({"uid": e.uid, "score": float(values[i]), "selected": i in chosen}) + "\n"
            for i, e in enumerate(split.train)))
        atomic.write_json(run.path / SUMMARY, result.summary)
    return [split.train[i] for i in result.indices]
