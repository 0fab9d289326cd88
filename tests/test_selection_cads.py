"""CADS: the source-level outer step by hand, and on a constructed pool the source that is the dev set gains weight
and picks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from budgetune.errors import UserError
from budgetune.selection import registry
from budgetune.selection.scorers.cads import (
    mixture_batch,
    source_alignment,
    update_weights,
)


def test_source_alignment_by_hand():
    features = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    sources = np.array(["a", "a", "b", "b"])
    got = source_alignment(features, sources, np.array([2.0, 0.0]))
    # a: mean (1, 0) → cos 1; b: mean (0.5, 1) → 0.5 / √1.25 = 0.4472.
    assert got == pytest.approx({"a": 1.0, "b": 0.5 / math.sqrt(1.25)})


def test_exponentiated_gradient_step_by_hand():
    w = update_weights({"a": 0.5, "b": 0.5}, {"a": 1.0, "b": 0.0}, eta=1.0)
    assert w == pytest.approx({"a": math.e / (math.e + 1), "b": 1 / (math.e + 1)})
    assert update_weights({"a": 0.2, "b": 0.8}, {"a": 3.0, "b": -1.0}, eta=0.0) == pytest.approx({"a": 0.2, "b": 0.8})


def test_mixture_batch_follows_the_weights():
    pool = list(range(6))
    sources = np.array(["a", "a", "a", "b", "b", "b"])
    drawn = mixture_batch(pool, sources, {"a": 0.0, "b": 1.0}, 20, np.random.default_rng(0))
    assert all(x >= 3 for x in drawn)


def test_the_source_that_is_the_dev_set_gains_weight_and_picks(tiny_model, tokenizer):
    """Source 'twin' holds exactly the dev examples, so its mean gradient is the dev gradient (cosine 1); any other
    source's is at a smaller cosine, so its weight must fall below the twin's and the first pick be a twin."""
    from dataclasses import replace

    from budgetune.data.examples import chat_example

    def ex(q, a, cat):
        return chat_example(tokenizer, [{"role": "user", "content": q}, {"role": "assistant", "content": a}], 48, cat)

    dev = [ex("What is AI?", "The study of machines that think.", "dev"), ex("Who wrote Hamlet?", "Shakespeare.", "dev"),
           ex("Name a colour.", "Blue, like the sky.", "dev")]
    twins = [replace(e, category="twin") for e in dev]
    others = [ex(f"Count to {i}.", " ".join(str(j) for j in range(i + 3)), "other") for i in range(3)]
    pool = others + twins
    scores = registry.make("cads", {"rounds": 2, "inner_steps": 1, "k": 32, "batch_size": 3}).score(
        tiny_model, pool, dev)
    w = scores.meta["source_weights"]
    assert w["twin"] > w["other"]
    assert int(np.argmax(scores.values)) >= 3  # the heavier source takes the first pick
    assert scores.flops > 0 and len(scores.meta["weight_history"]) == 2


def test_bad_options_are_one_line_errors():
    with pytest.raises(UserError, match="rounds >= 1"):
        registry.make("cads", {"rounds": 0})
