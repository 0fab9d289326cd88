"""Evaluation as a budgeted decision: which held-out examples a governed run evaluates on, and how often.

The run evaluates the whole held-out set twice: before training (the curve's origin and the "before" loss) and at
the end (the reported loss). Between them a governor needs a curve, but every evaluation costs FLOPs the run could
train on. So the evaluations in between use one fixed random sample of the held-out set (the same examples every
time, so two evaluations compare pair by pair, governor/noise.py), sized so that all evaluation stays within
`eval_share` of the FLOP budget. The governor declares how many evaluations it needs (its Config's `eval_points`
and `eval_min_sample`); the plan says what it got, and it is printed before training starts.

When the held-out data is split into dev (what the governor reads) and test (the reported loss, train/testset.py),
the whole-set evaluations that matter are the two on test: the improvement the run reports. A whole-dev evaluation
would only give the governor's curve an origin and an end point on examples its paired tests never compare with
the sample, so the dev side is the sample throughout: the evaluation before training (the curve's origin) is on the
sample, and there is no final dev evaluation (the final test evaluation is the reported one). That is what one
expects of a held-out protocol (a small fixed dev sample to steer by, the test set measured before and after), and
it is where the default run's evaluation went: two whole-dev evaluations were 11% of its FLOPs.
The plan is priced from batch shapes before anything is evaluated (`evaluation_flops`), so the origin can already
be on the sample.
"""

from __future__ import annotations

import math

import numpy as np

from ..flops import forward_flops


def per_example(result: dict, n_total: int) -> dict:
    """The per-example part of an evaluation record: loss sums and token counts, and the indices when a sample."""
    out = {"eval_sums": [round(v, 6) for v in result["sums"]], "eval_counts": [int(v) for v in result["counts"]]}
    if len(result["indices"]) != n_total or result["indices"] != list(range(n_total)):
        out["eval_indices"] = list(result["indices"])
    return out


def evaluation_flops(profile, lengths, batch_size: int) -> float:
    """FLOPs of one evaluation (train/evaluate.heldout_losses) of examples with these token lengths, from the batch
    shapes alone: examples in length order, batches of `batch_size` padded to their longest, one forward each."""
    ordered = sorted(int(n) for n in lengths)
    return float(sum(forward_flops(profile, len(ordered[i:i + batch_size]), ordered[i:i + batch_size][-1])
                     for i in range(0, len(ordered), batch_size)))


def generation_flops(profile, examples, prompts: int, *, max_new_tokens: int = 32, passes: int = 2) -> float:
    """What `budgetune run`'s generation evaluation will cost at most: `max_new_tokens` answered after each of the
    first `prompts` chat examples' prompts (infer.accounting.request_flops, one row each, as the ledger charges
    generation), `passes` times (before and after training)."""
    from ..infer.accounting import request_flops

    chats = [e for e in examples if e.messages][:prompts]
    return passes * sum(request_flops(profile, max(1, e.n_tokens - e.n_target_tokens), max_new_tokens)
                        for e in chats)


