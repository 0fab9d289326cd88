"""GREATS (Wang et al. 2024, "GREATS: Online Selection of High-Quality Data for LLM Training in Every Iteration",
NeurIPS 2024): pick, from each candidate batch, the examples whose update most lowers the validation loss by a
Taylor expansion of that loss, with the interaction between examples picked together.

For a step of size η on the picked set S, to second order with the Hessian taken as the identity (GREATS §3.2),
the validation loss falls by η·Σ_{i∈S} g_i·g_val − η²·Σ_{i<j∈S} g_i·g_j, so greedily the next pick maximises
    gain_i = η·g_i·g_val − η²·g_i·Σ_{j∈S} g_j,
where g_i is example i's gradient and g_val the validation (target) gradient. Neither is materialised per example:
both inner products come from ghost inner products layer by layer (GREATS §4): for a linear layer with inputs x_t
and output gradients δ_t, g_i·G = Σ_t δ_itᵀ·G·x_it for the validation gradient G, and
g_i·g_j = Σ_{t,s} (δ_it·δ_js)(x_it·x_js), one batched backward per candidate batch.

Here the pool is cut into candidate batches of `group` examples in a seeded random order (GREATS's online batches),
each batch is ordered greedily, and the score puts every batch's first pick before any second pick (ties by gain),
so a budget of p% takes about p% of every candidate batch, as GREATS's per-iteration selection does. During training
it acts through the re-selection hook (selection/refresh.py, the governor's `refresh`): each refresh re-scores with
the model as it is then. Gradients are over LoRA adapters (the run's own, or fresh ones on a copy, whose B factors
carry the gradient); the caller's model is never changed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...data import collate
from ...errors import UserError
from ...flops import profile_from_model, train_step_flops
from .. import pergrad, warmup
from ..forward import length_batches
from ..protocol import Scores
from ..scaffold import scorer

NAME = "greats"
NEEDS_MODEL = True
NEEDS_TARGET = True
DEFAULT_STRATEGY = "topk"

AUTO = False  # not an `auto` candidate: the survey benchmark (docs/benchmarks/survey_systems.md) found it no
# better than a random subset at equal total FLOPs, so its cost model prices it (predict_seconds) but auto never picks it


def adapter_shapes(model, r: int = 8) -> list[tuple[int, int]]:
    """(out, in) of every trainable LoRA factor the scorer's copy has: a peft model's own, else rank-r A [r, in] and
    B [out, r] on each attention projection (warmup.with_lora)."""
    if hasattr(model, "peft_config"):
        return [tuple(p.shape) for p in pergrad.trainable(model).values()]
    return [s for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)
            and n.rsplit(".", 1)[-1] in warmup.ATTENTION for s in ((r, m.in_features), (m.out_features, r))]


def predicted_work(model, pool, target, config):
    """Exact, not a bound: the candidate batches are the seeded order's consecutive `group`s (not chosen while
    scoring), so the prediction is one LoRA copy, a backward per target batch for the validation gradient, and per
    candidate batch (padded to its longest, no token cap) a backward plus the ghost products (selection/costs.py)."""
    from ..costs import Work
    from ..forward import batch_groups

    lora, shapes = warmup.lora_profile(model), adapter_shapes(model)
    lengths = np.array([e.n_tokens for e in target])
    train = sum(train_step_flops(lora, len(g), int(lengths[g].max())) for g in batch_groups(lengths, config.batch_size))
    lengths = np.array([e.n_tokens for e in pool])[np.random.default_rng(config.seed).permutation(len(pool))]
    for start in range(0, len(pool), config.group):
        b, s = len(lengths[start: start + config.group]), int(lengths[start: start + config.group].max())
        train += train_step_flops(lora, b, s) + ghost_flops(b, s, shapes)
    return Work(train=float(train), copies=1)


@dataclass(kw_only=True)
class Config:
    group: int = 16  # candidate batch size (GREATS picks a share of each such batch)
    lr: float = 1e-3  # η of the Taylor expansion: weight of the interaction term against the validation term
    batch_size: int = 8  # target examples per backward for the validation gradient
    seed: int = 0

    def __post_init__(self):
        if self.group < 2 or self.batch_size < 1:
            raise UserError(f"{NAME} options need group >= 2 and batch_size >= 1")
        if not self.lr > 0:
            raise UserError(f"{NAME} option lr={self.lr} must be positive (the step size η of the expansion)")


def greedy_order(val: np.ndarray, gram: np.ndarray, lr: float) -> tuple[list[int], list[float]]:
    """Greedy picks maximising η·v_i − η²·Σ_{j picked} K_ij; returns the order and each pick's marginal gain."""
    left, order, gains = list(range(len(val))), [], []
    interaction = np.zeros(len(val))
    while left:
        gain = lr * val[left] - lr * lr * interaction[left]
        k = int(np.argmax(gain))
        i = left.pop(k)
        order.append(i)
        gains.append(float(gain[k]))
        interaction += gram[:, i]
    return order, gains


