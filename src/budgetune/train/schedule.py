"""Warmup-stable-decay learning rate, driven by the share of the budget spent rather than a step count.

A run may be stopped at any moment, so no schedule may assume a fixed horizon (Hu et al. 2024, MiniCPM's WSD):
the rate warms up, holds, and decays only over the last `decay_fraction` of the budget.
"""

from __future__ import annotations


def wsd_lr(peak: float, step: int, *, warmup_steps: int, progress: float, decay_fraction: float,
           min_ratio: float) -> float:
    """Learning rate for optimizer step `step` (0-based) when `progress` (0..1) of the budget is spent."""
    if warmup_steps > 0 and step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    if decay_fraction > 0 and progress > 1.0 - decay_fraction:
        done = min(1.0, (progress - (1.0 - decay_fraction)) / decay_fraction)
        return peak * (1.0 - (1.0 - min_ratio) * done)
    return peak
