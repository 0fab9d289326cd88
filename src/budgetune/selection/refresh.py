"""Dynamic re-selection: re-score the pool with the model as it is now, when the scores have gone stale.

Scores computed once go stale as the model learns (the survey's static-to-dynamic gap). Re-scoring the whole pool
costs about as much as the first scoring, so the refresher first re-scores a small fixed probe sample, measures
drift as 1 − Spearman rank correlation between the probe's previous and current scores, and re-selects only when
the drift is large enough and the extrapolated cost of a full re-score is a small enough share of what is left to
spend. Every call is recorded in `refresher.history` (and charged to the ledger's `selection` phase).
"""

from __future__ import annotations

import numpy as np

from ..errors import UserError


class Refresher:
    def __init__(self, selection: dict, pool: list, target: list, *, probe_size: int = 64, min_drift: float = 0.1,
                 max_cost_share: float = 0.25, budget=None, reference: np.ndarray | None = None, seed: int = 0):
        from . import parse, registry
        from .sizing import parse_budget

        self.selection = parse(selection)
        parse_budget(self.selection["budget"])
        self.scorer = registry.make(str(self.selection["scorer"]), self.selection["options"])
        if not pool:
            raise UserError("the re-selection pool is empty; give it the training pool")
        if probe_size < 2:
            raise UserError(f"probe_size={probe_size} must be at least 2 to measure a rank correlation")
        self.pool, self.target = list(pool), list(target)
        self.probe = np.sort(np.random.default_rng(seed).choice(len(pool), min(probe_size, len(pool)), replace=False))
        self.min_drift, self.max_cost_share, self.budget = float(min_drift), float(max_cost_share), budget
        self.reference = None if reference is None else np.asarray(reference, dtype=float)[self.probe]
        self.history: list[dict] = []

    def _probe_scores(self, model, ledger):
        scores = self.scorer.score(model, [self.pool[i] for i in self.probe], self.target)
        ledger.charge("selection", scores.flops, scores.tokens)
        return scores

    def take_reference(self, model, ledger) -> None:
        """Score the probe with the model as the run starts (the model the first selection was made with), so the
        first refresh the governor asks for already measures drift instead of only taking its reference."""
        if self.reference is None:
            probe = self._probe_scores(model, ledger)
            self.reference = probe.values
            self.history.append({"probe": len(self.probe), "probe_flops": probe.flops, "drift": None,
                                 "refresh": False, "reason": "reference taken at the start of training"})

    def __call__(self, model, ledger) -> list | None:
        """The new training subset, or None when a refresh is not worth its FLOPs."""
        from scipy.stats import spearmanr

        from . import select

        probe = self._probe_scores(model, ledger)
        full_cost = probe.flops * len(self.pool) / len(self.probe)
        report = {"probe": len(self.probe), "probe_flops": probe.flops, "refresh_flops_estimate": full_cost}
        if self.reference is None:
            self.reference = probe.values
            self.history.append({**report, "drift": None, "refresh": False, "reason": "first probe: reference taken"})
            return None
        rho = spearmanr(self.reference, probe.values).statistic
        drift = 0.0 if not np.isfinite(rho) else float(1.0 - rho)  # constant scores: nothing moved
        left = self.budget.remaining_flops(ledger) if self.budget is not None else None
        scale = left if left is not None else ledger.flops.get("train", 0.0)
        affordable = scale > 0 and full_cost <= self.max_cost_share * scale
        worth = drift >= self.min_drift and affordable
        reason = (f"drift {drift:.3f} {'>=' if drift >= self.min_drift else '<'} {self.min_drift}; full re-score "
                  f"≈{full_cost:.3g} FLOPs is {'within' if affordable else 'over'} {self.max_cost_share:.0%} of "
                  f"{'the remaining budget' if left is not None else 'the training FLOPs so far'} ({scale:.3g})")
        report.update({"drift": drift, "spearman": None if not np.isfinite(rho) else float(rho), "refresh": worth,
                       "reason": reason})
        self.history.append(report)
        if not worth:
            return None
        result = select(self.selection, model, self.pool, self.target, ledger)
        self.reference = result.scores.values[self.probe]
        report["selected"] = len(result.indices)
        report["refresh_flops"] = float(result.scores.flops)
        return [self.pool[i] for i in result.indices]


def make_refresher(selection: dict, pool: list, tokenizer=None, probe_size: int = 64, *, target: list | None = None,
                   **kwargs) -> Refresher:
    """A callable(model, ledger) -> list[Example] | None for the training loop (see Refresher for the options:
    min_drift, max_cost_share, budget, reference, seed). `target` is needed by target-aware scorers."""
    return Refresher(selection, pool, target or [], probe_size=probe_size, **kwargs)
