"""Batched forward passes that give per-example statistics, and the FLOPs they cost.

Examples are sorted by length before batching so padding (which costs FLOPs but teaches nothing) stays small.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from ..data import IGNORE, Example, collate
from ..errors import UserError
from ..flops import forward_flops, profile_from_model
from ..loss import next_token_loss

MAX_TOKENS = 2048  # padded tokens one scoring forward/backward holds at most (see `token_cap`)
_cap = [MAX_TOKENS]


@contextmanager
def token_cap(tokens: int | None):
    """Within it, every scoring batch holds at most `tokens` padded tokens (rows × longest row): a scorer's memory
    (logits, activations, per-example gradients) then follows this cap and its batch size, never the pool or its
    longest examples. An example longer than the cap is a batch of its own."""
    before = _cap[0]
    if tokens is not None:
        try:
            n = int(tokens)
        except (TypeError, ValueError):
            n = 0
        if n < 1 or str(n) != str(tokens).strip():
            raise UserError(f"selection batch_tokens={tokens!r} must be a whole number of tokens >= 1, e.g. 2048")
        _cap[0] = n
    try:
        yield
    finally:
        _cap[0] = before


def batch_groups(lengths, batch_size: int, max_tokens: int | None = None) -> list[np.ndarray]:
    """Indices of the scoring batches, in order of length: at most `batch_size` examples and at most `max_tokens`
    padded tokens each (default: the current `token_cap`). What the passes run and what their FLOPs are priced by."""
    cap = _cap[0] if max_tokens is None else max_tokens
    order = np.argsort(np.asarray(lengths), kind="stable")
    groups, start = [], 0
    while start < len(order):
        end = start + 1
        # lengths ascend, so adding the next example makes it the batch's longest
        while end < len(order) and end - start < batch_size and (end - start + 1) * lengths[order[end]] <= cap:
            end += 1
        groups.append(order[start:end])
        start = end
    return groups


def progress_bar(total: int, desc: str | None):
    """A tqdm bar over `total` examples (shown on a terminal, silent in logs); None without a description."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="ex", leave=False, disable=None) if desc else None


def length_batches(examples: list[Example], batch_size: int,
                   progress: str | None = None) -> Iterator[tuple[np.ndarray, dict]]:
    """(indices into `examples`, collated batch) in order of length, cut by `batch_groups`; `progress` names a tqdm
    bar over the examples. Only one batch is collated at a time, so memory follows the batch, not the pool."""
    bar = progress_bar(len(examples), progress)
    try:
        for idx in batch_groups([e.n_tokens for e in examples], batch_size):
            yield idx, collate([examples[i] for i in idx], 0)  # padding is masked, so its id does not matter
            if bar is not None:
                bar.update(len(idx))
    finally:
        if bar is not None:
            bar.close()


def require_model(model, scorer: str) -> None:
    if model is None:
        from .registry import model_free

        raise UserError(f"scorer '{scorer}' needs a model to run; pass --model (or use {model_free()})")


@torch.no_grad()
def token_stats(model, examples: list[Example], *, batch_size: int = 16, el2n: bool = False,
                progress: str = "scoring") -> tuple[np.ndarray, np.ndarray | None, float, int]:
    """Per example: mean response-token cross-entropy and (optionally) mean EL2N ‖softmax − onehot‖₂.

    Returns (loss, el2n or None, FLOPs, tokens read).
    """
    profile = profile_from_model(model)
    was_training = model.training
    model.eval()
    loss = np.zeros(len(examples))
    err = np.zeros(len(examples)) if el2n else None
    flops, tokens = 0.0, 0
    for idx, batch in length_batches(examples, batch_size, progress):
        # use_cache=False: the K/V cache of a scoring pass is memory nothing reads
        full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
        ce, mask = next_token_loss(full, batch["labels"], reduction="none")
        count = mask.sum(1).clamp(min=1)
        loss[idx] = (ce.sum(1) / count).numpy()
        if el2n:
            # ‖p − e_y‖² = ‖p‖² − 2·p_y + 1 avoids building the one-hot tensor over the vocabulary.
            safe = batch["labels"][:, 1:].clamp(min=0)
            probs = full[:, :-1].float().softmax(-1)
            p_y = probs.gather(-1, safe.unsqueeze(-1)).squeeze(-1)
            norm = (probs.pow(2).sum(-1) - 2 * p_y + 1).clamp(min=0).sqrt() * mask
            err[idx] = (norm.sum(1) / count).numpy()
        b, s = batch["input_ids"].shape
        flops += forward_flops(profile, b, s)
        tokens += int(batch["attention_mask"].sum())
    if was_training:
        model.train()
    return loss, err, flops, tokens


def response_only(example: Example) -> Example:
    """The example without its instruction: the response tokens, led by the one token before them.

    IFD's s(A) is the loss of the answer with no question (Li et al. 2023, Cherry LLM). Keeping the single token
    before the first response token (the end of the assistant header) scores exactly the same response tokens as
    s(A|Q), so the two means are comparable.
    """
    first = next((i for i, t in enumerate(example.labels) if t != IGNORE), None)
    if first is None or first < 1:
        raise UserError(f"example {example.uid}: no instruction before the response (plain text?); IFD needs "
                        f"prompt/response data")
    start = first - 1
    return Example(example.input_ids[start:], [IGNORE] + example.labels[first:], example.category, uid=example.uid)


def forward_pass_flops(profile, examples, batch: int = 16) -> float:
    """FLOPs of the scorers' batched forward over `examples` (batched as `length_batches` batches them)."""
    lengths = np.array([e.n_tokens for e in examples])
    return float(sum(forward_flops(profile, len(g), int(lengths[g].max())) for g in batch_groups(lengths, batch)))
