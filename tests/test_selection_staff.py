"""STAFF: equal-width regions, verification scores, region budgets; the allocation order every budget takes."""

from __future__ import annotations

import numpy as np
import pytest

from budgetune.errors import UserError
from budgetune.selection import registry
from budgetune.selection.allocate import order_scores, weighted_order
from budgetune.selection.scorers.staff import regions_of, verification_scores


def test_weighted_order_prefixes_follow_the_weights_and_caps():
    groups = np.array([0] * 10 + [1] * 10)
    order = weighted_order(groups, {0: 1.0, 1: 3.0}, rng=np.random.default_rng(0))
    assert sorted(order.tolist()) == list(range(20))
    # 1 : 3 by hand: 8 picks → 2 and 6; 4 picks → 1 and 3.
    assert np.bincount(groups[order[:8]], minlength=2).tolist() == [2, 6]
    assert np.bincount(groups[order[:4]], minlength=2).tolist() == [1, 3]
    # Group 1 runs out after 10 of its picks (at about 13 in all); the rest is group 0.
    assert np.bincount(groups[order[:16]], minlength=2).tolist() == [6, 10]


def test_weighted_order_keeps_zero_weight_groups_last_and_within_priority():
    groups = np.array([0, 0, 1, 1])
    order = weighted_order(groups, {0: 0.0, 1: 1.0}, within=np.array([0, 0, 1.0, 5.0]))
    assert order[:2].tolist() == [3, 2]  # group 1 only, higher priority first
    assert set(order[2:].tolist()) == {0, 1}


def test_order_scores_topk_reproduces_the_order():
    order = np.array([2, 0, 3, 1])
    values = order_scores(order, 4)
    assert np.argsort(-values).tolist() == order.tolist()


def test_regions_are_equal_width():
    s = np.array([0.0, 0.9, 1.1, 2.0, 3.9, 4.0])
    assert regions_of(s, 4).tolist() == [0, 0, 1, 2, 3, 3]  # width 1: [0,1) [1,2) [2,3) [3,4]
    assert regions_of(np.ones(3), 4).tolist() == [0, 0, 0]


def test_verification_moves_the_budget_to_where_the_target_agrees():
    """Region 1's target efforts are 3× the proxy's, region 0's equal: V = (1, 3), so 8 picks split 2 / 6."""
    speculative = np.array([1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0] * 2)
    regions = regions_of(speculative, 2)
    target = {0: 1.0, 1: 1.0, 4: 6.0, 5: 6.0}  # proxy 1, 1 → 1, 1; proxy 2, 2 → 6, 6
    v = verification_scores(speculative, target, regions)
    assert v == pytest.approx({0: 1.0, 1: 3.0})
    order = weighted_order(regions, v, rng=np.random.default_rng(1))
    assert np.bincount(regions[order[:8]], minlength=2).tolist() == [2, 6]


def test_staff_scores_on_the_target_and_the_proxy(tiny_model, tokenizer):
    from budgetune.data.examples import chat_example

    pool = [chat_example(tokenizer, [{"role": "user", "content": f"Question {i}?"},
                                     {"role": "assistant", "content": "Answer " * (1 + i % 4)}], 48, "c")
            for i in range(8)]
    scores = registry.make("staff", {"proxy": "layers:1", "regions": 2, "verify": 1, "warmup_steps": 0,
                                     "batch_size": 4}).score(tiny_model, pool, [])
    assert sorted(scores.values.tolist()) == list(range(1, 9))  # a full order
    assert "first 1 of 2 layers" in scores.meta["proxy"]
    assert scores.meta["verified"] == scores.meta["regions"]  # one verified example per region
    assert scores.flops > 0


def test_bad_options_are_one_line_errors():
    with pytest.raises(UserError, match="regions >= 1"):
        registry.make("staff", {"regions": 0})
