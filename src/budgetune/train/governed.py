"""The training loop's side of a governed run: its evaluation plan, when it evaluates, and on which examples.

Kept out of loop.py so the loop calls one function per question. A run without a governor (FixedBudget) keeps the
user's schedule (train.eval_points on the whole held-out set); a governed run evaluates by its plan
(train/evalplan.py): the whole set before training and at the end, a fixed sample in between.
"""

from __future__ import annotations

import sys

import numpy as np

from ..flops import profile_from_model
from . import evalplan, pacing


def needs(governor) -> dict | None:
    """What the governor declared it needs, from its Config; None for a governor that needs no curve."""
    config = getattr(governor, "config", None)
    if config is None or not hasattr(config, "eval_points"):
        return None
    least = governor.decisive_points() if hasattr(governor, "decisive_points") else \
        getattr(config, "eval_min_points", config.eval_points)
    return {"points": max(config.eval_points, least), "min_points": least,
            "min_sample": getattr(config, "eval_min_sample", 1), "spacing": getattr(config, "eval_spacing", 1.0)}


def start(cfg, governor, budget, *, model, data, announce: bool) -> dict | None:
    """The plan of a governed run, made once before the evaluation before training (and kept in the loop state),
    priced from the batch shapes of the governor's held-out set (data.scoring) and of the test set."""
    need = needs(governor)
    if need is None or cfg.train.eval_every:
        return None  # ungoverned, or the user fixed the schedule in steps: evaluate the whole set as asked
    # train.eval_points asks for at least that many evaluations; the governor's own need is the floor.
    need = {**need, "points": max(need["points"], cfg.train.eval_points)}
    profile = profile_from_model(model)
    size = cfg.train.eval_batch_size
    whole = evalplan.evaluation_flops(profile, [e.n_tokens for e in data.scoring], size)
    reported = evalplan.evaluation_flops(profile, [e.n_tokens for e in data.test], size) if data.apart else 0.0
    plan = evalplan.make_plan(max_flops=budget.max_flops, whole_flops=whole, n_examples=len(data.scoring),
                              share=cfg.train.eval_share, seed=cfg.train.seed, reported_flops=reported,
                              origin_on_sample=data.apart, outside_flops=_outside_flops(cfg, model, data, profile),
                              **need)
    plan["governor"] = getattr(governor, "name", type(governor).__name__)
    plan["asked"] = need
    plan["line"] = evalplan.describe(plan, plan["governor"])
    if announce:
        print(f"plan: {plan['line']}", file=sys.stderr, flush=True)
    return plan


def _outside_flops(cfg, model, data, profile) -> float:
    """`budgetune run`'s generation evaluation after the loop (cfg.generation_eval prompts of the test set, before
    and after when adapters can be switched off), and its response-token accuracy when the loop's test
    evaluations did not measure it (no dev/test split): evaluation too, so the plan reserves it."""
    n = int(getattr(cfg, "generation_eval", 0) or 0)
    if n <= 0:
        return 0.0
    passes = 2 if hasattr(model, "disable_adapter") else 1
    out = evalplan.generation_flops(profile, data.target, n, passes=passes)
    if not data.apart:
        out += passes * evalplan.evaluation_flops(profile, [e.n_tokens for e in data.target],
                                                  cfg.train.eval_batch_size)
    return out


def due(cfg, plan: dict | None, budget, ledger, state: dict) -> bool:
    if plan is None:
        return pacing.eval_due(cfg.train, budget, ledger, state)
    done = pacing.progress_fraction(budget, ledger, cfg.train.max_steps, state["step"])
    return evalplan.eval_due(plan, done, state["evals_done"]) and affordable(plan, budget, ledger, done)


def fits_flops(budget, ledger, evals: list[dict], indices, n_whole: int, reserve: float) -> bool:
    """Whether an evaluation in between still leaves the final evaluation's reserve inside the FLOP budget. The
    step before it was pre-costed and the reserve kept, but not this evaluation: without the check, an evaluation
    due after the last affordable step overran the budget by its own cost (2.6% on a 3e12-FLOP governed run).
    Priced per example from the last evaluation on record (the same sample, so the same examples, as a rule)."""
    if not budget.max_flops:
        return True
    priced = [r for r in evals if r.get("eval_flops")]
    if not priced:
        return True
    last = priced[-1]
    per = last["eval_flops"] / max(1, len(last.get("eval_indices") or ()) or n_whole)
    need = per * (n_whole if indices is None else len(indices))
    return ledger.total_flops + need + reserve <= budget.max_flops


