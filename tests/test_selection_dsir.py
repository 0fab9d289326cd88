"""DSIR with a target set that is small next to the pool (the usual case: a few dozen target examples)."""

from __future__ import annotations

import numpy as np

from budgetune.data import Example
from budgetune.selection import registry


def plain(text: str, category: str = "pool") -> Example:
    e = Example([1, 2, 3], [1, 2, 3], category)
    e.text = text
    return e


def test_dsir_ranks_target_like_examples_above_rare_words_with_a_small_target():
    rng = np.random.default_rng(0)
    common = ["the", "is", "a", "what", "of", "and", "to", "it"]
    topic = ["robot", "neural", "learning", "machine", "intelligence"]
    # 20 on-topic pool examples: common words plus topic words; 400 off-topic ones: common words plus words that
    # occur once in the whole pool (names, typos: what a real pool is full of) and never in the target.
    on = [" ".join(rng.choice(common, 6).tolist() + rng.choice(topic, 3).tolist()) for _ in range(20)]
    off = [" ".join(rng.choice(common, 6).tolist() + [f"rare{i}x{j}" for j in range(3)]) for i in range(400)]
    pool = [plain(t) for t in on + off]
    target = [plain(" ".join(rng.choice(common, 6).tolist() + rng.choice(topic, 3).tolist()), "ai")
              for _ in range(5)]
    values = registry.make("dsir", {}).score(None, pool, target).values
    top = np.argsort(-values)[:20]
    # Add-α smoothing of a small target gives words it never saw more probability than the pool gives its
    # singletons, so the rare-word examples won; the target model must fall back on the pool's distribution.
    assert np.mean(top < 20) >= 0.9
    assert values[:20].mean() > 0 > values[20:].mean()
