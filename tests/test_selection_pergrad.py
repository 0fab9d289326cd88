"""Per-example gradients (three paths agree), block-wise projection and float16 feature files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from budgetune.data.examples import chat_example
from budgetune.selection import pergrad, warmup
from budgetune.selection.projection import (
    BlockProjector,
    FeatureStore,
    project_stream,
    unit_rows,
)


@pytest.fixture(scope="module")
def lora_model(tiny_config_path):
    from budgetune.models import load_model

    model = warmup.with_lora(load_model(tiny_config_path, seed=0), r=4)
    torch.manual_seed(0)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)  # a fresh B is zero: A's gradients would vanish and hide mistakes
    return model


@pytest.fixture(scope="module")
def examples(tokenizer):
    pairs = [("Hi", "Hello there, friend."), ("What is 2+2?", "Four."), ("Name a planet.", "Mars is one."),
             ("Why is the sky blue?", "Light scatters off the air, blue the most.")]
    return [chat_example(tokenizer, [{"role": "user", "content": q}, {"role": "assistant", "content": a}], 64)
            for q, a in pairs]


def collect(model, examples, method, batch=3):
    rows = [None] * len(examples)
    flops = 0.0
    for idx, grads, f in pergrad.per_example_grads(model, examples, batch_size=batch, method=method):
        flops += f
        for i, g in zip(idx, grads):
            rows[i] = g
    return torch.stack(rows), flops


def test_vectorised_paths_match_the_loop(lora_model, examples):
    loop, loop_flops = collect(lora_model, examples, "loop")
    assert loop.shape == (len(examples), pergrad.dimension(lora_model))
    assert loop.norm(dim=1).min() > 0
    for method in ("vmap", "hooks"):
        grads, flops = collect(lora_model, examples, method)
        torch.testing.assert_close(grads, loop, rtol=1e-4, atol=1e-6)
        assert flops >= loop_flops  # padding to the longest example in a micro-batch costs extra


def test_per_example_gradients_differ_between_examples(lora_model, examples):
    grads, _ = collect(lora_model, examples, "hooks")
    assert not torch.allclose(grads[0], grads[1])


def test_projection_preserves_inner_products_and_is_reproducible():
    torch.manual_seed(0)
    x = torch.randn(6, 5000)
    p = BlockProjector(5000, 512, seed=3, block=700)  # blocks that do not divide the dimension
    y = p(x)
    assert y.shape == (6, 512)
    torch.testing.assert_close(p(x), y)  # regenerated blocks: same matrix every call
    cos_x = unit_rows(x.numpy()) @ unit_rows(x.numpy()).T
    cos_y = unit_rows(y.numpy()) @ unit_rows(y.numpy()).T
    assert np.abs(cos_x - cos_y).max() < 0.2  # Johnson–Lindenstrauss at k=512
    assert not torch.allclose(BlockProjector(5000, 512, seed=4, block=700)(x), y)
    with pytest.raises(ValueError):
        p(torch.randn(2, 4999))


def test_feature_store_is_a_float16_memmap(tmp_path, lora_model, examples):
    dim = pergrad.dimension(lora_model)
    store = FeatureStore(len(examples), 32, tmp_path, "train")
    stream = pergrad.per_example_grads(lora_model, examples, batch_size=2, method="hooks")
    flops = project_stream(stream, BlockProjector(dim, 32), store, group_rows=3)
    assert isinstance(store.array, np.memmap) and store.array.dtype == np.float16
    assert store.path.stat().st_size == len(examples) * 32 * 2
    features = store.read()
    assert np.all(np.linalg.norm(features, axis=1) > 0)  # every row written, in any group order
    assert flops > 2.0 * len(examples) * dim * 32  # gradients plus projections
    grads, _ = collect(lora_model, examples, "hooks")
    np.testing.assert_allclose(features, BlockProjector(dim, 32)(grads).numpy(), rtol=2e-2, atol=1e-3)


def test_unknown_method(lora_model, examples):
    from budgetune.errors import UserError

    with pytest.raises(UserError, match="method 'ghost'"):
        next(pergrad.per_example_grads(lora_model, examples, method="ghost"))
