"""S2L (Yang et al. 2024, "SmallToLarge"): loss trajectories of a small proxy model over warm-up checkpoints,
clustered with k-means (scikit-learn); the `balanced` strategy then samples evenly across clusters, so every kind
of learning behaviour is represented. The proxy is the model being tuned unless `proxy` names a smaller one."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import UserError
from .. import warmup
from ..forward import token_stats
from ..protocol import Scores
from ..scaffold import scorer

NAME = "s2l"
NEEDS_MODEL = True
DEFAULT_STRATEGY = "balanced"


def predicted_work(model, pool, target, config):
    """A forward pass before the warm-up, the warm-up (one LoRA copy) and a pass at each checkpoint, and the
    k-means bound the scorer charges (selection/costs.py)."""
    from ...flops import profile_from_model
    from ..costs import Work
    from ..forward import forward_pass_flops

    lora = warmup.lora_profile(model)
    hits = len(warmup.marks(config.warmup_steps, config.checkpoints))
    k = min(config.clusters, len(pool))
    return Work(forward=forward_pass_flops(profile_from_model(model), pool, config.batch_size)
                + hits * forward_pass_flops(lora, pool, config.batch_size) + 2.0 * len(pool) * k * (hits + 1) * 300,
                train=warmup.planned_flops(lora, pool, steps=config.warmup_steps, batch_size=config.batch_size,
                                           seed=config.seed), copies=1)


@dataclass(kw_only=True)
class Config:
    clusters: int = 20  # k-means clusters of trajectories
    checkpoints: int = 2  # warm-up checkpoints after the starting point (trajectory length = checkpoints + 1)
    warmup_steps: int = 8  # AdamW steps of the proxy's warm-up in all
    lr: float = 1e-3
    batch_size: int = 16
    proxy: str = ""  # a smaller model to score with (any `--model` reference); empty: the model itself
    seed: int = 0

    def __post_init__(self):
        if self.clusters < 1 or self.checkpoints < 1 or self.warmup_steps < self.checkpoints:
            raise UserError(f"{NAME} options need clusters >= 1, checkpoints >= 1, warmup_steps >= checkpoints")


@scorer
class Scorer:
    def score(self, model, pool, target) -> Scores:
        from sklearn.cluster import KMeans

        c = self.config
        if c.proxy:
            from ...models import load_model

            model = load_model(c.proxy, seed=c.seed)
        start, _, flops, tokens = token_stats(model, pool, batch_size=c.batch_size)
        trajectory = [start]
        cost = {"flops": flops, "tokens": tokens}

        def on_checkpoint(ck):
            loss, _, f, t = token_stats(ck.model, pool, batch_size=c.batch_size)
            trajectory.append(loss)
            cost["flops"] += f
            cost["tokens"] += t

        spent = warmup.run(model, pool, steps=c.warmup_steps, checkpoints=c.checkpoints, lr=c.lr,
                           batch_size=c.batch_size, seed=c.seed, on_checkpoint=on_checkpoint)
        cost["flops"] += spent
        features = np.stack(trajectory, axis=1)
        k = min(c.clusters, len(pool))
        groups = KMeans(n_clusters=k, n_init=3, random_state=c.seed).fit_predict(features)
        # k-means (Lloyd): 2·n·k·d FLOPs per iteration for the distances; counted at the ceiling of 100
        # iterations × 3 initialisations, an upper bound (it is tiny next to the forward passes anyway).
        cost["flops"] += 2.0 * len(pool) * k * features.shape[1] * 100 * 3
        within = np.random.default_rng(c.seed).random(len(pool))  # S2L samples uniformly inside each cluster
        return Scores(within, cost["flops"], cost["tokens"], groups=groups,
                      meta={"clusters": int(k), "trajectory_length": int(features.shape[1])})
