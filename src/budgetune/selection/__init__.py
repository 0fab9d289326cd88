"""Data selection under a budget: score the pool (scores + their FLOPs), order it with a strategy, take what the
budget pays for, and charge the scoring to the ledger's `selection` phase.

The `selection:` section of a run config (or `budgetune select`) is a dict such as
    {scorer: ifd, budget: "5%", strategy: topk, options: {batch_size: 8}, dedup: 0.8, seed: 0}
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UserError
from ..lazy import lazy

np = lazy("numpy")  # `plan` and the CLI's help list the scorers without importing numpy

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
    "proxy": "score with a cheaper model: K (the model's first K layers and its head) or a model reference",
    "sample": "score this share (or count) of the pool and predict the rest from hashed n-grams (e.g. 0.1)",
    "denoise": "drop answers that do not belong to their prompt before any strategy: true, or the margin "
               "threshold (default 0.0); runs on the proxy when one is set",
    "cost_share": "auto: the most a scorer may cost, as a share of the training FLOPs it leaves (default 0.2)",
    "batch_tokens": "most padded tokens one scoring batch holds (rows × longest row; bounds the scorers' memory; "
                    "default 2048)",
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
    for key in ("scorer",) if selection.get("scorer") == "auto" else ("scorer", "budget"):
        if selection.get(key) in (None, ""):
            raise UserError(f"selection needs '{key}' ({KEYS[key]})")
    options = selection.get("options") or {}
    if not isinstance(options, dict):
        raise UserError("selection 'options' must be a mapping of the scorer's options, e.g. {batch_size: 8}")
    return {**selection, "options": options}


def select(selection: dict, model, pool: list, target: list, ledger=None, *, total_flops: float | None = None,
           batch: int = 8, train_profile=None) -> Selection:
    """Score `pool`, order it, take the budget's worth; charge the scoring FLOPs to `ledger` (if given).

    `scorer: auto` first plans the scorer and fraction for `total_flops` (selection + training) with `batch`
    examples per training step; a plan of no selection returns the whole pool."""
    from . import registry, strategies
    from .dedup import drop_near_duplicates
    from .sizing import parse_budget, take

    s = parse(selection)
    if not pool:
        raise UserError("the selection pool is empty; give training data with at least one example")
    if s["scorer"] == "auto":
        from .auto import plan as make_plan

        chosen_plan = make_plan(pool, target, model, total_flops=total_flops, batch=batch,
                                cost_share=float(s.get("cost_share", 0.2)), train_profile=train_profile)
        if chosen_plan.section is None:
            summary = {"scorer": "none", "strategy": "all", "budget": "100%", "selected": len(pool),
                       "pool": len(pool), "tokens": int(sum(e.n_tokens for e in pool)), "flops": 0.0,
                       "scoring_tokens": 0, "plan": chosen_plan.to_dict()}
            from .protocol import Scores

            return Selection(np.arange(len(pool)), Scores(np.zeros(len(pool)), 0.0), "none", "all", summary)
        import time

        from .auto import predict_seconds

        chosen_plan.predicted_seconds = predict_seconds(chosen_plan.section, model, pool, target)
        keep_keys = {k: s[k] for k in ("dedup", "denoise", "seed", "batch_tokens") if k in s}
        t0 = time.perf_counter()
        result = select({**chosen_plan.section, **keep_keys}, model, pool, target, ledger)
        result.summary["plan"] = {**chosen_plan.to_dict(), "measured_scoring_seconds": time.perf_counter() - t0}
        return result
    budget = parse_budget(s["budget"])  # before any FLOPs are spent
    scorer = registry.make(str(s["scorer"]), s["options"])
    if getattr(registry.get(scorer.name), "NEEDS_TARGET", False) and not target:
        raise UserError(f"scorer '{scorer.name}' needs target examples, but the target set is empty; give --target "
                        f"data (or a held-out split)")
    if scorer.needs_model and model is None:
        raise UserError(f"scorer '{scorer.name}' needs a model to run; pass a model (or use "
                        f"{registry.model_free()})")
    from .cheap import score_cheaply
    from .forward import token_cap

    with token_cap(s.get("batch_tokens")):
        scores = score_cheaply(scorer, model, pool, target, s)
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
               "scoring_tokens": int(scores.tokens), **{k: scores.meta[k] for k in ("proxy", "extrapolation",
                                                                                   "denoise") if k in scores.meta}}
    return Selection(chosen, scores, scorer.name, strategy, summary)


def plan_inputs(cfg) -> dict:
    """What `scorer: auto` plans against, from a run config: the FLOP budget and the examples per step."""
    return {"total_flops": cfg.budget.max_flops, "batch": cfg.train.micro_batch_size * cfg.train.grad_accum}


def apply(selection: dict, model, tokenizer, split, ledger, cfg=None) -> list:
    """The selected training subset of `split.train` (the training loop's entry point); charges the ledger.

    Scorers see `split.scoring` (the dev part of the held-out data), never the test part the run reports. With a
    run config, `auto` plans against its FLOP budget and the plan (with its reasons) goes to
    RUN_DIR/selection_plan.json."""
    total = batch = None
    if cfg is not None:
        total = cfg.budget.max_flops
        batch = cfg.train.micro_batch_size * cfg.train.grad_accum
    result = select(selection, model, split.train, split.scoring, ledger, total_flops=total, batch=batch or 8)
    if cfg is not None and cfg.out and "plan" in result.summary:
        from pathlib import Path

        from .. import atomic

        atomic.write_json(Path(cfg.out) / "selection_plan.json", result.summary)
    return [split.train[i] for i in result.indices]
