"""One contract test over every registered training method, on a tiny random-init Llama.

Each method must: lower the loss of a learnable toy batch within a few steps; change only the parameters it says it
trains; keep optimizer state of exactly the size its memory model states; use, in a measured step, the memory its
memory model predicts; and resume exactly from its saved state (read back with weights_only=True).

The tiny model is conftest's 2-layer, 64-dim Llama with a 512-token vocabulary instead of 49,152: with the full
vocabulary the logits are ~95% of every step's time and memory, which would hide the layer terms this test checks
and cost minutes on two shared cores. Memory is measured with the planner's dispatch-mode peak tracker
(planner/trace.py) on real tensors: every storage created during the step is counted until it is freed.
"""

from __future__ import annotations

import io
import json

import pytest
import torch
from conftest import TINY_LLAMA

from budgetune.methods import registry
from budgetune.methods.base import TrainContext, token_loss

TINY = dict(TINY_LLAMA, vocab_size=512)
B, S = 4, 32

# Per method: test options that fit the tiny model, a learning rate for the toy task, and steps.
CASES = {
    "full": ({}, 1e-3, 5),
    "lora": ({"r": 4}, 1e-2, 5),
    "adamw8bit": ({}, 1e-3, 5),
    "qlora": ({"r": 4}, 1e-2, 5),
    "galore": ({"rank": 8, "update_proj_gap": 3}, 1e-2, 5),
    "badam": ({"switch_every": 2}, 3e-3, 5),
    "hift": ({"layers_per_group": 1}, 3e-3, 5),
    "mezo": ({}, 2e-3, 12),
    "lozo": ({"rank": 2, "lazy": 4}, 2e-3, 12),
    "addax": ({"max_fo_len": 24}, 0.1, 6),
    "subzero": ({"rank": 4, "lazy": 4}, 2e-3, 12),
    "peqa": ({}, 3e-2, 5),
    "dqt": ({}, 3e-3, 5),
    "colm": ({"r": 4, "sketch": 8}, 1e-2, 5),
}
DEFAULT_CASE = ({}, None, 6)


@pytest.fixture(scope="module")
def tiny_paths(tmp_path_factory):
    """config.json of the tiny model, and a saved copy of its weights (for methods that load the model themselves)."""
    from budgetune.models import load_model

    root = tmp_path_factory.mktemp("tiny512")
    config = root / "config.json"
    config.write_text(json.dumps(TINY))
    load_model(str(config), seed=0).save_pretrained(root / "weights", safe_serialization=True)
    return str(config), str(root / "weights")


@pytest.fixture(scope="module")
def accelerator():
    from budgetune.precision import make_accelerator

    return make_accelerator("fp32", cpu=True)  # fp32 even after a test that ran under amp_bf16 in this process