def make_plan(*, max_flops: float | None, whole_flops: float, n_examples: int, points: int, min_points: int,
              min_sample: int, share: float, seed: int = 0, reported_flops: float = 0.0,
              origin_on_sample: bool = False, outside_flops: float = 0.0, spacing: float = 1.0) -> dict:
    """The evaluation plan of a governed run: `points` evaluations on `sample` examples, within `share` of the budget.

    whole_flops: FLOPs of one evaluation of the whole held-out set the governor reads. reported_flops: one
    evaluation of a separate test set (0 without one), evaluated whole before and after training. With
    origin_on_sample (dev and test apart) the evaluation before training is on the sample too and there is no
    final one on dev: `points + 1` sample evaluations; otherwise the governor's set is evaluated whole before and
    at the end. When the budget is not in FLOPs the sample is the whole set (nothing to price it against). When
    the share cannot pay for `points` evaluations of `min_sample` examples, fewer points are planned (down to
    `min_points`); below that none are planned in between (the share binds: the note says why).
    outside_flops: evaluation `budgetune run` does after the loop (the generation evaluation), reserved with the
    final evaluation so that the share and the budget cover it too. `final_flops` is what the run reserves for its
    final evaluation.
    """
    per = whole_flops / max(1, n_examples)
    fixed = 2 * reported_flops + (0.0 if origin_on_sample else 2 * whole_flops) + outside_flops
    extra = 1 if origin_on_sample else 0  # the origin, when it is a sample evaluation
    plan = {"points": points, "spacing": spacing, "sample_size": n_examples, "n_examples": n_examples,
            "share_target": share,
            "whole_flops": whole_flops,
            "reported_flops": reported_flops, "origin_on_sample": bool(origin_on_sample),
            "outside_flops": outside_flops,
            "final_flops": reported_flops + (0.0 if origin_on_sample else whole_flops) + outside_flops}
    if max_flops is None or not math.isfinite(max_flops) or max_flops <= 0:
        plan.update(sample=None, share=None, note="no FLOP budget: every evaluation uses the whole held-out set")
        return plan
    # A paired test needs two examples at least; fewer than the governor's minimum cannot support a decision.
    floor = max(2, min(min_sample, n_examples))
    left = share * max_flops - fixed
    n = int(left / ((points + extra) * per)) if left > 0 else 0
    k = points
    while n < floor and k > min_points:
        k -= 1
        n = int(left / ((k + extra) * per)) if left > 0 else 0
    note = ""
    if n < floor or n_examples < 2:
        # The share cannot pay for the fewest evaluations the governor can decide on: evaluations it could not
        # act on would only take FLOPs from training, so none are planned in between and the run trains to its
        # budget (the governor sees the evaluation before training and decides nothing after it).
        need = fixed + (min_points + extra) * floor * per
        why = (f"the held-out set has {n_examples} example(s), a paired test needs 2" if n_examples < 2 else
               f"{min_points + extra} evaluations of {floor} examples and the whole-set ones would need "
               f"{need / max_flops:.0%} of the budget, over the {share:.0%} share")
        note = (f"no evaluations in between: {why}; the run trains to its whole budget (raise --max-flops or "
                f"train.eval_share to let the governor decide)")
        k, n = 0, min(floor, n_examples)
    n = max(min(n, n_examples), 1)
    cost = fixed + ((k + extra) * n if (k or extra) else 0) * per
    rng = np.random.default_rng([seed, n_examples])
    sample = None if n >= n_examples else sorted(int(i) for i in rng.choice(n_examples, n, replace=False))
    plan.update(points=k, sample_size=n, sample=sample, share=cost / max_flops, note=note)
    return plan


def describe(plan: dict, governor_name: str) -> str:
    """One line for the user: what the governor asked for and what it got."""
    share = "" if plan.get("share") is None else f", {plan['share']:.1%} of the budget with the whole-set evaluations"
    if plan.get("points") == 0 and plan.get("note"):
        return f"governor {governor_name}: {plan['note']}{share}"
    if plan.get("origin_on_sample"):
        line = (f"governor {governor_name}: {plan['points'] + 1} evaluations on {plan['sample_size']} dev examples "
                f"(the first before training){share}; the reported loss is measured on the whole test set before "
                f"and after")
    else:
        line = (f"governor {governor_name}: {plan['points']} evaluations on {plan['sample_size']} held-out examples"
                f"{share}; the final loss is measured on the whole held-out set")
    return line + (f" ({plan['note']})" if plan.get("note") else "")


def fractions(plan: dict) -> list[float]:
    """Budget fractions at which the plan's evaluations in between fall: evaluation k of `points` at
    (k/(points + 1))^spacing, evenly for spacing 1; above 1 they crowd the start, where a stop saves most."""
    k, p = int(plan["points"]), float(plan.get("spacing", 1.0))
    return [(j / (k + 1)) ** p for j in range(1, k + 1)]


def eval_due(plan: dict, fraction: float, done: int) -> bool:
    """Whether evaluation `done` (1-based: `done` counts the one before training) is due at this budget fraction."""
    marks = fractions(plan)
    return 1 <= done <= len(marks) and fraction >= marks[done - 1]
