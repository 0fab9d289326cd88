"""STAFF (Zhang et al. 2025, "Speculative Coreset Selection for Task-Specific Fine-tuning", ICLR 2025): a small
model of the target's family scores every example cheaply, the target model verifies those scores on a sample of
each score region, and the budget goes to regions in proportion to how much the target agrees they matter.

1. Speculative score (STAFF §3.1): the effort score S^s_d = ‖∇_φ L(θ_s; d)‖₂ of the small model after a short
   fine-tune on the pool. Here the small model is the target's own first `proxy_layers` decoder layers with its norm
   and head (selection/proxy.py, the layer-skip copy speculative decoding uses) or any `proxy` model reference
   sharing the tokenizer, and φ are LoRA adapters on it (per-example gradients by the vectorised path, pergrad.py).
2. Regions (STAFF §3.2): K regions of equal width over the range of S^s.
3. Verification: `verify` examples drawn at random from each region are scored on the target model the same way
   (S^t, LoRA adapters on a copy of the target); region i's verification score is V_i = Σ S^t / Σ S^s over its
   sample.
4. Allocation: a budget of m examples gives region i about m·V_i/Σ V (capped at the region's size, the rest shared
   out again), drawn at random inside the region: regions the target finds harder than the proxy thought get more,
   easy regions keep some coverage. The order every budget takes a prefix of is built by selection/allocate.py.

FLOPs on the ledger: the proxy's warm-up and per-example gradients over the pool, the target's per-example gradients
over the verification sample, and the gradient norms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import UserError
from .. import pergrad, warmup
from ..allocate import order_scores, weighted_order
from ..protocol import Scores
from ..scaffold import scorer

NAME = "staff"
NEEDS_MODEL = True
DEFAULT_STRATEGY = "topk"  # the scores already encode STAFF's region allocation

AUTO = False  # not an `auto` candidate: the survey benchmark (docs/benchmarks/survey_systems.md) found it no
# better than a random subset at equal total FLOPs, so its cost model prices it (predict_seconds) but auto never picks it


def longest(examples, n: int) -> list:
    """The n longest examples: no n of them cost more per-example gradients (sorted into batches, each batch is at
    least as long, position by position; under a token cap longer rows also split sooner)."""
    return sorted(examples, key=lambda e: e.n_tokens)[max(0, len(examples) - n):]


def predicted_work(model, pool, target, config):
    """An upper bound: the proxy's warm-up (one LoRA copy) and its gradient norms over the pool are exact, but which
    examples the target verifies depends on the regions the proxy's scores fall in, so the verification is priced
    as `regions` × `verify` of the pool's longest examples (one more LoRA copy): exact when that many are
    verified and they are the longest; on the tiny test pool within 1.2× of the charge (measured 1.014×). The
    layer-skip proxy is built (a weight copy, no floating-point work) to read its shapes."""
    from ..costs import Work, adapter_dim, pergrad_flops
    from ..proxy import proxy_for

    small, _ = proxy_for(model, config.proxy)
    work = Work(copies=2)
    for m, examples, steps in ((small, pool, config.warmup_steps),
                               (model, longest(pool, config.regions * config.verify), None)):
        lora = warmup.lora_profile(m)
        dim = pergrad.dimension(m) if hasattr(m, "peft_config") else adapter_dim(m)
        work = work + Work(forward=2.0 * dim * len(examples), train=pergrad_flops(lora, examples, config.batch_size, dim))
        if steps is not None:
            work = work + Work(train=warmup.planned_flops(lora, pool, steps=steps, batch_size=config.batch_size,
                                                          seed=config.seed))
    return work


@dataclass(kw_only=True)
class Config:
    proxy: str = "layers:4"  # the small model: layers:K (the target's first K layers) or a model reference
    regions: int = 10  # K score regions of equal width
    verify: int = 4  # examples per region scored on the target model
    warmup_steps: int = 4  # AdamW steps fine-tuning the small model on the pool before its effort scores
    lr: float = 1e-3
    batch_size: int = 8  # examples per vectorised gradient pass
    seed: int = 0

    def __post_init__(self):
        if self.regions < 1 or self.verify < 1 or self.warmup_steps < 0 or self.batch_size < 1:
            raise UserError(f"{NAME} options need regions >= 1, verify >= 1, warmup_steps >= 0 and batch_size >= 1")


def regions_of(scores: np.ndarray, k: int) -> np.ndarray:
    """Region index 0..k-1 per example: k bins of equal width over [min, max] (the top edge in the last bin)."""
    lo, hi = float(scores.min()), float(scores.max())
    if hi <= lo:
        return np.zeros(len(scores), dtype=np.int64)
    return np.minimum(((scores - lo) / (hi - lo) * k).astype(np.int64), k - 1)


def verification_scores(speculative: np.ndarray, target: dict[int, float], regions: np.ndarray) -> dict[int, float]:
    """V_i = Σ S^t / Σ S^s over each region's verified sample; `target` maps pool index → S^t."""
    out = {}
    for r in np.unique(regions):
        sample = [i for i in target if regions[i] == r]
        spec = sum(float(speculative[i]) for i in sample)
        out[int(r)] = sum(target[i] for i in sample) / spec if spec > 0 else 0.0
    return out


def grad_norms(model, examples, batch_size: int) -> tuple[np.ndarray, float]:
    """‖∇_φ L‖₂ per example over the trainable (LoRA) parameters, and the FLOPs (gradients + 2·D per norm)."""
    norms, flops = np.zeros(len(examples)), 0.0
    dim = pergrad.dimension(model)
    for idx, grads, f in pergrad.per_example_grads(model, examples, batch_size=batch_size):
        norms[idx] = grads.double().norm(dim=1).numpy()
        flops += f + 2.0 * dim * len(idx)
    return norms, flops


@scorer
class Scorer:
    def score(self, model, pool, target) -> Scores:
        from ..proxy import proxy_for

        c = self.config
        small, described = proxy_for(model, c.proxy)
        cost = {"flops": 0.0, "tokens": 0}
        speculative = np.zeros(len(pool))

        def on_checkpoint(ck):
            values, f = grad_norms(ck.model, pool, c.batch_size)
            speculative[:] = values
            cost["flops"] += f
            cost["tokens"] += sum(e.n_tokens for e in pool)

        spent = warmup.run(small, pool, steps=c.warmup_steps, lr=c.lr, batch_size=c.batch_size, seed=c.seed,
                           on_checkpoint=on_checkpoint)
        cost["flops"] += spent
        regions = regions_of(speculative, c.regions)
        rng = np.random.default_rng(c.seed)
        sample = np.concatenate([rng.permutation(np.flatnonzero(regions == r))[: c.verify]
                                 for r in np.unique(regions)])
        verifier = warmup.with_lora(model, seed=c.seed)
        values, f = grad_norms(verifier, [pool[i] for i in sample], c.batch_size)
        cost["flops"] += f
        cost["tokens"] += sum(pool[i].n_tokens for i in sample)
        verified = verification_scores(speculative, dict(zip(sample.tolist(), values.tolist())), regions)
        order = weighted_order(regions, verified, rng=rng)
        return Scores(order_scores(order, len(pool)), cost["flops"], cost["tokens"], groups=regions,
                      meta={"proxy": described, "regions": len(verified), "verified": len(sample),
                            "verification": {str(k): round(v, 4) for k, v in verified.items()}})
