"""CADS (Wan, Zhang & Jin 2025, "Computational Budget Should Be Considered in Data Selection", NeurIPS 2025): data
selection as a bilevel problem, the inner problem training within the compute budget on the selected data, the outer
one choosing the data by the trained model's dev loss; at example level (CADS-E) and source level (CADS-S).

CADS solves it with a probabilistic reparameterisation, a Hessian-free policy-gradient estimator and the inner
problem turned into a penalty. This is a cheaper first-order approximation of the same bilevel structure, stated as
such:
- outer variable: source weights w (a distribution over the pool's sources, the examples' categories);
- inner problem: `inner_steps` LoRA steps on a batch drawn from the mixture w (a copy of the model, so the scores
  see the model the budget buys, not only the starting one); `rounds` alternations in all;
- outer gradient: one-step lookahead. After a step of size η on mixture w, the dev loss changes by
  −η·Σ_s w_s·ḡ_s·g_dev, so ∂/∂w_s ∝ −ḡ_s·g_dev, with ḡ_s the mean per-example gradient of source s and g_dev that
  of the dev set (cosines, so a source's gradient scale does not decide alone); w takes an exponentiated-gradient
  (mirror-descent) step, w_s ∝ w_s·exp(`eta`·cos(ḡ_s, g_dev));
- example level, within a source: cos(g_i, g_dev) at the last round's model.
A budget then takes examples from sources in proportion to w (selection/allocate.py), best-aligned first inside each.
The training budget enters through the inner horizon (rounds × inner_steps steps); CADS's finding that tight budgets
favour easy data is not built in, only what the lookahead measures. During training CADS re-selects through the
re-selection hook the governor already drives (selection/refresh.py, `refresh`): each refresh re-scores the pool with
the model as it is then. Gradients are per-example LoRA gradients by the vectorised path (pergrad.py), projected to
`k` dimensions (projection.py). FLOPs: every round's per-example gradients of pool and dev set, the projections and
cosines, and the inner training steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import UserError
from .. import pergrad, warmup
from ..allocate import order_scores, weighted_order
from ..projection import BlockProjector, FeatureStore, project_stream, unit_rows
from ..protocol import Scores
from ..scaffold import scorer

NAME = "cads"
NEEDS_MODEL = True
NEEDS_TARGET = True
DEFAULT_STRATEGY = "topk"  # the scores encode the source allocation and the order inside each source

AUTO = False  # not an `auto` candidate: the survey benchmark (docs/benchmarks/survey_systems.md) found it no
# better than a random subset at equal total FLOPs, so its cost model prices it (predict_seconds) but auto never picks it


def predicted_work(model, pool, target, config):
    """An upper bound: every round's per-example gradients of pool and dev set, projections and cosines are exact,
    but the inner steps train on batches drawn from the source weights the rounds learn, so each inner step is
    priced as `batch_size` copies of the pool's longest example (the draw is with replacement; no batch costs more).
    One LoRA copy, and one more per inner run (warmup.run copies the adapted model). Exact with rounds=1 or
    inner_steps=0; on the tiny test pool within 1.2× of the charge (measured 1.085×)."""
    from ...flops import train_step_flops
    from ..costs import Work, adapter_dim, pergrad_flops
    from ..forward import batch_groups

    lora = warmup.lora_profile(model)
    dim = pergrad.dimension(model) if hasattr(model, "peft_config") else adapter_dim(model)
    per_round = Work(forward=2.0 * (len(pool) + len(target)) * dim * config.k + 4.0 * len(pool) * config.k
                     + 2.0 * len(target) * config.k,
                     train=pergrad_flops(lora, pool, config.batch_size, dim)
                     + pergrad_flops(lora, target, config.batch_size, dim))
    work = Work(copies=1)
    for _ in range(config.rounds):
        work = work + per_round
    inner_runs = config.rounds - 1 if config.inner_steps > 0 else 0
    if inner_runs:
        top = max(e.n_tokens for e in pool)
        step = sum(train_step_flops(lora, len(g), top) for g in batch_groups([top] * config.batch_size,
                                                                            config.batch_size))
        work = work + Work(train=inner_runs * config.inner_steps * step, copies=inner_runs)
    return work


@dataclass(kw_only=True)
class Config:
    rounds: int = 2  # outer updates of the source weights (each after the inner training of the one before)
    inner_steps: int = 4  # LoRA steps on the current mixture between outer updates (the inner problem's horizon)
    eta: float = 2.0  # step size of the exponentiated-gradient update of the source weights
    k: int = 256  # projection dimension of the per-example gradients
    lr: float = 1e-3  # learning rate of the inner steps
    batch_size: int = 8  # examples per gradient pass and per inner step
    workdir: str = ""  # where the float16 feature files go; empty: a temporary directory
    seed: int = 0

    def __post_init__(self):
        if self.rounds < 1 or self.inner_steps < 0 or self.k < 1 or self.batch_size < 1:
            raise UserError(f"{NAME} options need rounds >= 1, inner_steps >= 0, k >= 1 and batch_size >= 1")
        if not self.eta >= 0:
            raise UserError(f"{NAME} option eta={self.eta} must be >= 0 (0 keeps the sources' starting weights)")


def source_alignment(features: np.ndarray, sources: np.ndarray, dev: np.ndarray) -> dict:
    """cos(mean feature of each source, the dev direction) per source."""
    d = dev / max(np.linalg.norm(dev), 1e-30)
    out = {}
    for s in np.unique(sources):
        g = features[sources == s].mean(axis=0)
        out[s] = float(g @ d / max(np.linalg.norm(g), 1e-30))
    return out


def update_weights(weights: dict, alignment: dict, eta: float) -> dict:
    """One exponentiated-gradient step: w_s ∝ w_s·exp(eta·alignment_s), renormalised."""
    raw = {s: weights[s] * np.exp(eta * alignment[s]) for s in weights}
    total = sum(raw.values())
    return {s: float(v / total) for s, v in raw.items()}


def mixture_batch(pool: list, sources: np.ndarray, weights: dict, size: int, rng: np.random.Generator) -> list:
    """`size` examples drawn with replacement: a source by its weight, then an example of it uniformly."""
    names = list(weights)
    picks = rng.choice(len(names), size=size, p=np.array([weights[s] for s in names]))
    return [pool[int(rng.choice(np.flatnonzero(sources == names[j])))] for j in picks]


@scorer
class Scorer:
    def score(self, model, pool, target) -> Scores:
        c = self.config
        rng = np.random.default_rng(c.seed)
        sources = np.array([str(e.category) for e in pool])
        weights = {s: 1.0 / len(np.unique(sources)) for s in np.unique(sources)}
        cost = {"flops": 0.0, "tokens": 0}
        current = warmup.with_lora(model, seed=c.seed)
        history, aligned = [], np.zeros(len(pool))
        for r in range(c.rounds):
            projector = BlockProjector(pergrad.dimension(current), c.k, seed=c.seed)
            train = FeatureStore(len(pool), c.k, c.workdir or None, f"cads-train-{r}")
            dev = FeatureStore(len(target), c.k, c.workdir or None, f"cads-dev-{r}")
            for examples, store in ((pool, train), (target, dev)):
                stream = pergrad.per_example_grads(current, examples, batch_size=c.batch_size)
                cost["flops"] += project_stream(stream, projector, store)
                cost["tokens"] += sum(e.n_tokens for e in examples)
            features, g_dev = train.read(), dev.read().mean(axis=0)
            alignment = source_alignment(features, sources, g_dev)
            aligned = unit_rows(features) @ (g_dev / max(np.linalg.norm(g_dev), 1e-30))
            cost["flops"] += 4.0 * len(pool) * c.k + 2.0 * len(target) * c.k
            weights = update_weights(weights, alignment, c.eta)
            history.append({s: round(w, 4) for s, w in weights.items()})
            if r < c.rounds - 1 and c.inner_steps > 0:
                batch = mixture_batch(pool, sources, weights, c.inner_steps * c.batch_size, rng)
                holder = {}
                spent = warmup.run(current, batch, steps=c.inner_steps, lr=c.lr, batch_size=c.batch_size,
                                   seed=c.seed + r + 1, on_checkpoint=lambda ck, h=holder: h.setdefault("model", ck.model))
                cost["flops"] += spent
                current = holder["model"]
        order = weighted_order(sources, weights, within=aligned, rng=rng)
        return Scores(order_scores(order, len(pool)), cost["flops"], cost["tokens"],
                      meta={"source_weights": history[-1], "weight_history": history, "rounds": c.rounds})
