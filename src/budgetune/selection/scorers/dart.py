"""DART (Tong et al. 2024, "DART-Math: Difficulty-Aware Rejection Tuning for Mathematical Problem-Solving",
NeurIPS 2024): spend more of the data budget on harder queries. DART-Math's "Prop2Diff" gives each query a number of
training samples proportional to its difficulty (its fail rate under a strong model), where plain rejection sampling
ends up biased toward easy queries; "Uniform" gives every query the same.

Here there is no sampler to ask for more responses, so the budget itself is what is allocated: difficulty is the
example's mean response-token loss under a cheap proxy (`proxy`: the model's first K layers and its head, the
truncated copy selection/proxy.py builds, or a model reference), the pool is cut into `bins` equal-count difficulty
bins, and a budget gives bin b a share ∝ d_b^power, with d_b the bin's mean loss percentile in (0, 1) (a fail rate's
stand-in: a scale-free difficulty). power 1 is Prop2Diff, power 0 is Uniform. Inside a bin, examples come in random
order. The order every budget takes a prefix of comes from selection/allocate.py. FLOPs: one proxy forward of the
pool.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import UserError
from ..allocate import order_scores, weighted_order
from ..forward import token_stats
from ..protocol import Scores
from ..scaffold import scorer

NAME = "dart"
NEEDS_MODEL = True
DEFAULT_STRATEGY = "topk"  # the scores encode the difficulty-aware allocation

AUTO = False  # not an `auto` candidate: the survey benchmark (docs/benchmarks/survey_systems.md) found it no
# better than a random subset at equal total FLOPs, so its cost model prices it (predict_seconds) but auto never picks it


def predicted_work(model, pool, target, config):
    """Exact: one forward pass of the proxy over the pool (selection/costs.py). The layer-skip proxy is built (a
    weight copy, no floating-point work) so its FLOPs are read from the model it really is."""
    from ...flops import profile_from_model
    from ..costs import Work
    from ..forward import forward_pass_flops
    from ..proxy import proxy_for

    scorer_model, _ = proxy_for(model, config.proxy)
    return Work(forward=forward_pass_flops(profile_from_model(scorer_model), pool, config.batch_size))


@dataclass(kw_only=True)
class Config:
    proxy: str = "layers:4"  # what measures difficulty: layers:K (the model's first K layers) or a model reference
    bins: int = 5  # equal-count difficulty bins
    power: float = 1.0  # share of bin b ∝ difficulty^power: 1 Prop2Diff, 0 Uniform
    batch_size: int = 16  # examples per forward pass
    seed: int = 0

    def __post_init__(self):
        if self.bins < 1 or self.batch_size < 1:
            raise UserError(f"{NAME} options need bins >= 1 and batch_size >= 1")
        if self.power < 0:
            raise UserError(f"{NAME} option power={self.power} must be >= 0 (0: the same share for every bin)")


def difficulty_bins(losses: np.ndarray, bins: int) -> tuple[np.ndarray, dict[int, float]]:
    """(bin per example, 0 easiest; bin → mean loss percentile (rank + ½)/n of its examples)."""
    n = len(losses)
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(losses, kind="stable")] = np.arange(n)
    k = min(bins, n)
    which = rank * k // n
    percentile = (rank + 0.5) / n
    return which, {int(b): float(percentile[which == b].mean()) for b in np.unique(which)}


def allocation_order(losses: np.ndarray, bins: int, power: float, rng: np.random.Generator) -> np.ndarray:
    which, difficulty = difficulty_bins(np.asarray(losses, dtype=float), bins)
    return weighted_order(which, {b: d ** power for b, d in difficulty.items()}, rng=rng)


@scorer
class Scorer:
    def score(self, model, pool, target) -> Scores:
        from ..proxy import proxy_for

        c = self.config
        scorer_model, described = proxy_for(model, c.proxy)
        losses, _, flops, tokens = token_stats(scorer_model, pool, batch_size=c.batch_size)
        which, difficulty = difficulty_bins(losses, c.bins)
        order = allocation_order(losses, c.bins, c.power, np.random.default_rng(c.seed))
        return Scores(order_scores(order, len(pool)), flops, tokens, groups=which,
                      meta={"proxy": described, "power": c.power,
                            "bin_difficulty": {str(b): round(d, 4) for b, d in difficulty.items()},
                            "bin_mean_loss": {str(b): round(float(losses[which == b].mean()), 4)
                                              for b in difficulty}})
