"""The fake-tensor tracer: the same peak as real tensors, exact model states, and clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from budgetune.errors import UserError
from budgetune.memory.terms import Shape
from budgetune.planner.trace import trace_step

FIXTURES = Path(__file__).parent / "fixtures" / "memory"


def config(name="llama"):
    from budgetune.models import load_config

    return load_config(str(FIXTURES / f"{name}.json"))


@pytest.mark.parametrize("method, precision, ckpt", [("full", "fp32", False), ("lora", "fp32", True)])
def test_fake_peak_equals_real_tensor_peak(method, precision, ckpt):
    """Counting storages on fake tensors gives what the same step allocates with real CPU tensors (exactly without
    checkpointing; within a few KB with it, where recomputation allocates a few small tensors differently)."""
    from budgetune.methods import lora

    cfg = lora.Config(r=4) if method == "lora" else None
    shape = Shape(micro_batch=2, seq_len=32, precision=precision, gradient_checkpointing=ckpt)
    fake = trace_step(config(), shape, method, cfg)
    real = trace_step(config(), shape, method, cfg, fake=False)
    assert fake.peak == pytest.approx(real.peak, rel=0.002, abs=0 if not ckpt else 4096)
    if not ckpt:
        assert fake.peak == real.peak and fake.breakdown == real.breakdown


def test_model_states_are_exact():
    """Short sequences: full fine-tuning peaks in optimizer.step with fp32 weights, gradients, two moments and
    foreach AdamW's sqrt(v) temporary: 20 bytes per parameter."""
    from budgetune.memory.spec import spec_from_model_name

    n = spec_from_model_name(str(FIXTURES / "llama.json")).n_params
    r = trace_step(config(), Shape(micro_batch=1, seq_len=8, precision="fp32"), "full")
    assert r.phase == "optimizer" and r.n_params == n
    assert r.breakdown.gradients == 4 * n
    assert r.breakdown.weights == pytest.approx(4 * n, abs=1024)  # plus the rotary inv_freq buffer
    assert r.breakdown.optimizer == pytest.approx(8 * n, rel=1e-3)  # plus one step counter per tensor
    assert r.peak == pytest.approx(20 * n, rel=1e-2)


def test_activation_peak_grows_with_sequence():
    small = trace_step(config(), Shape(micro_batch=1, seq_len=64, precision="bf16"), "lora")
    big = trace_step(config(), Shape(micro_batch=1, seq_len=256, precision="bf16"), "lora")
    assert big.breakdown.activations > 3 * small.breakdown.activations
    ckpt = trace_step(config(), Shape(micro_batch=1, seq_len=256, precision="bf16", gradient_checkpointing=True),
                      "lora")
    assert ckpt.peak < big.peak


def test_lora_targets_every_linear_of_an_unknown_layout():
    """Without options the tracer adapts every linear layer in the decoder layers (used for architectures that
    have no analytic model)."""
    r = trace_step(config("gpt_neox"), Shape(micro_batch=1, seq_len=16), "lora", None)
    assert r.breakdown.optimizer > 0


def test_untraceable_method_is_refused():
    with pytest.raises(UserError, match="tracer"):
        trace_step(config(), Shape(), "hift")


@pytest.mark.parametrize("method, precision, ckpt", [
    ("badam", "amp_bf16", False), ("badam", "fp32", False), ("badam", "amp_bf16", True),
    ("galore", "fp32", False), ("mezo", "amp_bf16", False), ("mezo", "fp32", False)])
def test_method_memory_models_match_their_traces(method, precision, ckpt):
    """Each traced method's analytic memory model is within 10% of its fake-tensor trace on the tiny Llama,
    at a sequence length where activations matter (the 40+ case grid is bench/memory_accuracy.py)."""
    from budgetune.memory.spec import spec_from_model_name
    from budgetune.methods.registry import get, make_config

    spec = spec_from_model_name(str(FIXTURES / "llama.json"))
    shape = Shape(micro_batch=2, seq_len=256, precision=precision, gradient_checkpointing=ckpt)
    cfg = make_config(method, {"rank": 8} if method == "galore" else {})
    traced = trace_step(config(), shape, method, cfg)
    estimate = get(method).memory(spec, shape, cfg)
    assert abs(estimate.total - traced.peak) / traced.peak < 0.10, (estimate.to_dict(), traced.breakdown.to_dict())


def test_badam_trains_one_block_and_mezo_keeps_no_state():
    """BAdam's trace holds Adam moments for one block only; MeZO's holds no gradients and no optimizer state."""
    from budgetune.memory.spec import spec_from_model_name

    spec = spec_from_model_name(str(FIXTURES / "llama.json"))
    shape = Shape(micro_batch=1, seq_len=16, precision="fp32")
    full = trace_step(config(), shape, "full")
    badam = trace_step(config(), shape, "badam")
    assert 0 < badam.breakdown.optimizer <= 8 * spec.layer_params * 1.01 < full.breakdown.optimizer
    mezo = trace_step(config(), shape, "mezo")
    assert mezo.breakdown.gradients == 0 and mezo.breakdown.optimizer == 0
    assert mezo.peak < badam.peak < full.peak


@pytest.mark.slow
def test_llama3_8b_traces_and_matches_the_estimate():
    """The issue's scale: a Llama-3-8B-shaped config traces on this CPU (about half a minute)."""
    from budgetune.memory.spec import spec_from_model_name
    from budgetune.methods import full

    spec = spec_from_model_name(str(FIXTURES / "llama3_8b.json"))
    shape = Shape(micro_batch=1, seq_len=1024, precision="amp_bf16")
    r = trace_step(config("llama3_8b"), shape, "full")
    assert r.n_params == spec.n_params
    assert abs(full.memory(spec, shape, full.Config()).total - r.peak) / r.peak < 0.05


def test_attention_path_transformers_lacks_is_a_clear_error():
    """transformers builds Gemma-2 with eager attention only: the tracer says so and what to use instead."""
    with pytest.raises(UserError, match="--attention eager"):
        trace_step(config("gemma2"), Shape(micro_batch=1, seq_len=16, attention="sdpa"), "lora")
    assert trace_step(config("gemma2"), Shape(micro_batch=1, seq_len=16, attention="eager"), "lora").peak > 0


@pytest.mark.parametrize("method, ckpt", [("full", False), ("lora", False), ("lora", True)])
def test_gemma2_soft_capping_terms_match_the_trace(method, ckpt):
    """Gemma-2's tanh soft-capping keeps one logits-sized and (eager) one s×s tensor per layer more than Llama's
    path; the analytic terms must follow the trace, with and without checkpointing."""
    from budgetune.memory.spec import spec_from_model_name
    from budgetune.methods.registry import get, make_config

    spec = spec_from_model_name(str(FIXTURES / "gemma2.json"))
    shape = Shape(micro_batch=2, seq_len=128, precision="amp_bf16", gradient_checkpointing=ckpt, attention="eager")
    cfg = make_config(method, {"r": 4, "target_modules": spec.linear_names} if method == "lora" else {})
    traced = trace_step(config("gemma2"), shape, method, cfg)
    estimate = get(method).memory(spec, shape, cfg)
    assert abs(estimate.total - traced.peak) / traced.peak < 0.03, (estimate.to_dict(), traced.breakdown.to_dict())
