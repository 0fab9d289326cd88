"""Per-example gradients over the trainable (LoRA) parameters, three ways, all giving the same numbers:

- `vmap`: torch.func `vmap(grad(loss))` over `functional_call`: one vectorised pass for a whole micro-batch.
- `hooks`: one ordinary batched backward; each trainable Linear's per-example weight gradient is rebuilt from its
  saved input and output gradient, Σ_t g_t x_tᵀ (the per-layer trick of Goodfellow 2015 / Opacus). It needs every
  trainable parameter to be a bias-free Linear weight, which LoRA adapters are.
- `loop`: one backward pass per example, the baseline the other two are measured against (bench/pergrad.py).

Each example's loss is its mean response-token cross-entropy. Batches are right-padded; under causal attention the
real tokens never see the padding and the padding carries no loss, so no attention mask is needed and the
gradients are exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from ..data import Example, collate
from ..errors import UserError
from ..flops import profile_from_model, train_step_flops
from ..loss import row_mean_loss
from .forward import length_batches

METHODS = ("hooks", "vmap", "loop")


def trainable(model) -> dict[str, torch.nn.Parameter]:
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise UserError("per-example gradients need trainable parameters (LoRA adapters); none are trainable")
    return params


def dimension(model) -> int:
    return sum(p.numel() for p in trainable(model).values())


def _mean_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy per row of a [b, s, V] batch (budgetune.loss)."""
    return row_mean_loss(logits, labels)


@contextmanager
def _eager_attention(model):
    """vmap has no batching rule for the fused CPU attention backward (it falls back to a slow per-row loop), so the
    vectorised path runs the model's eager attention, which is plain batched matmuls."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    before = getattr(base.config, "_attn_implementation", None)
    if before not in (None, "eager") and hasattr(base, "set_attn_implementation"):
        base.set_attn_implementation("eager")
    try:
        yield
    finally:
        if before not in (None, "eager") and hasattr(base, "set_attn_implementation"):
            base.set_attn_implementation(before)


def per_example_grads(model, examples: list[Example], *, batch_size: int = 8,
                      method: str = "hooks") -> Iterator[tuple[np.ndarray, torch.Tensor, float]]:
    """Yield (indices, gradients [b, D] in `trainable(model)` order, FLOPs) micro-batch by micro-batch."""
    if method not in METHODS:
        raise UserError(f"per-example gradient method '{method}' is not known; use one of {', '.join(METHODS)}")
    params = trainable(model)
    if method == "hooks" and not _hookable(model, params):
        method = "vmap"
    profile = profile_from_model(model)
    was_training = model.training
    model.eval()  # no dropout: scores must not depend on a random mask
    try:
        if method == "loop":
            for i, e in enumerate(examples):
                batch = collate([e], 0)
                yield np.array([i]), _loop_one(model, params, batch), train_step_flops(profile, 1, e.n_tokens)
            return
        step = _vmap_batch if method == "vmap" else _hooks_batch
        ctx = _eager_attention(model) if method == "vmap" else _null()
        with ctx:
            for idx, batch in length_batches(examples, batch_size, "per-example gradients"):
                b, s = batch["input_ids"].shape
                extra = 2.0 * b * s * sum(p.numel() for p in params.values()) if method == "hooks" else 0.0
                yield idx, step(model, params, batch), train_step_flops(profile, b, s) + extra
    finally:
        if was_training:
            model.train()


@contextmanager
def _null():
    yield


def _loop_one(model, params, batch) -> torch.Tensor:
    for p in params.values():
        p.grad = None
    loss = _mean_ce(model(input_ids=batch["input_ids"]).logits, batch["labels"])[0]
    grads = torch.autograd.grad(loss, list(params.values()))
    return torch.cat([g.reshape(-1) for g in grads])[None]


def _vmap_batch(model, params, batch) -> torch.Tensor:
    from torch.func import functional_call, grad, vmap

    frozen = {n: p.detach() for n, p in params.items()}

    def loss(theta, ids, labels):
        logits = functional_call(model, theta, args=(), kwargs={"input_ids": ids[None]}).logits
        return _mean_ce(logits, labels[None])[0]

    grads = vmap(grad(loss), in_dims=(None, 0, 0))(frozen, batch["input_ids"], batch["labels"])
    return torch.cat([grads[n].reshape(grads[n].shape[0], -1) for n in params], dim=1)


def _hookable(model, params) -> bool:
    owners = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    return all(name in owners for name in params)  # a trainable bias or non-Linear weight is not covered


def _hooks_batch(model, params, batch) -> torch.Tensor:
    modules = {f"{n}.weight": m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    inputs: dict[str, torch.Tensor] = {}
    outgrads: dict[str, torch.Tensor] = {}
    handles = []

    def forward_hook(name):
        def hook(module, args, output):
            inputs[name] = args[0].detach()
            output.register_hook(lambda g: outgrads.__setitem__(name, g.detach()))
        return hook

    for name in params:
        handles.append(modules[name].register_forward_hook(forward_hook(name)))
    try:
        logits = model(input_ids=batch["input_ids"]).logits
        per_example = _mean_ce(logits, batch["labels"])
        # Examples do not interact in a forward pass, so the gradient of the sum holds each one's gradient apart.
        torch.autograd.grad(per_example.sum(), list(params.values()))
    finally:
        for h in handles:
            h.remove()
    b = batch["input_ids"].shape[0]
    return torch.cat([torch.einsum("bto,bti->boi", outgrads[n], inputs[n]).reshape(b, -1) for n in params], dim=1)
