"""What the next optimizer step will cost, known before it runs, so the loop never starts a step that the FLOP
budget cannot pay for: the first step after a start or a resume included.

Every built-in stepper prices its next step with the same analytic profile it charges (`stepper.cost(micro)`), so
the estimate is the charge. A plugin stepper without `cost()` is priced from its previous step (linear in tokens,
and in sequence length when sequences grow: the attention term) and, for its first step, as a full fine-tuning step
with checkpoint recompute, the most a first-order step spends.
"""

from __future__ import annotations

import torch

from ..flops import train_step_flops


def next_step_flops(stepper, micro: list[dict], accelerator, last_step, shape: tuple[float, float]) -> float:
    """FLOPs of the step about to run on `micro`, summed over processes."""
    cost = getattr(stepper, "cost", None)
    if cost is None:
        if last_step is not None:
            flops, (tokens, longest) = last_step
            return flops * (shape[0] / tokens) * max(1.0, shape[1] / longest)
        local = sum(train_step_flops(_full_profile(stepper.model), *mb["input_ids"].shape, recompute=True)
                    for mb in micro)
    else:
        local = float(cost(micro))
    if accelerator.num_processes > 1:
        local = float(accelerator.reduce(torch.tensor([local], dtype=torch.float64, device=accelerator.device),
                                         "sum")[0])
    return local


def _full_profile(model):
    from ..flop_profile import profile_with

    inner = model.module if hasattr(model, "module") else model
    return profile_with(inner, {n for n, _ in inner.named_parameters()})
