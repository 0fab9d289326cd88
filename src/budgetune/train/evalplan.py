"""Evaluation as a budgeted decision: which held-out examples a governed run evaluates on, and how often.

The run evaluates the whole held-out set twice: before training (the curve's origin and the "before" loss) and at
the end (the reported loss). Between them a governor needs a curve, but every evaluation costs FLOPs the run could
train on. So the evaluations in between use one fixed random sample of the held-out set (the same examples every
time, so two evaluations compare pair by pair, governor/noise.py), sized so that all evaluation stays within
`eval_share` of the FLOP budget. The governor declares how many evaluations it needs (its Config's `eval_points`
and `eval_min_sample`); the plan says what it got, and it is printed before training starts.
"""

from __future__ import annotations

import math

import numpy as np


def per_example(result: dict, n_total: int) -> dict:
    """The per-example part of an evaluation record: loss sums and token counts, and the indices when a sample."""
    out = {"eval_sums": [round(v, 6) for v in result["sums"]], "eval_counts": [int(v) for v in result["counts"]]}
    if len(result["indices"]) != n_total or result["indices"] != list(range(n_total)):
        out["eval_indices"] = list(result["indices"])
    return out


def make_plan(*, max_flops: float | None, whole_flops: float, n_examples: int, points: int, min_points: int,
              min_sample: int, share: float, seed: int = 0) -> dict:
    """The evaluation plan of a governed run: `points` evaluations on `sample` examples, within `share` of the budget.

    whole_flops: FLOPs of one evaluation of the whole held-out set (measured before training). When the budget is not
    in FLOPs the sample is the whole set (nothing to price it against). When the share cannot pay for `points`
    evaluations of `min_sample` examples, fewer points are planned (down to `min_points`); below that the plan
    keeps the minimum and says by how much it exceeds the share.
    """
    per = whole_flops / max(1, n_examples)
    plan = {"points": points, "sample_size": n_examples, "share_target": share, "whole_flops": whole_flops}
    if max_flops is None or not math.isfinite(max_flops) or max_flops <= 0:
        plan.update(sample=None, share=None, note="no FLOP budget: every evaluation uses the whole held-out set")
        return plan
    left = share * max_flops - 2 * whole_flops  # the before and final evaluations of the whole set
    n = int(left / (points * per)) if left > 0 else 0
    k = points
    while n < min_sample and k > min_points:
        k -= 1
        n = int(left / (k * per)) if left > 0 else 0
    n = max(min(n, n_examples), min(min_sample, n_examples))
    cost = 2 * whole_flops + k * n * per
    note = ""
    if cost > share * max_flops * (1 + 1e-9):
        note = (f"evaluation needs {cost / max_flops:.0%} of the budget, over the {share:.0%} share: the whole "
                f"held-out set costs {whole_flops / max_flops:.1%} per evaluation; raise --max-flops or give a "
                f"smaller --target")
    rng = np.random.default_rng([seed, n_examples])
    sample = None if n >= n_examples else sorted(int(i) for i in rng.choice(n_examples, n, replace=False))
    plan.update(points=k, sample_size=n, sample=sample, share=cost / max_flops, note=note)
    return plan


def describe(plan: dict, governor_name: str) -> str:
    """One line for the user: what the governor asked for and what it got."""
    share = "" if plan.get("share") is None else f", {plan['share']:.1%} of the budget with the whole-set evaluations"
    line = (f"governor {governor_name}: {plan['points']} evaluations on {plan['sample_size']} held-out examples"
            f"{share}; the final loss is measured on the whole held-out set")
    return line + (f" ({plan['note']})" if plan.get("note") else "")


def eval_due(plan: dict, fraction: float, done: int) -> bool:
    """Evaluation k (1-based, `done` counts the one before training) of `points` falls at k/(points + 1)."""
    return done <= plan["points"] and fraction >= done / (plan["points"] + 1)
