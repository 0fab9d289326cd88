"""The analytic FLOP count against torch's FlopCounterMode on a real training step."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from budgetune import flops
from budgetune.models import load_model


def _counted(model, batch, *, backward: bool) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        out = model(input_ids=batch, labels=batch)
        if backward:
            out.loss.backward()
    return counter.get_total_flops()


def _eager(path):
    model = load_model(path, seed=0)
    model.config._attn_implementation = "eager"  # FlopCounterMode has no formula for CPU's fused SDPA kernel
    return model


@pytest.mark.parametrize("mode", ["full", "lora", "lora_mlp_only", "full_checkpointing", "forward"])
def test_analytic_flops_match_flop_counter(tiny_config_path, mode):
    model = _eager(tiny_config_path)
    if mode.startswith("lora"):
        from peft import LoraConfig, get_peft_model

        targets = ["gate_proj", "up_proj", "down_proj"] if mode == "lora_mlp_only" else ["q_proj", "v_proj", "o_proj"]
        model = get_peft_model(model, LoraConfig(r=4, target_modules=targets))
    recompute = mode == "full_checkpointing"
    if recompute:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    b, s = 2, 48
    batch = torch.randint(0, 1000, (b, s))
    measured = _counted(model, batch, backward=mode != "forward")
    profile = flops.profile_from_model(model)
    if mode == "forward":
        analytic = flops.forward_flops(profile, b, s)
    else:
        analytic = flops.train_step_flops(profile, b, s, recompute=recompute)
    assert analytic == pytest.approx(measured, rel=0.10), (mode, analytic, measured)


def test_profile_counts_frozen_and_trainable(tiny_model):
    full = flops.profile_from_model(tiny_model)
    assert full.trainable_matmul_params == full.matmul_params == full.input_grad_params
    for p in tiny_model.parameters():
        p.requires_grad_(False)
    frozen = flops.profile_from_model(tiny_model)
    assert frozen.trainable_matmul_params == 0 and frozen.input_grad_params == 0
    assert flops.backward_flops_per_token(frozen, 32) == 0


def test_lora_step_costs_about_two_thirds_of_full(tiny_config_path):
    from peft import LoraConfig, get_peft_model

    model = load_model(tiny_config_path, seed=0)
    full = flops.train_step_flops(flops.profile_from_model(model), 4, 64)
    lora = flops.train_step_flops(flops.profile_from_model(get_peft_model(model, LoraConfig(r=4))), 4, 64)
    assert 0.55 < lora / full < 0.75  # ≈ 4N / 6N, plus the attention terms both share