def _linears(model, params) -> dict:
    modules = {f"{n}.weight": m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    missing = [n for n in params if n not in modules]
    if missing:
        raise UserError(f"{NAME} needs every trainable parameter to be a Linear weight (LoRA adapters); "
                        f"{missing[0]} is not")
    return {n: modules[n] for n in params}


def _captured(model, linears: dict, batch: dict, *, reduce: str):
    """One backward with hooks: {name: (inputs [b,t,i], output grads [b,t,o])}, and the parameter gradients of the
    reduced loss (per-example mean cross-entropy, summed or averaged over the batch)."""
    inputs, outgrads, handles = {}, {}, []

    def hook(name):
        def fn(module, args, output):
            inputs[name] = args[0].detach()
            output.register_hook(lambda g: outgrads.__setitem__(name, g.detach()))
        return fn

    for name, m in linears.items():
        handles.append(m.register_forward_hook(hook(name)))
    try:
        per_example = pergrad._mean_ce(model(input_ids=batch["input_ids"]).logits, batch["labels"])
        loss = per_example.sum() if reduce == "sum" else per_example.mean()
        grads = torch.autograd.grad(loss, [m.weight for m in linears.values()])
    finally:
        for h in handles:
            h.remove()
    return {n: (inputs[n], outgrads[n]) for n in linears}, dict(zip(linears, grads))


def ghost_flops(b: int, t: int, shapes: list[tuple[int, int]]) -> float:
    """FLOPs of the ghost products for one candidate batch of b rows × t tokens, per linear (out o, in i): the
    validation term G·x (2·o·i per token) and its dot with δ (2·o), and the pairwise Gram matrices of inputs and
    output gradients over all token pairs (2·(b·t)²·(o + i)) with their elementwise product (2·(b·t)²)."""
    n = b * t
    return sum(n * (2.0 * o * i + 2.0 * o) + 2.0 * n * n * (o + i) + 2.0 * n * n for o, i in shapes)


def ghost_scores(model, linears: dict, val_grad: dict, batch: dict) -> tuple[np.ndarray, np.ndarray]:
    """(g_i·g_val per row, g_i·g_j Gram matrix) of a padded batch by per-layer ghost inner products."""
    captured, _ = _captured(model, linears, batch, reduce="sum")
    b = batch["input_ids"].shape[0]
    val = torch.zeros(b, dtype=torch.float64)
    gram = torch.zeros(b, b, dtype=torch.float64)
    for name, (x, d) in captured.items():
        x, d = x.double(), d.double()
        val += torch.einsum("bto,bto->b", d, x @ val_grad[name].double().t())
        gram += (torch.einsum("ato,bso->abts", d, d) * torch.einsum("ati,bsi->abts", x, x)).sum((2, 3))
    return val.numpy(), gram.numpy()


@scorer
class Scorer:
    def score(self, model, pool, target) -> Scores:
        c = self.config
        lora = warmup.with_lora(model, seed=c.seed)
        lora.eval()  # no dropout: scores must not depend on a random mask
        params = pergrad.trainable(lora)
        linears = _linears(lora, params)
        shapes = [tuple(m.weight.shape) for m in linears.values()]
        profile = profile_from_model(lora)
        flops, tokens = 0.0, 0
        val_grad = {n: torch.zeros_like(m.weight) for n, m in linears.items()}
        for _, batch in length_batches(target, c.batch_size):
            _, grads = _captured(lora, linears, batch, reduce="sum")
            for n, g in grads.items():
                val_grad[n] += g / len(target)
            flops += train_step_flops(profile, *batch["input_ids"].shape)
            tokens += int(batch["attention_mask"].sum())
        order = np.random.default_rng(c.seed).permutation(len(pool))
        position, gain = np.zeros(len(pool)), np.zeros(len(pool))
        for start in range(0, len(pool), c.group):
            rows = order[start: start + c.group]
            batch = collate([pool[i] for i in rows], 0)
            val, gram = ghost_scores(lora, linears, val_grad, batch)
            picks, gains = greedy_order(val, gram, c.lr)
            for k, (p, g) in enumerate(zip(picks, gains)):
                position[rows[p]], gain[rows[p]] = k, g
            bsz, s = batch["input_ids"].shape
            flops += train_step_flops(profile, bsz, s) + ghost_flops(bsz, s, shapes)
            tokens += int(batch["attention_mask"].sum())
        # Every batch's k-th pick before any (k+1)-th; among k-th picks, larger marginal gain first.
        tie = np.argsort(np.argsort(gain)) / max(1, len(pool))
        return Scores(-position + tie, flops, tokens, meta={"group": c.group, "lr": c.lr})
