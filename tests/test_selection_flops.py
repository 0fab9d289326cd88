"""Scoring FLOPs include what the warm-up checkpoints spend, not only the warm-up's training steps."""

from __future__ import annotations

import pytest

from budgetune.data.examples import chat_example
from budgetune.selection import registry
from budgetune.selection.forward import token_stats

QA = [("What is AI?", "The study of machines that think."), ("Who wrote Hamlet?", "Shakespeare."),
      ("What is 2+2?", "Four."), ("Name a colour.", "Blue, like the sky."), ("What is Python?", "A language."),
      ("Is water wet?", "Water makes things wet."), ("Tell a joke.", "Why did the chicken cross the road?"),
      ("What is a CPU?", "The processor of a computer.")]

# Warm-ups of one step on two examples: far cheaper than a pass over the 24-example pool, so a count that lost the
# checkpoint's pass(es) over the pool falls below the bound.
LIGHT = {
    "el2n": ({"runs": 1, "warmup_steps": 1, "batch_size": 2}, 1),
    "grand": ({"runs": 1, "warmup_steps": 1, "batch_size": 2}, 1),
    "rho": ({"holdout_steps": 1, "batch_size": 2}, 2),  # the current model's and the holdout model's forwards
    "s2l": ({"checkpoints": 1, "warmup_steps": 1, "clusters": 2, "batch_size": 2}, 2),
    "less": ({"checkpoints": 1, "warmup_steps": 1, "k": 8, "batch_size": 2, "warmup_fraction": 0.05}, 1),
}


def make(tokenizer, pairs, category):
    return [chat_example(tokenizer, [{"role": "system", "content": ""}, {"role": "user", "content": q},
                                     {"role": "assistant", "content": a}], 64, category) for q, a in pairs]


@pytest.mark.parametrize("name", sorted(LIGHT))
def test_checkpoint_passes_over_the_pool_are_counted(name, tiny_model, tokenizer):
    pool = make(tokenizer, QA * 3, "pool")
    target = make(tokenizer, QA[:2], "ai")
    options, passes = LIGHT[name]
    _, _, forward, _ = token_stats(tiny_model, pool, batch_size=2)
    scores = registry.make(name, options).score(tiny_model, pool, target)
    assert scores.flops > passes * forward
