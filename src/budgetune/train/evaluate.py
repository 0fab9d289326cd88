"""Held-out loss: mean response-token cross-entropy over the target set, summed across processes."""

from __future__ import annotations

import torch

from ..data import collate
from ..dist import reduce_or_raise
from ..flops import forward_flops, profile_from_model
from ..methods.base import token_loss
from .sharding import is_sharded


@torch.no_grad()
def heldout_loss(model, examples, *, pad_id: int, batch_size: int, accelerator) -> tuple[float, float, int]:
    """(mean loss over all processes, FLOPs spent by all processes, tokens read by all processes)."""
    unwrapped = accelerator.unwrap_model(model)
    profile = profile_from_model(unwrapped)
    was_training = unwrapped.training
    unwrapped.eval()
    rank, world = accelerator.process_index, accelerator.num_processes
    shard = examples[rank::world]
    real = len(shard)
    if world > 1 and is_sharded(model):  # its forward gathers weights from every rank: run as many as the others
        shard = shard + examples[:1] * (-(-len(examples) // world) - real)  # a filler whose loss is masked out
    loss_sum, count, flops, tokens = 0.0, 0, 0.0, 0
    error = None
    try:
        for i in range(0, len(shard), batch_size):
            batch = collate(shard[i: i + batch_size], pad_id)
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            fillers = max(0, i + batch["input_ids"].shape[0] - real)
            if fillers:
                batch["labels"][-fillers:] = -100
            s, n = token_loss(unwrapped, batch)
            loss_sum += float(s)
            count += n
            b, width = batch["input_ids"].shape
            flops += forward_flops(profile, b, width)
            tokens += int(batch["attention_mask"][: b - fillers].sum())
    except Exception as e:  # noqa: BLE001 -- carried by the reduction below, so no rank waits for a failed one
        error = e
    if was_training:
        unwrapped.train()
    loss_sum, count, flops, tokens = reduce_or_raise([loss_sum, float(count), flops, float(tokens)], error,
                                                     "held-out evaluation", device=accelerator.device)
    return loss_sum / max(1.0, count), flops, int(tokens)
