"""Data selection under a budget: score the pool (scores + their FLOPs), order it with a strategy, take what the
budget pays for, and charge the scoring to the ledger's `selection` phase.

The `selection:` section of a run config (or `budgetune select`) is a dict such as
    {scorer: ifd, budget: "5%", strategy: topk, options: {batch_size: 8}, dedup: 0.8, seed: 0}
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import UserError

KEYS = {
    "scorer": "scorer name (see `budgetune select --help`)",
    "budget": "5%, 0.05, 200 (examples) or 20000tok (tokens)",
    "strategy": "topk, bottomk, offset, stratified or balanced; unset: the scorer's default",
    "options": "the scorer's options, e.g. {batch_size: 8}",
    "dedup": "drop near-duplicates above this MinHash Jaccard estimate (e.g. 0.8); unset: keep them",
    "offset": "share of the top scores the offset strategy skips (default 0.1)",
    "bins": "score bins of the stratified strategy (default 50)",
    "clusters": "k-means clusters of the balanced strategy when the scorer gives none (default 20)",
    "seed": "seed of tie-breaking and sampling (default 0)",
}


@dataclass
class Selection:
    indices: np.ndarray  # pool positions, in the order they were picked
    scores: object  # protocol.Scores
    scorer: str
    strategy: str
    summary: dict = field(default_factory=dict)


def parse(selection: dict) -> dict:
    """Validate a selection section; one line naming the bad key or value otherwise."""
    if not isinstance(selection, dict):
        raise UserError("the selection section must be a mapping like {scorer: ifd, budget: 5%}")
    unknown = [k for k in selection if k not in KEYS]
    if unknown:
        raise UserError(f"selection has unknown key(s) {', '.join(map(str, unknown))}; known keys: {', '.join(KEYS)}")
    for key in ("scorer", "budget"):
        if selection.get(key) in (None, ""):
            raise UserError(f"selection needs '{key}' ({KEYS[key]})")
    options = selection.get("options") or {}
    if not isinstance(options, dict):
        raise UserError("selection 'options' must be a mapping of the scorer's options, e.g. {batch_size: 8}")
    return {**selection, "options": options}


def select(selection: dict, model, pool: list, target: list, ledger=None) -> Selection:
    """Score `pool`, order it, take the budget's worth; charge the scoring FLOPs to `ledger` (if given)."""
    from . import registry, strategies
    from .dedup import drop_near_duplicates
    from .sizing import parse_budget, take

    s = parse(selection)
    budget = parse_budget(s["budget"])  # before any FLOPs are spent
    if not pool:
        raise UserError("the selection pool is empty; give training data with at least one example")
    scorer = registry.make(str(s["scorer"]), s["options"])
    if getattr(registry.get(scorer.name), "NEEDS_TARGET", False) and not target:
        raise UserError(f"scorer '{scorer.name}' needs target examples, but the target set is empty; give --target "
                        f"data (or a held-out split)")
    if scorer.needs_model and model is None:
        raise UserError(f"scorer '{scorer.name}' needs a model to run; pass a model (or use random, length or dsir)")
    from ..dist import score_across_ranks

    scores = score_across_ranks(scorer, registry.get(scorer.name), model, pool, target)
    if ledger is not None:
        ledger.charge("selection", scores.flops, scores.tokens)
    strategy = str(s.get("strategy") or scorer.default_strategy)
    seed = int(s.get("seed", 0))
    ranked = strategies.order(scores, strategy, seed=seed, offset=float(s.get("offset", 0.1)),
                              bins=int(s.get("bins", 50)), clusters=int(s.get("clusters", 20)))
    if s.get("dedup") not in (None, False, 0):
        ranked = drop_near_duplicates(pool, ranked, float(s["dedup"]))
    lengths = np.array([e.n_tokens for e in pool])
    chosen = take(ranked, lengths, budget)
    if len(chosen) == 0:
        raise UserError(f"scorer '{scorer.name}' ruled out every example; relax its options or use another scorer")
    summary = {"scorer": scorer.name, "strategy": strategy, "budget": str(budget), "selected": len(chosen),
               "pool": len(pool), "tokens": int(lengths[chosen].sum()), "flops": float(scores.flops),
               "scoring_tokens": int(scores.tokens)}
    return Selection(chosen, scores, scorer.name, strategy, summary)


def apply(selection: dict, model, tokenizer, split, ledger) -> list:
    """The selected training subset of `split.train` (the training loop's entry point); charges the ledger."""
    result = select(selection, model, split.train, split.target, ledger)
    return [split.train[i] for i in result.indices]
