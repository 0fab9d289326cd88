"""Compute over time: the governor and its threshold, and the evaluation sample and schedule that fit within
train.eval_share (train/evalplan.py, through train/governed.start, the function the loop calls with the measured
cost of the first evaluation).

The default governor (marginal gain) is kept where it can pay for itself and stepped aside, with the reason,
where it cannot: no budget to price FLOPs against, too few held-out examples for its paired test, its own
evaluations alone over the evaluation share, or a budget that pays for fewer steps than it needs evaluations.
"""

from __future__ import annotations

import copy

from ..governor import DEFAULT
from ..governor_hook import FIXED_NAMES
from .choices import CHOSEN, GIVEN


def _governor(cfg, section: dict, budget):
    from ..governor_hook import governor_from_config

    trial = copy.copy(cfg)
    trial.governor = section
    return governor_from_config(trial, budget)


def choose(plan, cfg, given: set[str], data, costs: dict, budget) -> dict:
    """Fill the governor and evaluation choices; returns the governor section the run uses."""
    from ..train import governed

    n_dev = len(data.scoring)
    section = dict(cfg.governor or {})
    source = GIVEN if section else CHOSEN
    unpriced = budget.max_flops is None and budget.max_tokens is None and budget.max_seconds is None
    gov = _governor(cfg, section or ({"name": "none"} if unpriced else {"name": DEFAULT}), budget)
    why_fixed = kept_why = None
    eval_plan = None
    if governed.needs(gov) is not None and not cfg.train.eval_every:
        eval_plan = _eval_plan(cfg, gov, budget, data, costs)
    if not section:
        need = governed.needs(gov) or {}
        if unpriced:
            why_fixed = "no FLOP, token or time budget to price FLOPs against"
        elif n_dev < need.get("min_sample", 1):
            why_fixed = f"{n_dev} dev examples, fewer than the {need['min_sample']} its paired test needs"
        elif eval_plan is not None and budget.max_flops:
            evals = eval_plan["share"] * budget.max_flops
            steps = (budget.max_flops - evals) / max(costs["first_step"], 1.0)
            # Over the share is a reason to step aside only when the fixed schedule it falls back to costs less:
            # a fixed run evaluates the whole dev set before and in between, and after training the test set
            # (dev and test apart) or dev, where the governor's plan reads a sample of dev.
            fixed_evals = fixed_schedule_flops(cfg, costs)
            if eval_plan.get("note") and evals > fixed_evals:
                why_fixed = (f"its evaluations would cost {eval_plan['share']:.0%} of the budget, over the "
                             f"{cfg.train.eval_share:.0%} evaluation share and over the fixed schedule's "
                             f"{fixed_evals / budget.max_flops:.0%}")
            elif eval_plan.get("note"):
                kept_why = (f"kept, although its evaluations are over the {cfg.train.eval_share:.0%} share: they "
                            f"cost {evals / budget.max_flops:.0%} of the budget, the fixed schedule's "
                            f"{fixed_evals / budget.max_flops:.0%}")
            elif steps < eval_plan["points"]:
                why_fixed = (f"the budget pays for about {max(0, int(steps))} steps, fewer than its "
                             f"{eval_plan['points']} evaluations")
        if why_fixed:
            gov, eval_plan, section = _governor(cfg, {"name": "none"}, budget), None, {"name": "none"}
        else:
            section = {"name": getattr(gov, "name", DEFAULT)}
    name = section.get("name", DEFAULT)
    threshold = getattr(getattr(gov, "config", None), "threshold", None)
    value = name if name in FIXED_NAMES else f"{name}, threshold {threshold:g}" if threshold else name
    if source == GIVEN:
        reason = "--governor"
    elif why_fixed:
        reason = f"fixed budget: {why_fixed}"
    elif kept_why:
        reason = kept_why
    else:
        reason = (gov.rule_text() if hasattr(gov, "rule_text") else
                  f"stops when the next {gov.config.horizon:.0%} of the budget is predicted to buy less than "
                  f"{threshold:.1%} lower held-out loss") + " (its default; docs/governor.md)"
    plan.add("governor", value, source, reason, "--governor")
    _evaluation(plan, cfg, given, data, costs, eval_plan)
    return section


