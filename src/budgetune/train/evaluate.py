"""Held-out loss: mean response-token cross-entropy over the target set, summed across processes."""

from __future__ import annotations

import torch

from ..data import collate
from ..flops import forward_flops, profile_from_model
from ..methods.base import token_loss


@torch.no_grad()
def heldout_loss(model, examples, *, pad_id: int, batch_size: int, accelerator) -> tuple[float, float, int]:
    """(mean loss over all processes, FLOPs spent by all processes, tokens read by all processes)."""
    unwrapped = accelerator.unwrap_model(model)
    profile = profile_from_model(unwrapped)
    was_training = unwrapped.training
    unwrapped.eval()
    rank, world = accelerator.process_index, accelerator.num_processes
    shard = examples[rank::world]
    loss_sum, count, flops, tokens = 0.0, 0, 0.0, 0
    for i in range(0, len(shard), batch_size):
        batch = collate(shard[i: i + batch_size], pad_id)
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        s, n = token_loss(unwrapped, batch)
        loss_sum += float(s)
        count += n
        b, width = batch["input_ids"].shape
        flops += forward_flops(profile, b, width)
        tokens += int(batch["attention_mask"].sum())
    if was_training:
        unwrapped.train()
    totals = torch.tensor([loss_sum, float(count), flops, float(tokens)], dtype=torch.float64,
                          device=accelerator.device)
    totals = accelerator.reduce(totals, reduction="sum")
    loss_sum, count, flops, tokens = totals.tolist()
    return loss_sum / max(1.0, count), flops, int(tokens)
