"""The one next-token loss: cross-entropy of each position's logits against the next token, over the tokens a
model learns to produce (labels != -100; prompts and padding are masked out by budgetune.data.collate).

Training (methods.base.token_loss), evaluation (train/evaluate.py), the tracer (planner/trace.py) and the scorers
(selection/forward.py, selection/pergrad.py) all call it, so the loss the ledger pays for is the one they measure."""

from __future__ import annotations

from .lazy import lazy

F = lazy("torch.nn.functional")

IGNORE = -100  # budgetune.data.IGNORE: a label no loss is taken on


def next_token_loss(logits, labels, reduction: str = "sum"):
    """(loss, mask): next-token cross-entropy of `logits` [b, s, V] against `labels` [b, s], summed over the
    unmasked tokens (reduction "sum"), or per position [b, s-1] with 0 where masked ("none"); and the mask
    [b, s-1] of the positions that count. Computed in fp32 whatever the logits' dtype."""
    labels = labels[:, 1:]
    logits = logits[:, :-1]
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1), ignore_index=IGNORE,
                           reduction=reduction)
    return (loss.view(labels.shape) if reduction == "none" else loss), labels != IGNORE


def row_mean_loss(logits, labels):
    """Mean next-token cross-entropy of each row's unmasked tokens (the scorers' per-example loss)."""
    ce, mask = next_token_loss(logits, labels, reduction="none")
    return ce.sum(1) / mask.sum(1).clamp(min=1)
