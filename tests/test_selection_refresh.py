"""Dynamic re-selection: drift on a probe, the refresh-or-not decision, and the ledger charges."""

from __future__ import annotations

import pytest
import torch

from budgetune.budget import Budget, Ledger
from budgetune.data.examples import chat_example
from budgetune.errors import UserError
from budgetune.selection.refresh import make_refresher

PAIRS = [("Hi", "Hello there."), ("What is 2+2?", "Four."), ("Name a planet.", "Mars."), ("Sky colour?", "Blue."),
         ("Best fruit?", "Mango, surely."), ("Who are you?", "A small model."), ("Say yes.", "Yes."),
         ("Count to three.", "One, two, three.")]


@pytest.fixture(scope="module")
def pool(tokenizer):
    return [chat_example(tokenizer, [{"role": "user", "content": q}, {"role": "assistant", "content": a}], 64)
            for q, a in PAIRS]


def scramble(model, seed):
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.model.layers.parameters():
            p.add_(torch.randn_like(p) * p.std() * 3)


def test_refresh_only_when_scores_drift(tiny_model, pool):
    refresher = make_refresher({"scorer": "loss", "budget": "50%"}, pool, None, probe_size=6, min_drift=0.2,
                               max_cost_share=1.0, budget=Budget(max_flops=1e15))
    ledger = Ledger()
    assert refresher(tiny_model, ledger) is None  # the first probe only takes the reference
    first = ledger.flops["selection"]
    assert first > 0
    assert refresher(tiny_model, ledger) is None  # same model: no drift
    assert refresher.history[-1]["drift"] == pytest.approx(0.0, abs=1e-9)
    assert ledger.flops["selection"] == pytest.approx(2 * first)
    scramble(tiny_model, 0)
    subset = refresher(tiny_model, ledger)
    report = refresher.history[-1]
    assert report["drift"] >= 0.2 and report["refresh"], report
    assert subset is not None and len(subset) == 4 and all(e in pool for e in subset)
    assert ledger.flops["selection"] > 3 * first  # the probe plus the full re-score


def test_refresh_not_worth_it_when_the_rescore_is_too_dear(tiny_model, pool):
    refresher = make_refresher({"scorer": "loss", "budget": "50%"}, pool, None, probe_size=4, min_drift=0.0,
                               max_cost_share=1e-6, budget=Budget(max_flops=1e12))
    ledger = Ledger()
    refresher(tiny_model, ledger)
    scramble(tiny_model, 1)
    assert refresher(tiny_model, ledger) is None
    assert "over" in refresher.history[-1]["reason"] and not refresher.history[-1]["refresh"]


def test_model_free_scorers_never_drift(pool):
    refresher = make_refresher({"scorer": "length", "budget": "2"}, pool, None, probe_size=5, min_drift=0.01)
    ledger = Ledger()
    ledger.charge("train", 1e12)
    assert refresher(None, ledger) is None and refresher(None, ledger) is None
    assert refresher.history[-1]["drift"] == pytest.approx(0.0)


def test_bad_refresher_inputs(pool):
    with pytest.raises(UserError, match="probe_size"):
        make_refresher({"scorer": "loss", "budget": "5%"}, pool, None, probe_size=1)
    with pytest.raises(UserError, match="pool is empty"):
        make_refresher({"scorer": "loss", "budget": "5%"}, [], None)
    with pytest.raises(UserError, match="over 100%"):
        make_refresher({"scorer": "loss", "budget": "120%"}, pool, None)
