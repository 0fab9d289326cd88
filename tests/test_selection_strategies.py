"""Budgets, strategies, near-duplicate removal and the `select`/`apply` entry points (no model needed)."""

from __future__ import annotations

import numpy as np
import pytest

from budgetune.budget import Ledger
from budgetune.data import DataSplit
from budgetune.data.examples import chat_example
from budgetune.errors import UserError
from budgetune.selection import apply, select, strategies
from budgetune.selection.dedup import drop_near_duplicates
from budgetune.selection.protocol import Scores
from budgetune.selection.sizing import parse_budget, take


@pytest.mark.parametrize("text, kind, value", [("5%", "fraction", 0.05), ("0.05", "fraction", 0.05),
                                               ("200", "count", 200), ("20000tok", "tokens", 20000),
                                               ("1.0", "fraction", 1.0), ("100%", "fraction", 1.0)])
def test_budget_forms(text, kind, value):
    b = parse_budget(text)
    assert (b.kind, b.value) == (kind, pytest.approx(value))


@pytest.mark.parametrize("text, message", [("0", "selects nothing"), ("0%", "selects nothing"),
                                           ("150%", "over 100%"), ("1.5", "over 100%"), ("lots", "not understood"),
                                           ("-5%", "not understood")])
def test_bad_budgets_are_one_line_errors(text, message):
    with pytest.raises(UserError, match=message) as e:
        parse_budget(text)
    assert "\n" not in str(e.value)


def test_take_by_count_fraction_and_tokens():
    order = np.array([3, 1, 0, 2])
    lengths = np.array([10, 20, 30, 40])
    assert take(order, lengths, parse_budget("2")).tolist() == [3, 1]
    assert take(order, lengths, parse_budget("50%")).tolist() == [3, 1]
    assert take(order, lengths, parse_budget("65tok")).tolist() == [3, 1]  # 40 + 20 fits, + 10 would not
    with pytest.raises(UserError, match="over the pool"):
        take(order, lengths, parse_budget("5"))
    with pytest.raises(UserError, match="over the pool"):
        take(order, lengths, parse_budget("101tok"))


def test_top_bottom_offset():
    s = Scores(np.array([0.1, 0.9, 0.5, 0.7, 0.3]), 0.0)
    assert strategies.order(s, "topk")[:2].tolist() == [1, 3]
    assert strategies.order(s, "bottomk")[:2].tolist() == [0, 4]
    assert strategies.order(s, "offset", offset=0.2)[:2].tolist() == [3, 2]  # the single hardest is skipped


def test_stratified_spreads_over_score_bins_at_small_budgets():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0, 0.1, 90), rng.normal(5, 0.1, 10)])  # most mass low, a hard tail
    picked = strategies.order(Scores(values, 0.0), "stratified", bins=2)[:10]
    assert 4 <= (values[picked] > 2.5).sum() <= 6  # an equal share of each bin, unlike top-k (all 10 hard)
    assert (values[strategies.order(Scores(values, 0.0), "topk")[:10]] > 2.5).all()


def test_balanced_deals_evenly_across_groups_and_keep_mask_is_respected():
    groups = np.array([0] * 30 + [1] * 5 + [2] * 15)
    s = Scores(np.zeros(50), 0.0, groups=groups)
    first = strategies.order(s, "balanced")[:15]
    assert np.bincount(groups[first]).tolist() == [5, 5, 5]
    keep = np.ones(50, dtype=bool)
    keep[:30] = False
    ordered = strategies.order(Scores(np.arange(50.0), 0.0, keep=keep), "topk")
    assert len(ordered) == 20 and (ordered >= 30).all()


def test_balanced_without_groups_clusters_the_scores():
    values = np.concatenate([np.zeros(40), np.ones(10) * 10])
    picked = strategies.order(Scores(values, 0.0), "balanced", clusters=2)[:10]
    assert (values[picked] == 10).sum() == 5


def test_unknown_strategy():
    with pytest.raises(UserError, match="strategy 'best'"):
        strategies.order(Scores(np.zeros(3), 0.0), "best")


@pytest.fixture(scope="module")
def pool(tokenizer):
    pairs = [("What is AI?", "The study of machines that think and learn."),
             ("What is AI??", "The study of machines that think and learn."),  # a near-duplicate
             ("Who wrote Hamlet?", "William Shakespeare wrote it."),
             ("What is 2+2?", "It is four."), ("Name a colour.", "Blue, like the sky at noon."),
             ("What is Python?", "A programming language.")]
    return [chat_example(tokenizer, [{"role": "user", "content": q}, {"role": "assistant", "content": a}], 128, "c")
            for q, a in pairs]


def test_near_duplicates_keep_the_higher_priority_one(pool):
    kept = drop_near_duplicates(pool, np.array([1, 0, 2, 3, 4, 5]), threshold=0.5)
    assert kept.tolist() == [1, 2, 3, 4, 5]


def test_select_charges_the_ledger_and_apply_returns_examples(pool):
    ledger = Ledger()
    result = select({"scorer": "dsir", "budget": "50%", "options": {"resample": False}}, None, pool, pool[:1], ledger)
    assert len(result.indices) == 3
    assert ledger.flops["selection"] == pytest.approx(result.scores.flops) and result.scores.flops > 0
    assert set(result.summary) >= {"scorer", "selected", "pool", "tokens", "flops"}
    subset = apply({"scorer": "random", "budget": "2", "dedup": 0.5}, None, None, DataSplit(pool, pool[:1], "t"),
                   Ledger())
    assert len(subset) == 2 and all(e in pool for e in subset)


@pytest.mark.parametrize("section, message", [({"budget": "5%"}, "needs 'scorer'"), ({"scorer": "random"}, "needs 'budget'"),
                                              ({"scorer": "random", "budget": "5%", "colour": 1}, "unknown key"),
                                              ({"scorer": "random", "budget": "0"}, "selects nothing"),
                                              ("ifd", "must be a mapping")])
def test_bad_selection_sections(pool, section, message):
    with pytest.raises(UserError, match=message):
        select(section, None, pool, pool)


def test_empty_pool(pool):
    with pytest.raises(UserError, match="pool is empty"):
        select({"scorer": "random", "budget": "5%"}, None, [], pool)