def affordable(plan: dict, budget, ledger, fraction: float) -> bool:
    """Whether an evaluation in between still fits the evaluation share when another limit (seconds, tokens,
    steps) ends the run before its FLOP budget: the plan was priced on the FLOP budget, so the share is taken of
    the FLOPs the run is on course to spend instead (spent / fraction of the binding limit). A skipped point
    leaves the governor fewer evaluations (it then keeps training, as a fixed budget would); the share holds."""
    if plan.get("share") is None or not budget.max_flops or fraction <= 0:
        return True
    projected = ledger.total_flops / fraction
    if projected >= 0.999 * budget.max_flops:
        return True  # the FLOP budget binds: the plan already fits
    per = plan["whole_flops"] / max(1, plan.get("n_examples", plan["sample_size"]))
    need = ledger.flops.get("eval", 0.0) + per * plan["sample_size"] + plan.get("final_flops", 0.0)
    return need <= plan["share_target"] * projected


def sample(plan: dict | None):
    """Indices of the held-out examples the next governed evaluation reads (None: the whole set)."""
    return None if plan is None else plan.get("sample")


def origin_sample(plan: dict | None):
    """Indices the evaluation before training reads: the sample when dev and test are apart (evalplan)."""
    return sample(plan) if plan is not None and plan.get("origin_on_sample") else None


def final_reserve(plan: dict | None, measured_first: float, reported_estimate: float, apart: bool = False) -> float:
    """FLOPs the run keeps back for its final evaluation: the plan's; else, with dev and test apart, the test set's
    (an ungoverned run's final dev evaluation would be read by nothing, final_dev_eval); else the first
    evaluation's measured cost (an ungoverned run evaluates its held-out set whole at the end)."""
    if plan is not None and "final_flops" in plan:
        return float(plan["final_flops"])
    return reported_estimate if apart and plan is None else measured_first + reported_estimate


def final_dev_eval(plan: dict | None, last: dict, step: int, apart: bool = False) -> bool:
    """Whether the run ends with an evaluation of the governor's set: not when a governed run reports on a test
    set apart (its final test evaluation is the reported one), nor when an ungoverned one does (no decision reads
    dev after training: at 3e12 FLOPs such an evaluation cost 6.5% of the budget); else when the last one was not
    the whole set at this step (or it read weights since restored, train/best.py)."""
    if plan is not None and plan.get("origin_on_sample") or plan is None and apart:
        return False
    return last["step"] != step or "eval_indices" in last or bool(last.get("restored_after"))


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


def enlarge(plan: dict | None, decision, *, evals_done: int, eval_spent: float, max_flops: float | None,
            n_examples: int, seed: int) -> dict | None:
    """Grant a governor's request for a larger evaluation sample (decision.inputs["sample_request"], made when a
    stop decision is within one standard error of its price), as far as the evaluation share still pays for it.

    The new sample keeps the old examples and adds random ones, so every later evaluation still pairs with the
    earlier ones on their common examples. What fits: the share of the budget, minus the evaluation FLOPs spent so
    far (eval_spent, from the ledger), minus what the plan's remaining evaluations and the final one will cost at
    the larger size. The extra FLOPs are charged like any evaluation when the next ones run. Returns the record
    for decisions.jsonl (None when nothing was asked); the plan is updated in place (it is saved with the state).
    """
    asked = (getattr(decision, "inputs", None) or {}).get("sample_request")
    if not asked or plan is None or plan.get("sample") is None or not max_flops:
        return None
    old = list(plan["sample"])
    per = plan["whole_flops"] / max(1, plan.get("n_examples", n_examples))
    left = max(1, plan["points"] + 1 - evals_done)  # planned evaluations still to come (at least the next one)
    room = plan["share_target"] * max_flops - eval_spent - plan.get("final_flops", 0.0) - left * len(old) * per
    target = min(int(asked), n_examples)
    grant = max(0, min(target - len(old), int(room // (left * per)) if per > 0 else target - len(old)))
    record = {"action": "sample", "asked": int(asked), "sample_size_before": len(old)}
    if grant <= 0:
        record.update(sample_size=len(old), reason=f"the governor asked for a sample of {asked} examples on a close "
                                                   f"decision; the evaluation share has no room left for it")
        return record
    rest = sorted(set(range(n_examples)) - set(old))
    rng = np.random.default_rng([seed, n_examples, len(old)])
    added = sorted(int(i) for i in rng.choice(rest, grant, replace=False))
    plan["sample"] = sorted(old + added)
    plan["sample_size"] = len(plan["sample"])
    plan.setdefault("enlargements", []).append({"from": len(old), "to": plan["sample_size"], "asked": int(asked)})
    record.update(sample_size=plan["sample_size"], extra_flops_planned=grant * left * per,
                  reason=f"a stop decision is within one standard error of its price: the next evaluations read "
                         f"{plan['sample_size']} examples instead of {len(old)} (asked {asked})")
    return record


def grant_sample(run, state: dict, decision, ledger, budget, n_examples: int, seed: int) -> None:
    """The loop's one call: enlarge the plan's sample if the governor asked, and log what was granted."""
    record = enlarge(state.get("eval_plan"), decision, evals_done=state["evals_done"],
                     eval_spent=ledger.flops.get("eval", 0.0), max_flops=budget.max_flops, n_examples=n_examples,
                     seed=seed)
    if record is not None:
        run.append(run.decisions, {"step": state["step"], "flops": ledger.total_flops, **record})
