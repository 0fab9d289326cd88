"""Held-out loss: mean response-token cross-entropy over the target set, summed across processes.

`heldout_losses` keeps each example's loss sum and token count, so two evaluations on the same examples can be
compared pair by pair (governor/noise.py); `heldout_loss` is the plain mean. Examples are batched in length order
(each batch pads to its longest member; sorting cut the padded tokens of the default target set by a quarter), and
the per-example results are put back in the caller's order.
"""

from __future__ import annotations

import torch

from ..data import collate
from ..dist import reduce_or_raise
from ..flops import forward_flops, profile_from_model
from ..loss import next_token_loss
from ..sharding import is_sharded


def _per_example_loss(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sum of next-token cross-entropy over each example's response tokens, each example's count, and how many of
    them the greedy next token gets right (response-token accuracy from the same forward, no extra FLOPs)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    loss, keep = next_token_loss(logits, batch["labels"], reduction="none")
    labels = batch["labels"][:, 1:]
    correct = ((logits[:, :-1].argmax(-1) == labels) & keep).sum(dim=1).double()
    return loss.sum(dim=1).double(), keep.sum(dim=1).double(), correct


@torch.no_grad()
def heldout_losses(model, examples, *, pad_id: int, batch_size: int, accelerator, indices=None) -> dict:
    """Per-example loss sums and token counts over `examples` (or the subset `indices`), over all processes.

    Returns {"loss": mean loss per token, "sums": [...], "counts": [...], "indices": [...], "flops", "tokens",
    "correct" (response tokens whose greedy prediction is right, all examples together)}; sums/counts are in the
    order of `indices` (all examples when None).
    """
    unwrapped = accelerator.unwrap_model(model)
    profile = profile_from_model(unwrapped)
    was_training = unwrapped.training
    unwrapped.eval()
    chosen = list(range(len(examples))) if indices is None else [int(i) for i in indices]
    order = sorted(range(len(chosen)), key=lambda k: (examples[chosen[k]].n_tokens, k))
    rank, world = accelerator.process_index, accelerator.num_processes
    mine: list = order[rank::world]
    real = len(mine)
    if world > 1 and is_sharded(model):  # its forward gathers weights from every rank: run as many as the others
        mine = mine + [None] * (-(-len(order) // world) - real)  # fillers, whose losses are not kept
    device = accelerator.device
    sums = torch.zeros(len(chosen), dtype=torch.float64, device=device)
    counts = torch.zeros(len(chosen), dtype=torch.float64, device=device)
    right = torch.zeros(len(chosen), dtype=torch.float64, device=device)
    flops, tokens = 0.0, 0
    error = None
    try:
        for i in range(0, len(mine), batch_size):
            part = [k for k in mine[i: i + batch_size] if k is not None]
            fillers = len(mine[i: i + batch_size]) - len(part)
            batch = collate([examples[chosen[k]] for k in part] + [examples[chosen[order[0]]]] * fillers, pad_id)
            batch = {k: v.to(device) for k, v in batch.items()}
            s, n, c = _per_example_loss(unwrapped, batch)
            if part:
                where = torch.tensor(part, device=device)
                sums[where], counts[where], right[where] = s[: len(part)], n[: len(part)], c[: len(part)]
            b, width = batch["input_ids"].shape
            flops += forward_flops(profile, b, width)
            tokens += int(batch["attention_mask"][: len(part)].sum())
    except Exception as e:  # noqa: BLE001 -- carried by the reduction below, so no rank waits for a failed one
        error = e
    if was_training:
        unwrapped.train()
    flops, tokens = reduce_or_raise([flops, float(tokens)], error, "held-out evaluation", device=device)
    if world > 1:
        sums = accelerator.reduce(sums, reduction="sum")
        counts = accelerator.reduce(counts, reduction="sum")
        right = accelerator.reduce(right, reduction="sum")
    sums_l, counts_l = sums.tolist(), counts.tolist()
    return {"loss": sum(sums_l) / max(1.0, sum(counts_l)), "sums": sums_l, "counts": counts_l, "indices": chosen,
            "flops": flops, "tokens": int(tokens), "correct": float(right.sum())}

def heldout_loss(model, examples, *, pad_id: int, batch_size: int, accelerator) -> tuple[float, float, int]:
    """(mean loss over all processes, FLOPs spent by all processes, tokens read by all processes)."""
    r = heldout_losses(model, examples, pad_id=pad_id, batch_size=batch_size, accelerator=accelerator)
    return r["loss"], r["flops"], r["tokens"]
