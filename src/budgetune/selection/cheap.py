"""How a scorer is run for a selection section: on the proxy when one is set, on a sample carried to the pool by
the n-gram predictor when `sample` is set, and behind the mismatch filter when `denoise` is set. Every FLOP of it,
proxy, predictor and filter included, lands in the returned Scores (charged to the `selection` phase)."""

from __future__ import annotations

import numpy as np

from ..errors import UserError


def score_cheaply(scorer, model, pool: list, target: list, section: dict):
    from .extrapolate import extrapolate
    from .proxy import proxy_for

    scoring_model, described = (model, "none") if not scorer.needs_model else proxy_for(model, section.get("proxy"))
    sample = section.get("sample")
    if sample not in (None, 0, False):
        try:
            sample = float(sample)
        except (TypeError, ValueError):
            raise UserError(f"selection sample '{sample}' is not a number; give a share like 0.1 or a count") from None
        if sample <= 0:
            raise UserError(f"selection sample {sample} must be positive, e.g. 0.1")
        scores = extrapolate(scorer, scoring_model, pool, target, sample=sample, seed=int(section.get("seed", 0)))
    else:  # under a launcher, ranks score shares of the pool where the scorer allows it
        from . import registry
        from .ranks import score_across_ranks

        scores = score_across_ranks(scorer, registry.get(scorer.name), scoring_model, pool, target)
    if scorer.needs_model:
        scores.meta["proxy"] = described
    denoise = section.get("denoise")
    if denoise not in (None, False):
        _denoise(scores, model, pool, section, denoise)
    return scores


def _denoise(scores, model, pool: list, section: dict, setting) -> None:
    from .noise import keep_matched, mismatch_margin
    from .proxy import proxy_for

    if model is None:
        raise UserError("selection denoise needs a model (or a proxy) to read the answers with; drop --model none")
    try:
        threshold = 0.0 if setting is True or str(setting).lower() == "true" else float(setting)
    except ValueError:
        raise UserError(f"selection denoise '{setting}': give true or a margin threshold such as 0.0") from None
    detector, described = proxy_for(model, section.get("proxy"))
    pool_size = len(pool)
    margin, flops, tokens = mismatch_margin(detector, pool, seed=int(section.get("seed", 0)))
    keep = keep_matched(margin, threshold)
    scores.keep = keep if scores.keep is None else (np.asarray(scores.keep, dtype=bool) & keep)
    scores.flops += flops
    scores.tokens += tokens
    scores.meta["denoise"] = {"threshold": threshold, "dropped": int(pool_size - keep.sum()), "model": described,
                              "flops": flops, "margin": margin.tolist()}
