"""The plan-time declarations shared by every method that trains all of the model's weights (full fine-tuning,
8-bit AdamW, GaLore): one full step for the FLOP plan and every parameter marked trainable for the trace."""

from __future__ import annotations


def flop_kinds(spec, cfg):
    from ..flop_plan import full_step

    return [full_step(spec)]


def trace_setup(model, cfg, shape):
    for p in model.parameters():
        p.requires_grad_(True)
    return model
