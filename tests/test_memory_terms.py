"""The memory terms as pure functions, every registered method's memory model, and the analytic estimate against
the exact trace on tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from budgetune.errors import UserError
from budgetune.memory import terms as T
from budgetune.memory.spec import spec_from_dict
from budgetune.methods import registry

FIXTURES = Path(__file__).parent / "fixtures" / "memory"


def spec(name="llama"):
    return spec_from_dict(json.loads((FIXTURES / f"{name}.json").read_text()), name)


def test_weight_formats():
    n = 64 * 256 * 10
    assert T.weight_bytes(n, "fp32") == 4 * n
    assert T.weight_bytes(n, "bf16") == 2 * n
    assert T.weight_bytes(n, "int8") == n
    # NF4 with double quantisation: 4 bits + 0.127 bit of constants per parameter (QLoRA §3)
    assert T.weight_bytes(n, "nf4") * 8 / n == pytest.approx(4.127, abs=0.001)
    with pytest.raises(UserError):
        T.weight_bytes(n, "fp8e4")


def test_optimizer_terms():
    n = 2048 * 100
    assert T.adam_state_bytes(n, "fp32") == 8 * n
    assert T.adam_state_bytes(n, "bf16") == 4 * n
    assert T.adam_state_bytes(n, "8bit") == 2 * n + 8 * 800  # one fp32 absmax per 256 values, per moment
    assert T.gradient_bytes(n, "bf16") == 2 * n
    assert T.optimizer_step_temp_bytes(n, "fp32") == 4 * n


def test_8bit_adam_state_as_bitsandbytes_allocates_it():
    """The 8-bit term against the states bitsandbytes really allocates (a real CPU step), not its paper's figure."""
    bnb = pytest.importorskip("bitsandbytes")
    import torch

    for n in (2048 * 100, 300_001):
        p = torch.nn.Parameter(torch.randn(n))
        opt = bnb.optim.AdamW8bit([p], min_8bit_size=4096)
        p.grad = torch.randn_like(p)
        opt.step()
        state = opt.state[p]
        real = sum(v.numel() * v.element_size() for k, v in state.items() if k.startswith(("state", "absmax")))
        assert T.adam_state_bytes(n, "8bit") == real


def test_activations_scale_and_shrink():
    s = spec("llama3_8b")
    base = T.Shape(micro_batch=1, seq_len=256, precision="bf16")
    one = T.activation_bytes(s, base)
    assert T.activation_bytes(s, base.with_(micro_batch=4, padding=0.0)) == 4 * one  # linear in the batch (packed)
    assert T.activation_bytes(s, base.with_(attention="eager")) > one  # keeps the s×s matrix
    assert T.activation_bytes(s, base.with_(gradient_checkpointing=True)) < one / 2
    assert T.activation_bytes(s, base, grad_layers=1) == one // s.n_layers
    assert T.activation_bytes(s, base, base_trains=False) < one  # a frozen linear keeps no input
    assert T.logits_bytes(s, base) >= 12 * base.tokens * s.vocab


def test_kv_cache_and_sharding():
    s = spec()
    assert T.kv_cache_bytes(s, 2, 100, "bf16") == 2 * s.n_layers * 2 * 100 * s.n_kv_heads * s.head_dim * 2
    shape = T.Shape(ranks=4, sharding="zero2")
    assert T.shard(shape, weights=400, gradients=400, optimizer=800) == (400, 100, 200)
    assert T.shard(shape.with_(sharding="fsdp"), weights=400, gradients=400, optimizer=800) == (100, 100, 200)


@pytest.mark.parametrize("field, value", [("precision", "fp8"), ("attention", "flash9"), ("sharding", "zero4"),
                                          ("micro_batch", 0), ("seq_len", -1)])
def test_bad_shape(field, value):
    with pytest.raises(UserError):
        T.Shape(**{field: value})


def test_breakdown_total_and_binding_term():
    b = T.MemoryBreakdown(weights=5, gradients=1, optimizer=2, activations=9, other=1)
    assert b.total == 18 and b.binding_term == "activations"
    assert b.to_dict()["total"] == 18


@pytest.mark.parametrize("name", registry.names())
@pytest.mark.parametrize("family", ["llama", "qwen3", "phi3"])
def test_every_method_has_a_memory_model(name, family):
    """Contract: each method module's memory() gives non-negative terms whose total exceeds the stored weights'
    smallest form, and checkpointing never costs memory."""
    module = registry.get(name)
    s = spec(family)
    options = {"target_modules": ",".join(s.linear_names)} if "target_modules" in {
        f.name for f in __import__("dataclasses").fields(module.Config)} else {}
    cfg = registry.make_config(name, options)
    for precision in ("fp32", "amp_bf16", "bf16"):
        shape = T.Shape(micro_batch=2, seq_len=128, precision=precision)
        m = module.memory(s, shape, cfg)
        assert isinstance(m, T.MemoryBreakdown)
        assert all(getattr(m, t) >= 0 for t in T.TERMS)
        assert m.weights > 0 and m.total > m.weights
        ck = module.memory(s, shape.with_(gradient_checkpointing=True), cfg)
        assert ck.total <= m.total


@pytest.mark.parametrize("name", registry.names())
def test_every_method_carries_the_runtime_allowance(name):
    """The plan's fixed runtime allowance (CUDA context, workspaces: --overhead, 512 MiB by default) is added to every
    method's tensor bytes once, whatever the method (SubZero once left it out), and allocator slack adds memory."""
    module, s = registry.get(name), spec("llama")
    cfg = registry.make_config(name, {})
    bare = module.memory(s, T.Shape(micro_batch=2, seq_len=128), cfg).total
    fixed = module.memory(s, T.Shape(micro_batch=2, seq_len=128, overhead_bytes=512 * 2**20), cfg).total
    slack = module.memory(s, T.Shape(micro_batch=2, seq_len=128, fragmentation=0.05), cfg).total
    assert fixed - bare == 512 * 2**20
    assert 0 < slack - bare <= 0.05 * bare + 2


def test_methods_order_as_their_papers_say():
    s = spec("llama3_8b")
    shape = T.Shape(micro_batch=1, seq_len=64, precision="amp_bf16")

    def total(name, **options):
        return registry.get(name).memory(s, shape, registry.make_config(name, options)).total

    assert total("lora") < total("full")
    assert total("qlora") < total("lora")
    assert total("mezo") < total("full")


TRACE_CASES = [("llama", "full", "fp32", False, "sdpa"), ("qwen3", "full", "bf16", False, "sdpa"),
               ("llama", "full", "bf16", True, "eager"), ("qwen3", "lora", "amp_bf16", False, "sdpa"),
               ("gemma", "lora", "bf16", True, "sdpa"), ("phi3", "lora", "fp32", False, "eager"),
               ("gpt_neox", "lora", "amp_bf16", False, "sdpa")]


@pytest.mark.parametrize("family, method, precision, ckpt, attention", TRACE_CASES)
def test_analytic_estimate_within_5_percent_of_trace(family, method, precision, ckpt, attention):
    from budgetune.methods import full, lora
    from budgetune.models import load_config
    from budgetune.planner.trace import trace_step

    s = spec(family)
    shape = T.Shape(micro_batch=2, seq_len=128, precision=precision, gradient_checkpointing=ckpt,
                    attention=attention)
    cfg = full.Config() if method == "full" else lora.Config(r=8, target_modules=s.linear_names)
    estimate = (full if method == "full" else lora).memory(s, shape, cfg).total
    traced = trace_step(load_config(str(FIXTURES / f"{family}.json")), shape, method, cfg).peak
    assert abs(estimate - traced) / traced < 0.05
