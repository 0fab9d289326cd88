"""Memory on the batches the loop really runs: right-padded by budgetune.data.collate, with an attention mask, which
takes transformers' masked SDPA path (K/V expanded to every head, an additive mask kept per layer).

Expected values come from a real-tensor measurement (the CPU allocator's own records, memory/measure.py, of the
real stepper's step) and from hand arithmetic of what the masked path adds; each test fails if the mask and the
padding were not modelled (the unmasked model is shown to miss the measurement)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from budgetune.memory.terms import Shape

FIXTURE = Path(__file__).parent / "fixtures" / "memory" / "llama.json"  # GQA: 4 heads, 2 KV heads, 64 dims
B, S = 2, 256


def _config():
    from budgetune.models import load_config

    return load_config(str(FIXTURE))


def _spec():
    from budgetune.memory.spec import spec_from_model_name

    return spec_from_model_name(str(FIXTURE))


def test_padded_batch_is_the_loops_collate():
    from budgetune.planner.trace import padded_batch

    batch = padded_batch(Shape(micro_batch=4, seq_len=100, padding=0.3))
    mask = batch["attention_mask"]
    assert mask.shape == (4, 100) and int(mask[0].sum()) == 100  # the longest row sets the width
    assert abs(1 - int(mask.sum()) / mask.numel() - 0.3) < 0.01
    assert bool((batch["labels"][mask == 0] == -100).all())
    assert Shape(micro_batch=4).masked and not Shape(micro_batch=1).masked and not Shape(micro_batch=4, padding=0).masked


def test_the_mask_path_adds_what_hand_arithmetic_says():
    """Real tensors: a padded batch peaks above the same batch packed by exactly, per layer, K and V expanded from
    2 to 4 heads (2 × 4 B × (64 − 32) × b·s) plus the fp32 additive mask (4 B × b × s²)."""
    from budgetune.planner.trace import trace_step

    s = 128
    packed = trace_step(_config(), Shape(micro_batch=B, seq_len=s, precision="fp32", padding=0.0), "full",
                        fake=False)
    padded = trace_step(_config(), Shape(micro_batch=B, seq_len=s, precision="fp32", padding=0.3), "full",
                        fake=False)
    per_layer = 2 * 4 * (64 - 32) * B * s + 4 * B * s * s
    assert padded.peak - packed.peak == 2 * per_layer == 393_216
    # The share itself does not matter once there is a mask, and fake tensors give the real peak.
    other = trace_step(_config(), Shape(micro_batch=B, seq_len=s, precision="fp32", padding=0.6), "full")
    assert other.peak == padded.peak


def _measured_step(method: str, precision: str, options: dict) -> int:
    """Peak bytes of building the model and running two real steps of the method's own stepper on a collated,
    padded batch (the second in steady state), as the CPU allocator recorded them."""
    from transformers import AutoModelForCausalLM

    from budgetune import precision as P
    from budgetune.memory.measure import allocator_peak
    from budgetune.methods import registry
    from budgetune.methods.base import TrainContext
    from budgetune.planner.trace import padded_batch

    module = registry.get(method)
    cfg = registry.make_config(method, options)
    accelerator = P.make_accelerator(precision)
    batch = padded_batch(Shape(micro_batch=B, seq_len=S, padding=0.3))
    dtype = torch.bfloat16 if P.load_dtype(precision, module, "float32") == "bfloat16" else torch.float32

    def run():
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(_config(), dtype=dtype)
        stepper = module.prepare(model, cfg, TrainContext(accelerator=accelerator, seed=0, precision=precision))
        for _ in range(2):
            stepper.step([batch], 1e-4)

    return max(allocator_peak(run) for _ in range(2))  # the profiler can drop an event; it never adds one


@pytest.mark.parametrize("method, precision, options", [("full", "fp32", {}), ("lora", "amp_bf16", {"r": 8})])
def test_memory_model_matches_the_real_step_on_padded_batches(method, precision, options):
    """The method's memory model for the padded shape is within 2% of the real step and not under it; the same
    model without the mask (a packed batch) under-estimates the real step by more than 4%."""
    from budgetune.methods import registry

    module = registry.get(method)
    cfg = registry.make_config(method, options)
    real = _measured_step(method, precision, options)
    masked = module.memory(_spec(), Shape(micro_batch=B, seq_len=S, precision=precision), cfg).total
    packed = module.memory(_spec(), Shape(micro_batch=B, seq_len=S, precision=precision, padding=0.0), cfg).total
    assert -0.005 <= (masked - real) / real <= 0.02, (masked, real)
    assert (packed - real) / real < -0.04, (packed, real)