def fixed_schedule_flops(cfg, costs: dict) -> float:
    """What a fixed run's evaluations cost: before training (dev, and test when apart), after it (test when apart,
    else dev) and train.eval_points whole-dev evaluations in between (none are planned with train.eval_every: the
    plan cannot count them)."""
    points = 0 if cfg.train.eval_every else int(cfg.train.eval_points)
    return costs["before_eval"] + costs["fixed_final_reserve"] + points * costs["dev_eval"]


def _evaluation(plan, cfg, given: set[str], data, costs: dict, eval_plan: dict | None) -> None:
    """The evaluation schedule and what it costs in all (before, in between, final), and the final reserve."""
    n_dev = len(data.scoring)
    per = costs["whole_eval"] / max(1, n_dev)
    ends = costs["before_eval"] + costs["final_reserve"]
    share_source = GIVEN if "train.eval_share" in given else CHOSEN
    if eval_plan is not None:
        extra = 1 if eval_plan.get("origin_on_sample") else 0  # the evaluation before training, on the sample
        between = (eval_plan["points"] + extra) * eval_plan["sample_size"] * per
        ends = (eval_plan["share"] * cfg.budget.max_flops - between) if eval_plan.get("share") is not None else ends
        value = f"{eval_plan['points'] + extra} x {eval_plan['sample_size']} of {n_dev} dev examples"
        reason = eval_plan["line"].split(": ", 1)[-1]
        plan.numbers["eval_plan"] = {k: v for k, v in eval_plan.items() if k != "line"}
    else:
        points = 0 if cfg.train.eval_every else int(cfg.train.eval_points)
        ends = costs["before_eval"] + costs["fixed_final_reserve"]  # fixed_schedule_flops' ends
        between = points * costs["dev_eval"]
        value = (f"every {cfg.train.eval_every} steps on all {n_dev}" if cfg.train.eval_every
                 else f"{points} x all {n_dev} dev examples")
        reason = "fixed schedule (--eval-points / --eval-every) on the whole dev set"
        share_source = GIVEN if {"train.eval_points", "train.eval_every"} & given else CHOSEN
    total = ends + between
    share = f"; {total / cfg.budget.max_flops:.1%} of the budget" if cfg.budget.max_flops and eval_plan is None else ""
    plan.add("evaluation", value, share_source, reason + share, "--eval-share, --eval-points")
    reserve = eval_plan["final_flops"] if eval_plan is not None else costs["fixed_final_reserve"]
    plan.add("final eval", f"{reserve:.3g} FLOPs reserved", CHOSEN,
             ("the test set and the generation evaluation" if eval_plan is not None and data.apart else
              "the test set" if data.apart else "the whole dev set") + " after training, kept back from the budget "
             "so the reported loss is always measured", "")
    plan.flops["eval"] = float(total)
    plan.numbers["eval_between"] = float(between)


def _eval_plan(cfg, gov, budget, data, costs: dict) -> dict:
    """The evaluation plan the loop's train/governed.start will make, priced from this plan's costs (no weights
    loaded): the governor's sample on dev, the test set whole before and after, the generation evaluation reserved."""
    from ..train import evalplan, governed

    need = governed.needs(gov)
    need = {**need, "points": max(need["points"], cfg.train.eval_points)}
    outside = 0.0
    n = int(getattr(cfg, "generation_eval", 0) or 0)
    if n > 0:
        from ..methods import registry

        # An adapter method's base is generated by switching the adapters off: two passes (train/governed.py).
        passes = 2 if getattr(registry.get(cfg.train.method), "SWITCHABLE_ADAPTERS", False) else 1
        outside = evalplan.generation_flops(costs["train_profile"], data.target, n, passes=passes)
    plan = evalplan.make_plan(max_flops=budget.max_flops, whole_flops=costs["dev_eval"],
                              n_examples=len(data.scoring), share=cfg.train.eval_share, seed=cfg.train.seed,
                              reported_flops=costs["test_eval"], origin_on_sample=data.apart,
                              outside_flops=outside, **need)
    plan["line"] = evalplan.describe(plan, getattr(gov, "name", type(gov).__name__))
    return plan
