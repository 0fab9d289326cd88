"""Budget allocation across strata as a priority order: every prefix of the order gives each stratum a share of the
picks proportional to its weight, until a stratum runs out (its unused share then goes to the others in the same
proportions).

STAFF's region budgets (verification score per region), DART's difficulty-proportional allocation and CADS's source
weights all reduce to this: a budget of n examples takes the order's first n. The sequence is the Sainte-Laguë
divisor method (the next pick goes to the stratum with the smallest (taken + ½)/weight), whose counts after n picks
stay within one of n·wᵢ/Σw for every stratum still open.
"""

from __future__ import annotations

import heapq

import numpy as np


def weighted_order(groups: np.ndarray, weights: dict, within: np.ndarray | None = None,
                   rng: np.random.Generator | None = None) -> np.ndarray:
    """Indices of all examples in pick order. `groups`: stratum id per example; `weights`: stratum id → weight ≥ 0
    (a stratum of weight 0 comes only after every positive one is used up); `within`: per-example priority inside
    its stratum (higher first; random when None)."""
    groups = np.asarray(groups)
    rng = rng or np.random.default_rng(0)
    n = len(groups)
    within = rng.random(n) if within is None else np.asarray(within, dtype=float)
    queues = {}
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        members = members[rng.permutation(len(members))]  # random ties
        queues[g] = list(members[np.argsort(-within[members], kind="stable")])
    positive = [g for g in queues if float(weights.get(g, 0.0)) > 0]
    out: list[int] = []
    heap = [(0.5 / float(weights[g]), i, g) for i, g in enumerate(positive)]
    heapq.heapify(heap)
    taken = dict.fromkeys(queues, 0)
    while heap:
        _, i, g = heapq.heappop(heap)
        out.append(int(queues[g][taken[g]]))
        taken[g] += 1
        if taken[g] < len(queues[g]):
            heapq.heappush(heap, ((taken[g] + 0.5) / float(weights[g]), i, g))
    rest = [m for g in queues if g not in positive for m in queues[g]]
    out.extend(int(m) for m in rng.permutation(np.asarray(rest, dtype=np.int64)))
    return np.asarray(out, dtype=np.int64)


def order_scores(order: np.ndarray, n: int) -> np.ndarray:
    """Scores whose `topk` order is `order`: the first pick scores n, the last 1 (so the selection protocol's
    default strategy reproduces an allocation a scorer already made)."""
    values = np.zeros(n)
    values[np.asarray(order, dtype=np.int64)] = np.arange(n, 0, -1)
    return values
