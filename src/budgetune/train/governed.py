"""The training loop's side of a governed run: its evaluation plan, when it evaluates, and on which examples.

Kept out of loop.py so the loop calls one function per question. A run without a governor (FixedBudget) keeps the
user's schedule (train.eval_points on the whole held-out set); a governed run evaluates by its plan
(train/evalplan.py): the whole set before training and at the end, a fixed sample in between.
"""

from __future__ import annotations

import sys

from . import evalplan, pacing


def needs(governor) -> dict | None:
    """What the governor declared it needs, from its Config; None for a governor that needs no curve."""
    config = getattr(governor, "config", None)
    if config is None or not hasattr(config, "eval_points"):
        return None
    return {"points": config.eval_points, "min_points": getattr(config, "eval_min_points", config.eval_points),
            "min_sample": getattr(config, "eval_min_sample", 1)}


def start(cfg, governor, budget, *, whole_flops: float, n_examples: int, announce: bool) -> dict | None:
    """The plan of a governed run, made once after the evaluation before training (and kept in the loop state)."""
    need = needs(governor)
    if need is None or cfg.train.eval_every:
        return None  # ungoverned, or the user fixed the schedule in steps: evaluate the whole set as asked
    # train.eval_points asks for at least that many evaluations; the governor's own need is the floor.
    need = {**need, "points": max(need["points"], cfg.train.eval_points)}
    plan = evalplan.make_plan(max_flops=budget.max_flops, whole_flops=whole_flops, n_examples=n_examples,
                              share=cfg.train.eval_share, seed=cfg.train.seed, **need)
    plan["governor"] = getattr(governor, "name", type(governor).__name__)
    plan["asked"] = need
    plan["line"] = evalplan.describe(plan, plan["governor"])
    if announce:
        print(f"plan: {plan['line']}", file=sys.stderr, flush=True)
    return plan


def due(cfg, plan: dict | None, budget, ledger, state: dict) -> bool:
    if plan is None:
        return pacing.eval_due(cfg.train, budget, ledger, state)
    done = pacing.progress_fraction(budget, ledger, cfg.train.max_steps, state["step"])
    return evalplan.eval_due(plan, done, state["evals_done"])


def sample(plan: dict | None):
    """Indices of the held-out examples the next governed evaluation reads (None: the whole set)."""
    return None if plan is None else plan.get("sample")


def prepare_refresher(refresher, model, ledger) -> None:
    """A refresher attached to a fresh run takes its reference scores now (charged to the ledger)."""
    if refresher is not None and hasattr(refresher, "take_reference"):
        refresher.take_reference(model, ledger)


def refresh(run, step: int, ledger, refresher, model) -> list | None:
    """The governor asked for a refresh: the refresher measures drift and maybe re-selects; its report is written
    to decisions.jsonl and metrics.jsonl (its FLOPs are on the ledger's selection phase)."""
    new_pool = refresher(model, ledger)
    report = dict(refresher.history[-1]) if getattr(refresher, "history", None) else {}
    report["reselected"] = bool(new_pool)
    line = {"step": step, "flops": ledger.total_flops, **report}
    run.append(run.decisions, {**line, "action": "refresh-report",
                               "reason": report.get("reason", "refresher called")})
    run.append(run.metrics, {**line, "kind": "refresh"})
    return new_pool