def toy_batch(seed: int = 0) -> dict:
    """Each row's second half repeats its first half, and only the second half is scored: learnable by copying.
    One row is shorter (right-padded), so length-dependent methods see both kinds of rows."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, TINY["vocab_size"] - 1, (B, S), generator=g)
    ids[:, S // 2:] = ids[:, : S // 2]
    mask = torch.ones_like(ids)
    mask[0, 20:] = 0
    labels = ids.clone()
    labels[:, : S // 2] = -100
    labels[mask == 0] = -100
    ids[mask == 0] = TINY["pad_token_id"]
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def build(name: str, paths, accelerator, options=None):
    from budgetune.models import load_model

    module = registry.get(name)
    cfg = registry.make_config(name, CASES.get(name, DEFAULT_CASE)[0] if options is None else options)
    if hasattr(module, "load_kwargs"):
        model = load_model(paths[1], **module.load_kwargs(cfg))
    else:
        model = load_model(paths[0], seed=0)
    stepper = module.prepare(model, cfg, TrainContext(accelerator=accelerator, seed=0))
    return module, cfg, stepper


def mean_loss(model, batch) -> float:
    with torch.no_grad():
        total, n = token_loss(model, batch)
    return float(total) / n


def unwrap(stepper):
    return getattr(stepper, "unwrapped", stepper.model)


def tensor_bytes(obj, seen=None) -> int:
    """Bytes of the distinct tensor storages inside nested dicts/lists (shared code books counted once)."""
    seen = set() if seen is None else seen
    if torch.is_tensor(obj):
        key = obj.untyped_storage().data_ptr()
        if key in seen:
            return 0
        seen.add(key)
        return obj.untyped_storage().nbytes()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v, seen) for v in obj)
    return 0


def roundtrip(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def measure_step(stepper, batch, lr) -> int:
    """Peak bytes of all live tensors (weights, states, everything the step allocates) during one step."""
    from budgetune.memory.peak import PeakTracker as _PeakTracker

    tracker = _PeakTracker()
    model = unwrap(stepper)
    for t in list(model.parameters()) + list(model.buffers()) + list(batch.values()):
        tracker.register(t)
    for opt in [getattr(stepper, "optimizer", None)] + list(getattr(stepper, "optimizers", {}).values()):
        inner = getattr(opt, "optimizer", opt)
        for state in getattr(inner, "state", {}).values():
            for v in state.values():
                if torch.is_tensor(v):
                    tracker.register(v)
    perturbation = getattr(getattr(stepper, "spsa", None), "perturbation", None)
    for pool in getattr(perturbation, "_pool", {}).values():  # zeroth order: the fixed pool z is drawn from
        tracker.register(pool)
    for factor in getattr(perturbation, "tensors", list)():  # SubZero: the current window's orthonormal factors
        tracker.register(factor)
    with tracker.mode:
        stepper.step([batch], lr)
    return tracker.peak


@pytest.mark.parametrize("name", registry.names())
def test_method_contract(name, tiny_paths, accelerator):
    from budgetune.memory.spec import spec_from_dict
    from budgetune.memory.terms import Shape

    options, lr, steps = CASES.get(name, DEFAULT_CASE)
    module, cfg, stepper = build(name, tiny_paths, accelerator)
    lr = lr if lr is not None else module.DEFAULT_LR
    batch = toy_batch()
    model = unwrap(stepper)
    loss0 = mean_loss(stepper.model, batch)
    # After a first forward: bitsandbytes repacks 4-bit weights for its CPU kernel on first use (same values).
    before = {n: p.detach().clone() for n, p in model.named_parameters()}

    for _ in range(steps):
        result = stepper.step([batch], lr)
        assert result.flops > 0 and result.tokens == int(batch["attention_mask"].sum())

    # 1. the loss falls on a learnable task
    loss1 = mean_loss(stepper.model, batch)
    assert loss1 < loss0 - 0.01, f"{name}: loss {loss0:.4f} -> {loss1:.4f}"

    # 2. only the parameters the method trains change
    changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    declared = set(stepper.trainable_state_dict())
    assert changed, f"{name}: nothing changed"
    assert changed <= declared, f"{name}: changed outside its trainable set: {sorted(changed - declared)[:5]}"

    spec = spec_from_dict(TINY)
    shape = Shape(micro_batch=B, seq_len=S, precision="fp32")
    if not hasattr(module, "memory"):
        pytest.skip(f"{name} has no memory model yet")
    predicted = module.memory(spec, shape, cfg)

    # 3. the optimizer state holds what the memory model says (HiFT: its offloaded groups included)
    state = stepper.state_dict()
    held = tensor_bytes(state)
    expected = predicted.optimizer + (module.host_bytes(spec, shape, cfg) if hasattr(module, "host_bytes") else 0)
    assert held == pytest.approx(expected, rel=0.02, abs=64), f"{name}: state {held} B, model {expected} B"

    # 4. exact resume: a fresh copy loaded from the saved state takes the same next step
    saved_weights = {k: v.clone() for k, v in stepper.trainable_state_dict().items()}
    saved_state = roundtrip(state)
    _, _, twin = build(name, tiny_paths, accelerator)
    mean_loss(twin.model, batch)  # as the first run began (4-bit weights get the same CPU packing on first use)
    twin.load_trainable_state_dict(saved_weights)
    twin.load_state_dict(saved_state)
    stepper.step([batch], lr)
    twin.step([batch], lr)
    a, b = stepper.trainable_state_dict(), twin.trainable_state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6, rtol=0), f"{name}: resumed run differs at {key}"

    # 5. measured peak memory of a step matches the memory model (which must not under-estimate)
    full_rows = dict(batch, attention_mask=torch.ones_like(batch["attention_mask"]))
    if name == "addax":  # the model's worst case is backprop over all rows: make every row short enough
        full_rows = {k: v[:, : int(cfg.max_fo_len)] for k, v in full_rows.items()}
        shape = Shape(micro_batch=B, seq_len=int(cfg.max_fo_len), precision="fp32", padding=0.0)
        predicted = module.memory(spec, shape, cfg)
    shape = shape.with_(padding=0.0)  # full_rows has no padding: transformers drops its all-ones mask
    predicted = module.memory(spec, shape, cfg)
    peak = measure_step(stepper, full_rows, lr)
    total = predicted.total + (module.host_bytes(spec, shape, cfg) if hasattr(module, "host_bytes") else 0)
    assert 0.75 * total <= peak <= 1.10 * total, f"{name}: measured {peak} B, model {total} B ({peak / total:.2f})"
