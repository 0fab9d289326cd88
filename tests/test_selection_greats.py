"""GREATS: its ghost inner products equal those of explicit per-example gradients (one backward per example), the
greedy order trades the validation term against redundancy, and the score takes a share of every candidate batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_selection_scorers import QA, make

from budgetune.selection import pergrad, registry, warmup
from budgetune.selection.scorers.greats import (
    _linears,
    ghost_flops,
    ghost_scores,
    greedy_order,
)


def test_ghost_inner_products_equal_explicit_gradients(tiny_model, tokenizer):
    from budgetune.data import collate

    pool, target = make(tokenizer, QA[:4]), make(tokenizer, QA[4:6])
    lora = warmup.with_lora(tiny_model, seed=0).eval()
    with torch.no_grad():  # a trained-looking adapter: B ≠ 0, so A's gradients are not all zero either
        for n, p in lora.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.02, generator=torch.Generator().manual_seed(1))
    params = pergrad.trainable(lora)
    linears = _linears(lora, params)
    explicit = torch.cat([g for _, g, _ in pergrad.per_example_grads(lora, pool, method="loop")]).double()
    val_rows = torch.cat([g for _, g, _ in pergrad.per_example_grads(lora, target, method="loop")]).double()
    g_val = val_rows.mean(0)
    sizes = [p.numel() for p in params.values()]
    val_grad = dict(zip(params, (t.reshape(p.shape).float() for t, p in zip(g_val.split(sizes), params.values()))))
    val, gram = ghost_scores(lora, linears, val_grad, collate(pool, 0))
    np.testing.assert_allclose(val, (explicit @ g_val).numpy(), rtol=1e-4, atol=1e-10)
    np.testing.assert_allclose(gram, (explicit @ explicit.t()).numpy(), rtol=1e-4, atol=1e-10)


def test_greedy_trades_validation_gain_against_redundancy():
    # Examples 0 and 1 are the same gradient, the best for the validation loss; 2 is orthogonal and a little worse.
    g = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 0.9]])
    val, gram = g @ np.array([1.0, 0.9]), g @ g.T
    assert greedy_order(val, gram, lr=1e-6)[0] == [0, 1, 2]  # tiny η: the validation term alone
    order, gains = greedy_order(val, gram, lr=1.0)  # η·0.81 vs η·1 − η²·1: the duplicate now gains nothing
    assert order[:2] == [0, 2] and gains[0] == pytest.approx(1.0) and gains[1] == pytest.approx(0.81)


def test_scores_take_a_share_of_every_candidate_batch(tiny_model, tokenizer):
    pool, target = make(tokenizer, QA), make(tokenizer, QA[:2])
    scorer = registry.make("greats", {"group": 4})
    scores = scorer.score(tiny_model, pool, target)
    order = np.random.default_rng(0).permutation(len(pool))
    top = set(np.argsort(-scores.values)[:2].tolist())
    assert all(len(top & set(order[s: s + 4].tolist())) == 1 for s in (0, 4))  # one first pick per batch
    assert scores.flops > ghost_flops(4, 1, [(1, 1)])


def test_ghost_flops_by_hand():
    # One linear 3×5, 2 rows × 2 tokens: n = 4 tokens; 4·(2·15 + 6) + 2·16·8 + 2·16.
    assert ghost_flops(2, 2, [(3, 5)]) == 4 * 36 + 256 + 32
