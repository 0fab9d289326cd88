"""Scoring a pool across processes: each rank scores a strided share where a scorer's score of an example
depends on that example alone, and the shares are gathered (the one place selection meets torch.distributed)."""

from __future__ import annotations

from ..dist import rank, reduce_or_raise, world


def score_across_ranks(scorer, module, model, pool: list, target: list):
    """A scorer's Scores over the whole pool, each rank scoring a strided share when the scorer says its score of
    an example depends on that example alone (module.PER_EXAMPLE); FLOPs and tokens are summed over ranks.
    Other scorers run whole on every rank (the same result everywhere), and the ledger is charged for every rank
    that ran them: N processes spent N times one scoring."""
    from ..sharding import is_sharded

    if world() == 1:
        return scorer.score(model, pool, target)
    # A sharded model's forward needs every rank in step: each scores the whole pool then.
    if not getattr(module, "PER_EXAMPLE", False) or (model is not None and is_sharded(model)):
        scores = scorer.score(model, pool, target)
        scores.flops, scores.tokens = scores.flops * world(), scores.tokens * world()
        scores.meta = {**scores.meta, "ranks_scoring_the_whole_pool": world()}
        return scores
    import numpy as np
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    if isinstance(model, DistributedDataParallel):
        model = model.module  # DDP's forward syncs buffers, a collective the ranks' unequal shares would mismatch

    from .protocol import Scores

    n, me = world(), rank()
    mine = list(range(me, len(pool), n))
    error, part = None, None
    try:
        part = scorer.score(model, [pool[i] for i in mine], target) if mine else None
    except Exception as e:  # noqa: BLE001 -- raised on every rank below, not left to hang the others
        error = e
    flops = float(part.flops) if part is not None else 0.0
    tokens = float(part.tokens) if part is not None else 0.0
    flops, tokens = reduce_or_raise([flops, tokens], error, f"scoring with '{scorer.name}'")
    local = (mine, None if part is None else part.values.tolist(),
             None if part is None or part.keep is None else part.keep.tolist(), {} if part is None else part.meta)
    gathered = [None] * n
    dist.all_gather_object(gathered, local)
    values = np.zeros(len(pool))
    keep, meta = None, {"ranks": n}
    for idx, vals, kp, m in gathered:
        if vals is None:
            continue
        values[idx] = vals
        for key, v in m.items():  # counts (IFD's dropped examples) add up over the shares
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                meta[key] = meta.get(key, 0) + v
        if kp is not None:
            keep = np.ones(len(pool), dtype=bool) if keep is None else keep
            keep[idx] = kp
    return Scores(values, flops, int(tokens), keep=keep, meta=meta)
