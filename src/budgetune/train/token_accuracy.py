"""Response-token accuracy: the share of held-out response tokens the model predicts exactly (greedy next token,
teacher-forced). It moves with what the fine-tune learned even when free generation drifts, and, unlike F1 of a
generated answer, it is scored on every reference token (the metric TRL's SFTTrainer reports as
`mean_token_accuracy`)."""

from __future__ import annotations

import torch

from ..data import collate
from ..flops import forward_flops, profile_from_model


@torch.no_grad()
def response_token_accuracy(model, examples, *, pad_id: int, batch_size: int = 16, device=None) -> dict:
    """{accuracy, tokens (response tokens scored), flops (forward FLOPs spent), read (tokens read)}."""
    was_training = model.training
    model.eval()
    profile = profile_from_model(model)
    device = device or next(model.parameters()).device
    correct = scored = read = 0
    flops = 0.0
    for i in range(0, len(examples), batch_size):
        batch = {k: v.to(device) for k, v in collate(examples[i: i + batch_size], pad_id).items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
        labels = batch["labels"][:, 1:]
        keep = labels != -100
        correct += int(((logits[:, :-1].argmax(-1) == labels) & keep).sum())
        scored += int(keep.sum())
        b, width = batch["input_ids"].shape
        flops += forward_flops(profile, b, width)
        read += int(batch["attention_mask"].sum())
    if was_training:
        model.train()
    return {"accuracy": correct / scored if scored else None, "tokens": scored, "flops": flops, "read": read}
