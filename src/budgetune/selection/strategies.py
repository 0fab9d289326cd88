"""Turn scores into a priority order; a budget then takes the order's prefix (sizing.take).

Every strategy returns a full order, so a budget in examples and one in tokens are served the same way, and the
balanced strategies stay balanced at any prefix length: they deal examples round-robin from strata (score bins or
clusters), which gives each stratum min(its size, an equal share) as CCS allocates (Zheng et al. 2023,
"Coverage-centric Coreset Selection"), without collapsing onto the hardest examples at small budgets.
"""

from __future__ import annotations

import numpy as np

from ..errors import UserError
from .protocol import Scores

STRATEGIES = ("topk", "bottomk", "offset", "stratified", "balanced")


def order(scores: Scores, strategy: str, *, seed: int = 0, offset: float = 0.1, bins: int = 50,
          clusters: int = 20, features: np.ndarray | None = None) -> np.ndarray:
    """Indices of the pool in the order they would be picked; examples the scorer ruled out are left out."""
    values = scores.values
    n = len(values)
    rng = np.random.default_rng(seed)
    if strategy not in STRATEGIES:
        raise UserError(f"selection strategy '{strategy}' is not known; use one of {', '.join(STRATEGIES)}")
    # Random tie-breaking first, then a stable sort: equal scores never favour pool order.
    shuffle = rng.permutation(n)
    if strategy in ("topk", "offset"):
        ranked = shuffle[np.argsort(-values[shuffle], kind="stable")]
        if strategy == "offset":
            if not 0 <= offset < 1:
                raise UserError(f"selection offset {offset} must be in [0, 1): the share of hardest examples skipped")
            skip = round(offset * n)
            ranked = np.concatenate([ranked[skip:], ranked[:skip]])  # the skipped ones only if nothing else is left
    elif strategy == "bottomk":
        ranked = shuffle[np.argsort(values[shuffle], kind="stable")]
    elif strategy == "stratified":
        if bins < 1:
            raise UserError(f"selection bins={bins} must be at least 1")
        edges = np.linspace(values.min(), values.max(), bins + 1)[1:-1]
        ranked = round_robin(np.digitize(values, edges), rng)
    else:
        groups = scores.groups
        if groups is None:
            groups = kmeans_groups(features if features is not None else values[:, None], clusters, seed)
        ranked = round_robin(np.asarray(groups), rng)
    if scores.keep is not None:
        ranked = ranked[np.asarray(scores.keep)[ranked]]
    return ranked


def round_robin(groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Deal one random member of each group per round (groups in random order): every prefix is balanced."""
    members = [rng.permutation(np.flatnonzero(groups == g)) for g in np.unique(groups)]
    rounds = max(len(m) for m in members)
    out = []
    for r in range(rounds):
        for g in rng.permutation(len(members)):
            if r < len(members[g]):
                out.append(members[g][r])
    return np.asarray(out, dtype=np.int64)


def kmeans_groups(features: np.ndarray, clusters: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    if clusters < 1:
        raise UserError(f"selection clusters={clusters} must be at least 1")
    k = min(clusters, len(features))
    return KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(np.asarray(features, dtype=np.float64))
