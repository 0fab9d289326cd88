"""Answers that do not belong to their prompt: how much an example's own prompt lowers its answer's loss, against
other examples' prompts. For a pair that belongs together, the own prompt predicts the answer better than a random
other one; for a shuffled or misattached answer it does not, so

    margin = mean over r other prompts of s(A | Q_other) − s(A | Q_own)

(s = mean response-token loss, the scorer's model or its proxy) is about zero or below. A filter keeps the examples
whose margin is above `threshold` and runs before any strategy. Cost: 1 + r forwards of the pool.
"""

from __future__ import annotations

import numpy as np

from ..data import IGNORE, Example
from ..errors import UserError
from .forward import token_stats


def _first_learned(example: Example) -> int:
    first = next((i for i, t in enumerate(example.labels) if t != IGNORE), None)
    if first is None or first < 1:
        raise UserError(f"example {example.uid}: no prompt before the answer (plain text?); the mismatch filter "
                        f"needs prompt/response data")
    return first


def with_prompt_of(example: Example, other: Example) -> Example:
    """`example`'s answer after `other`'s prompt, token for token (the chat template's prompt part ends with the
    assistant header, so the two halves join as the template would)."""
    a, b = _first_learned(example), _first_learned(other)
    ids = other.input_ids[:b] + example.input_ids[a:]
    labels = [IGNORE] * b + example.labels[a:]
    return Example(ids, labels, example.category, uid=example.uid)


def mismatch_margin(model, pool: list[Example], *, others: int = 1, batch_size: int = 16,
                    seed: int = 0) -> tuple[np.ndarray, float, int]:
    """(margin per example, FLOPs, tokens read)."""
    if len(pool) < 2:
        raise UserError("the mismatch filter needs at least two examples to swap prompts between")
    own, _, flops, tokens = token_stats(model, pool, batch_size=batch_size, progress="mismatch: own prompts")
    rng = np.random.default_rng(seed)
    other_loss = np.zeros(len(pool))
    n = len(pool)
    for r in range(others):
        shift = rng.integers(1, n, size=n)  # never the example's own prompt
        swapped = [with_prompt_of(e, pool[(i + shift[i]) % n]) for i, e in enumerate(pool)]
        loss, _, f, t = token_stats(model, swapped, batch_size=batch_size, progress=f"mismatch: other prompts {r + 1}")
        other_loss += loss / others
        flops, tokens = flops + f, tokens + t
    return other_loss - own, flops, tokens


def keep_matched(margin: np.ndarray, threshold: float) -> np.ndarray:
    return margin > threshold
