"""A close stop decision asks for a larger evaluation sample, and the loop's side grants it within the evaluation
share: on held-out curves whose answer is known by construction (tests/known_curves.py)."""

import numpy as np
import pytest
from known_curves import drive_planned

from budgetune.governor import make
from budgetune.governor.marginal import sample_request
from budgetune.governor.protocol import Decision
from budgetune.train.governed import enlarge


def fast_then_slow(x):  # a fast drop, then a slow decline whose gain sits near the price
    return 2.0 + np.exp(-x / 0.15)


@pytest.mark.parametrize("seed", [0])
def test_a_close_decision_enlarges_the_sample_and_the_ledger_pays_for_it(seed):
    # The price and optimism at which this curve's slow decline sits near the price (threshold 1%, the curve's
    # optimistic edge): the decision to test is a close one, whatever the defaults.
    # The sample request belongs to the paired-interval confirmations of rule "next" (not the default rule).
    governor = make("marginal", {"threshold": 0.01, "curve_z": 1.0, "min_dof": 3, "rule": "next",
                                 "confirm_by": "paired", "confirm": 2})
    decisions, sizes, eval_flops, plan = drive_planned(governor, fast_then_slow, seed=seed)
    asked = [i for i, d in enumerate(decisions) if d.inputs.get("sample_request")]
    assert asked, [d.inputs.get("evidence") for d in decisions]
    first = asked[0]
    d = decisions[first]
    # Asked only when the paired gain is within one standard error of its price.
    assert abs(d.inputs["interval_gain"] - d.inputs["interval_price"]) <= d.inputs["interval_se"]
    assert d.inputs["close"] is True
    assert all(s == 8 for s in sizes[: first + 1])
    assert len(sizes) > first + 1 and sizes[first + 1] > 8  # the next evaluation read more examples
    assert plan["enlargements"][0]["from"] == 8 and plan["sample_size"] == sizes[-1]
    # The extra examples are charged: 1e8 FLOPs per example read, by hand, and the share (10% of 1e12) holds.
    assert eval_flops == pytest.approx(1e8 * sum(sizes))
    assert eval_flops > 1e8 * 8 * len(sizes)
    assert eval_flops <= 0.1 * 1e12


def test_the_request_is_the_size_at_which_the_gap_is_one_standard_error():
    # se 1%, gap 0.5%: (1 / 0.5)² = 4× the sample; clamped to [2×, 4×]; no request when the gap exceeds one se.
    assert sample_request(8, -0.005, 0.01) == 32
    assert sample_request(8, 0.009, 0.01) == 16
    assert sample_request(8, 0.0, 0.01) == 32
    assert sample_request(8, 0.02, 0.01) is None
    assert sample_request(8, 0.005, float("inf")) is None


def _plan(sample):
    return {"points": 6, "sample": list(sample), "sample_size": len(sample), "whole_flops": 100 * 1e8,
            "share_target": 0.1, "final_flops": 1e9}


def test_the_enlarged_sample_keeps_its_examples_and_fits_the_share():
    plan = _plan(range(0, 80, 10))  # 8 of 100 examples, 1e8 FLOPs each
    close = Decision("continue", "close", {"sample_request": 32})
    # Budget 1e12, share 1e11; spent 2e9; final 1e9; 4 evaluations left (6 + 1 − 3): room 1e11 − 3e9 − 3.2e9 for
    # 4 × 1e8 per added example: 240 examples would fit, so the 24 asked for are granted.
    record = enlarge(plan, close, evals_done=3, eval_spent=2e9, max_flops=1e12, n_examples=100, seed=0)
    assert record["sample_size"] == 32 and plan["sample_size"] == 32
    assert set(range(0, 80, 10)) <= set(plan["sample"]) and len(set(plan["sample"])) == 32
    assert record["extra_flops_planned"] == pytest.approx(24 * 4 * 1e8)


def test_no_room_in_the_share_means_no_enlargement_and_says_so():
    plan = _plan(range(8))
    close = Decision("continue", "close", {"sample_request": 32})
    # Budget 1e11: share 1e10, of which 8e9 is spent and 1e9 is the final evaluation; 4 × 8 × 1e8 = 3.2e9 is
    # already more than what is left.
    record = enlarge(plan, close, evals_done=3, eval_spent=8e9, max_flops=1e11, n_examples=100, seed=0)
    assert record["sample_size"] == 8 and plan["sample"] == list(range(8))
    assert "no room" in record["reason"]
    assert enlarge(plan, Decision("continue", "not close", {}), evals_done=3, eval_spent=0.0, max_flops=1e12,
                   n_examples=100, seed=0) is None


def gentle(x):  # a fast drop, then a slow decline of about 0.5% of the loss per 10% of the budget: near the price
    return 2.0 + np.exp(-x / 0.05) + 0.12 * (1.0 - x)


def test_a_close_stop_of_the_default_rule_waits_for_a_larger_sample_that_the_ledger_pays_for():
    # The default rule ("rest", confirmed by the trend) with close_wait on.
    decisions, sizes, eval_flops, plan = drive_planned(make("marginal", {"close_wait": True}), gentle, seed=0)
    held = [i for i, d in enumerate(decisions) if d.inputs.get("sample_request")]
    assert held, [d.reason for d in decisions]
    i = held[0]
    d = decisions[i].inputs
    assert decisions[i].action == "continue" and d["close"] is True
    # Close by its definition: the rest is below its price, and one more standard error of the trend reaches it.
    assert d["rest_gain"] < d["rest_price"] <= d["rest_gain"] + d["rest_gain_se"]
    assert sizes[i + 1] > sizes[i] == 8
    assert eval_flops == pytest.approx(1e8 * sum(sizes))  # 1e8 FLOPs per example read, by hand
    # Without the wait, the same run stops at that evaluation, on 8 examples.
    plain, plain_sizes, _, _ = drive_planned(make("marginal", {"close_wait": False}), gentle, seed=0)
    assert plain[-1].action == "stop" and len(plain) == i + 1 and set(plain_sizes) == {8}


def test_a_close_stop_waits_once_per_sample_size_when_the_share_cannot_pay_for_more():
    # An evaluation share that the 8-example sample already fills: the request cannot be granted, so the next
    # evaluation reads 8 examples again and decides on them (no second wait at the same size).
    decisions, sizes, _, plan = drive_planned(make("marginal", {"close_wait": True}), gentle, seed=0, share=0.0104)
    held = [i for i, d in enumerate(decisions) if d.inputs.get("sample_request")]
    assert held and set(sizes) == {8} and "enlargements" not in plan
    assert len(held) == 1 and decisions[-1].action == "stop" and len(decisions) > held[0] + 1
