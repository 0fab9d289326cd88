"""BIDS: instance-level normalisation by hand, and greedy picks for the least-represented task on a constructed pool
where raw influence would fill the budget with one task."""

from __future__ import annotations

import numpy as np
import pytest

from budgetune.errors import UserError
from budgetune.selection import registry
from budgetune.selection.scorers.bids import (
    greedy_order,
    normalise_instances,
    task_influence,
)


def test_each_dev_column_is_normalised_by_hand():
    a = np.array([[1.0, 5.0, 2.0], [2.0, 5.0, 4.0], [3.0, 5.0, 6.0]])
    z = normalise_instances(a)
    # Column 0: mean 2, population sd √(2/3) → ∓1.2247, 0; column 1 constant → 0; column 2 = 2 × column 0.
    np.testing.assert_allclose(z[:, 0], [-1.224745, 0.0, 1.224745], atol=1e-6)
    np.testing.assert_allclose(z[:, 1], 0.0)
    np.testing.assert_allclose(z[:, 2], z[:, 0])


def constructed():
    """Dev instances 0, 1 belong to task 0, dev 2, 3 to task 1. Pool rows 0-2 help task 0 with large raw influence,
    rows 3-5 help task 1 with influence ten times smaller."""
    a = np.zeros((6, 4))
    a[0:3, 0:2] = np.array([[10.0], [9.0], [8.0]])
    a[3:6, 2:4] = np.array([[1.0], [0.9], [0.8]])
    return a, np.array([0, 0, 1, 1])


def test_raw_influence_would_fill_the_budget_with_the_high_influence_task():
    a, task_of = constructed()
    raw = task_influence(a, task_of).max(axis=1)  # LESS-style: mean within task, max over tasks
    assert set(np.argsort(-raw)[:3].tolist()) == {0, 1, 2}


def test_bids_alternates_to_the_least_represented_task():
    a, task_of = constructed()
    per_task = task_influence(normalise_instances(a), task_of)
    for seed in range(4):  # whichever task the first (tied) pick serves
        order = greedy_order(per_task, np.random.default_rng(seed))
        task = (order >= 3).astype(int)  # rows 3-5 serve task 1
        assert task[0] != task[1] and task[2] != task[3]  # every second pick goes to the task left behind
        assert sorted(task[:4].tolist()) == [0, 0, 1, 1]
        # Within a task, the most influential first.
        assert [i for i in order if i < 3] == [0, 1, 2] and [i for i in order if i >= 3] == [3, 4, 5]


def test_bids_picks_for_the_task_the_picks_so_far_serve_least():
    """Three tasks; rows 0-1 serve tasks 0 and 1 together, row 2 only task 2: after row 0 (tasks 0 and 1 served)
    the next pick must be row 2, the only one for task 2, although row 1 scores higher on tasks 0 and 1."""
    per_task = np.array([[2.0, 2.0, -1.0], [1.9, 1.9, -1.0], [-1.0, -1.0, 0.5]])
    order = greedy_order(per_task, np.random.default_rng(0))
    first = order[0]
    assert first in (0, 2)
    if first == 0:
        assert order[1] == 2


def test_bids_scores_the_pool_on_the_tiny_model(tiny_model, tokenizer):
    from budgetune.data.examples import chat_example

    def ex(q, a, cat):
        return chat_example(tokenizer, [{"role": "user", "content": q}, {"role": "assistant", "content": a}], 48, cat)

    pool = [ex(f"Question {i}?", "Answer " * (1 + i % 3), "pool") for i in range(6)]
    target = [ex("What is AI?", "Machines.", "ai"), ex("What is 2+2?", "Four.", "maths")]
    scores = registry.make("bids", {"k": 8, "batch_size": 3}).score(tiny_model, pool, target)
    assert sorted(scores.values.tolist()) == list(range(1, 7))
    assert scores.meta["tasks"] == ["ai", "maths"]
    assert scores.flops > 0 and scores.tokens == sum(e.n_tokens for e in pool + target)


def test_bad_options_are_one_line_errors():
    with pytest.raises(UserError, match="k >= 1"):
        registry.make("bids", {"k": 0})
