"""Cheap scoring: the proxy's FLOPs, the sampled scorer's predictor, the mismatch filter and `scorer: auto`."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from budgetune.budget import Ledger
from budgetune.data.examples import chat_example
from budgetune.errors import UserError
from budgetune.selection import registry, select
from budgetune.selection.forward import length_batches
from budgetune.selection.noise import mismatch_margin, with_prompt_of
from tests.test_selection_flops import QA, make


def _measured_forward_flops(model, examples, batch_size=16):
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        for _, batch in length_batches(examples, batch_size):
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    return counter.get_total_flops()


def test_a_proxy_is_charged_its_own_flops(tiny_model, tokenizer):
    from budgetune.selection.proxy import proxy_for

    pool = make(tokenizer, QA * 2, "pool")
    full_ledger, proxy_ledger = Ledger(), Ledger()
    select({"scorer": "loss", "budget": "50%"}, tiny_model, pool, [], full_ledger)
    cheap = select({"scorer": "loss", "budget": "50%", "proxy": 1}, tiny_model, pool, [], proxy_ledger)
    proxy, described = proxy_for(tiny_model, 1)
    assert proxy.config.num_hidden_layers == 1 and "first 1 of 2" in described
    assert proxy_ledger.flops["selection"] == pytest.approx(cheap.summary["flops"])
    # Independent measurement: torch's FLOP counter over the same batches, the proxy against the full model.
    ratio = _measured_forward_flops(proxy, pool) / _measured_forward_flops(tiny_model, pool)
    assert proxy_ledger.flops["selection"] / full_ledger.flops["selection"] == pytest.approx(ratio, rel=0.1)
    assert ratio < 1.0  # the head (49152 × 64) dominates a 64-dim model; the layers are what shrinks


def test_sampled_scores_keep_the_sample_and_rank_the_rest(tokenizer):
    # Answers of 1..12 words: the length scorer's order is known, and the predictor must carry it to the pool.
    pairs = [(f"Question {i} about item {i % 5}?", " ".join(["word"] * (i % 12 + 1))) for i in range(120)]
    pool = make(tokenizer, pairs, "pool")
    scorer = registry.make("length")
    exact = scorer.score(None, pool, []).values
    sampled = select({"scorer": "length", "budget": "20%", "sample": 0.3}, None, pool, [])
    values = sampled.scores.values
    info = sampled.summary["extrapolation"]
    assert info["sample"] == 36 and info["pool"] == 120 and info["spearman_heldout"] > 0.8
    unsampled = ~np.isclose(values, np.round(values))  # predictions are not whole token counts
    assert spearmanr(values[unsampled], exact[unsampled]).statistic > 0.8
    assert sampled.summary["flops"] > 0  # the predictor's own arithmetic is charged


def test_a_sample_costs_its_share_of_a_model_scorer(tiny_model, tokenizer):
    pool = make(tokenizer, QA * 8, "pool")
    full = select({"scorer": "loss", "budget": "25%"}, tiny_model, pool, [])
    part = select({"scorer": "loss", "budget": "25%", "sample": 16}, tiny_model, pool, [])
    scorer_flops = part.summary["extrapolation"]["scorer_flops"]
    assert scorer_flops < 0.4 * full.summary["flops"]  # 16 of 64 examples, padded alike


def test_an_answer_after_another_prompt_is_what_the_template_gives(tokenizer):
    a, b = make(tokenizer, QA[:2], "c")
    swapped = with_prompt_of(a, b)
    expected = chat_example(tokenizer, [{"role": "system", "content": ""}, {"role": "user", "content": QA[1][0]},
                                        {"role": "assistant", "content": QA[0][1]}], 64, "c")
    assert swapped.input_ids == expected.input_ids and swapped.labels == expected.labels


def test_the_mismatch_filter_costs_its_forwards_and_drops_through_keep(tiny_model, tokenizer):
    from budgetune.selection.forward import token_stats

    pool = make(tokenizer, QA * 2, "pool")
    margin, flops, _ = mismatch_margin(tiny_model, pool, others=2)
    _, _, one, _ = token_stats(tiny_model, pool, batch_size=16)
    assert margin.shape == (len(pool),) and one * 2.5 < flops < one * 3.5  # own + 2 others, padded a little apart
    with pytest.raises(UserError, match="ruled out every example"):  # nothing clears an impossible margin
        select({"scorer": "length", "budget": "25%", "denoise": 1e9}, tiny_model, pool, [])
    result = select({"scorer": "length", "budget": "25%", "denoise": -1e9}, tiny_model, pool, [])
    assert result.summary["denoise"]["dropped"] == 0


def test_auto_plans_no_selection_dsir_or_nothing_affordable(tiny_model, tokenizer):
    from budgetune.flops import profile_from_model
    from budgetune.selection.auto import pass_flops

    pool = make(tokenizer, QA * 8, "pool")
    target = make(tokenizer, QA[:3], "ai")
    one_pass = pass_flops(profile_from_model(tiny_model), pool, 8)
    big = select({"scorer": "auto"}, tiny_model, pool, target, total_flops=2 * one_pass)
    assert big.scorer == "none" and len(big.indices) == len(pool)
    assert "no selection" in big.summary["plan"]["reasons"][-1]
    quarter = select({"scorer": "auto"}, tiny_model, pool, target, total_flops=0.25 * one_pass)
    assert quarter.scorer == "dsir"
    assert abs(quarter.summary["selected"] - 0.25 * len(pool)) <= 1
    assert quarter.summary["flops"] <= 0.2 * 0.25 * one_pass
    # No target and a budget that cannot pay for a model scorer: a subset would only drop data.
    none = select({"scorer": "auto", "cost_share": 1e-9}, tiny_model, pool, [], total_flops=0.25 * one_pass)
    assert none.scorer == "none"


def test_a_run_with_auto_selection_writes_its_plan(tiny_config_path, tokenizer, tmp_path):
    import json

    from budgetune.data import DataSplit
    from budgetune.train.loop import train
    from tests.helpers import small_split, tiny_run_config

    base = small_split(tokenizer, n_train=48, n_target=12)
    data = DataSplit(base.train, base.target[6:], base.source, dev=base.target[:6])
    cfg = tiny_run_config(tiny_config_path, tmp_path / "run", max_steps=2)
    cfg.budget.max_flops = 1e10
    cfg.selection = {"scorer": "auto"}
    result = train(cfg, data=data, progress=False)
    plan = json.loads((result.run_dir / "selection.summary.json").read_text())
    assert plan["plan"]["reasons"] and plan["pool"] == 48
    assert result.ledger.flops["selection"] == pytest.approx(plan["flops"])


def _blocks(n, length, words):
    """Text blocks of one length (as text_examples cuts a corpus), each with its own words for DSIR."""
    from budgetune.data.examples import Example

    ids = list(range(10, 10 + length))
    return [Example(ids, ids, "text", text=" ".join(words[(i + j) % len(words)] for j in range(6)), uid=str(i))
            for i in range(n)]


def test_auto_prices_scoring_by_the_whole_steps_it_displaces(tiny_model):
    from budgetune.flops import profile_from_model, train_step_flops
    from budgetune.selection.auto import plan

    words = [f"w{i}" for i in range(30)]
    pool, target = _blocks(40, 20, words), _blocks(4, 20, words[:8])
    step = train_step_flops(profile_from_model(tiny_model), 2, 20)  # every step: 2 blocks of 20 tokens
    # Exactly two steps: DSIR's hashing (8e5 FLOPs) leaves one whole step, so it costs half the training.
    tight = plan(pool, target, tiny_model, total_flops=2 * step, batch=2)
    dsir = next(c for c in tight.candidates if c["scorer"] == "dsir")
    assert dsir["share_of_training"] == 1.0 and tight.section is None
    # Two and a half steps: the hashing fits in the half step no training can use, so it displaces nothing.
    loose = plan(pool, target, tiny_model, total_flops=2.5 * step, batch=2)
    assert loose.section is not None and loose.section["scorer"] == "classifier"  # first of the model-free (4 dev)
    assert next(c for c in loose.candidates if c["scorer"] == "dsir")["share_of_training"] == 0.0
    assert next(c for c in loose.candidates if c["scorer"] == "classifier")["share_of_training"] == 0.0
    # Lengths that vary: steps differ by subset, so a FLOP of scoring is priced as a FLOP of training.
    varied = [e for e in pool]
    varied[0] = _blocks(1, 12, words)[0]
    varied[1] = _blocks(1, 9, words)[0]
    varied[2] = _blocks(1, 15, words)[0]
    mixed = plan(varied, target, tiny_model, total_flops=2 * step, batch=2)
    share = next(c for c in mixed.candidates if c["scorer"] == "dsir")["share_of_training"]
    assert share == pytest.approx(2 * 40 * 10000 / (2 * step - 2 * 40 * 10000))
    assert mixed.section["scorer"] == "classifier"
