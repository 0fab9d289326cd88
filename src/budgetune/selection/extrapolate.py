"""Score a sample, predict the rest: a scorer runs on a random share of the pool and a ridge regression over hashed
word n-grams (scikit-learn's HashingVectorizer + Ridge) and two length features carries its scores to the examples
it did not read. The sample keeps its measured scores; the predictor is judged on a held-out part of the sample
(Spearman ρ, `meta['extrapolation']`) before it is fitted on all of it.

Cost: the scorer's FLOPs on the sample plus the predictor's, counted as 2 FLOPs per non-zero feature per example
for each of the solver's passes (sparse ridge by conjugate gradients) and for the prediction.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

from .protocol import Scores
from .scorers.dsir import words

FEATURES = 2**16
SOLVER_PASSES = 50  # an upper bound of sparse_cg's iterations at the default tolerance here


def features(examples):
    from scipy.sparse import csr_matrix, hstack
    from sklearn.feature_extraction.text import HashingVectorizer

    texts = [" ".join(words(e)) for e in examples]
    hashed = HashingVectorizer(n_features=FEATURES, ngram_range=(1, 2), alternate_sign=False,
                               norm="l2").transform(texts)
    lengths = np.array([[np.log1p(e.n_tokens), np.log1p(e.n_target_tokens)] for e in examples])
    return hstack([hashed, csr_matrix(lengths)]).tocsr()


def _fit(x, y, alpha: float):
    from sklearn.linear_model import Ridge

    return Ridge(alpha=alpha, solver="sparse_cg").fit(x, y)


def extrapolate(scorer, model, pool: list, target: list, *, sample: float, seed: int = 0,
                alpha: float = 1.0) -> Scores:
    """Scores for the whole pool from `scorer` run on `sample` (a share, or a count when > 1) of it."""
    n = len(pool)
    size = int(sample) if sample > 1 else round(sample * n)
    size = min(n, max(size, 16))
    if size >= n:
        return scorer.score(model, pool, target)
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(n, size=size, replace=False))
    measured = scorer.score(model, [pool[i] for i in picked], target)
    x = features(pool)
    y = measured.values
    finite = np.isfinite(y)
    # Out-of-sample check first: fit on 80% of the sample, rank the other 20%.
    order = rng.permutation(size)
    cut = max(1, int(0.8 * size))
    fit_idx, check_idx = order[:cut], order[cut:]
    fit_idx, check_idx = fit_idx[finite[fit_idx]], check_idx[finite[check_idx]]
    rho = None
    if len(check_idx) >= 5 and len(fit_idx) >= 5:
        held = _fit(x[picked[fit_idx]], y[fit_idx], alpha).predict(x[picked[check_idx]])
        rho = float(spearmanr(held, y[check_idx]).statistic)
    model_fit = _fit(x[picked[finite]], y[finite], alpha)
    values = model_fit.predict(x)
    values[picked] = y
    keep = None
    if measured.keep is not None:
        keep = _keep(x, picked, np.asarray(measured.keep, dtype=bool))
    nnz = x[picked].nnz
    flops = measured.flops + 2.0 * nnz * SOLVER_PASSES * 2 + 2.0 * x.nnz  # two fits, then one prediction
    meta = {**measured.meta, "extrapolation": {"sample": size, "pool": n, "spearman_heldout": rho,
                                               "scorer_flops": measured.flops}}
    return Scores(values, flops, measured.tokens, keep=keep, meta=meta)


def _keep(x, picked, kept: np.ndarray) -> np.ndarray:
    """A scorer's ruled-out mask (IFD > 1) carried to the pool by logistic regression on the same features."""
    from sklearn.linear_model import LogisticRegression

    keep = np.ones(x.shape[0], dtype=bool)
    if kept.all() or not kept.any():
        keep[:] = bool(kept.all())
    else:
        keep = LogisticRegression(max_iter=200).fit(x[picked], kept).predict(x).astype(bool)
    keep[picked] = kept
    return keep
