"""A discriminative target filter: a logistic regression over hashed n-grams that tells the dev (target) examples
from the pool, and scores each pool example by its log-odds of "target". No model runs.

The approach of the classifier-based filters that chose GPT-3's web data (Brown et al. 2020, "Language Models are
Few-Shot Learners", appendix A: a logistic regression on hashed features, curated text against raw Common Crawl)
and DCLM's (Li et al. 2024, "DataComp-LM"; a fastText bigram classifier of target-like text against the pool). Read
as positive-unlabelled learning (Elkan & Noto 2008), a classifier of "labelled target" against "unlabelled pool"
ranks the pool as P(target | x) does, though the pool holds some target examples too.

Guards for a dev set of a handful of examples:
- cross-fitting: the pool is cut into `folds`; each fold is scored by a classifier fitted on the dev and the other
  folds, so no pool example is scored by a model that was told it is not target (scored in-sample, every target
  example of the pool would be pushed down as a labelled negative);
- L2 regularisation (`c`, inverse strength) and class weights that give the few dev examples the pool's weight;
- sublinear TF-IDF weighting (fitted on pool and dev text, no labels), so words every example holds count little;
- optionally a rank blend with DSIR's importance weights (`dsir_weight`).

FLOPs (the ledger's `selection` phase), counted as DSIR's are: hashing is not floating point and costs 0. The
TF-IDF weights cost 2 FLOPs per bucket (a log and an add) and 5 per stored feature (log1p, the idf product and the
row norm's square, sum and division). The solver is liblinear's dual coordinate descent for L2 logistic regression
(Yu, Huang & Lin 2011, "Dual coordinate descent methods for logistic and maximum entropy models"): an outer
iteration visits every row once, w·x and the update of w (2 FLOPs each per stored feature, the bias a feature of
its own) plus a one-variable Newton solve, counted as `NEWTON` FLOPs a row. Scoring a fold is w·x again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import UserError
from ..protocol import Scores
from ..scaffold import scorer

NAME = "classifier"
NEEDS_MODEL = False
NEEDS_TARGET = True
DEFAULT_STRATEGY = "topk"
AUTO = True  # scorer 'auto' weighs it (selection/auto.py) by predicted_flops below
# auto's order among the model-free scorers it can afford (first) and the options it runs it with: blended half and
# half with DSIR's ranks. Measured (docs/benchmarks/selection.md): the blend's ranking AUC for the target is at least
# DSIR's on both data sets, the classifier's alone is below DSIR's on the pools the equal-total-FLOP cells train on;
# at equal total FLOPs on chatterbot-corpus the blend's subsets train at least as well as DSIR's.
AUTO_ORDER = 0
AUTO_OPTIONS = {"dsir_weight": 0.5}
MIN_TARGET = 4  # auto uses it from this many dev examples; with fewer, a classifier has next to nothing to fit
NEWTON = 30  # FLOPs a row of the one-variable Newton solve (a few steps of an exp, a log and a division)


@dataclass(kw_only=True)
class Config:
    buckets: int = 2**18  # hashed n-gram features
    ngram: int = 1  # unigrams up to this order
    c: float = 1.0  # inverse L2 regularisation strength of the logistic regression
    folds: int = 5  # cross-fitting folds of the pool (1: fit on the whole pool and score it in-sample)
    idf: bool = True  # sublinear TF-IDF weights (unset: l2-normalised raw counts)
    dsir_weight: float = 0.0  # weight of DSIR's rank in a rank blend with the classifier's (0: classifier only)
    max_iter: int = 100  # solver iterations per fit, the cost model's bound
    seed: int = 0  # seed of the fold assignment

    def __post_init__(self):
        if self.buckets < 2 or self.ngram < 1 or self.c <= 0 or self.folds < 1 or self.max_iter < 1 \
                or not 0 <= self.dsir_weight <= 1:
            raise UserError(f"{NAME} options need buckets >= 2, ngram >= 1, c > 0, folds >= 1, max_iter >= 1 and "
                            f"0 <= dsir_weight <= 1")


def features(examples, config: Config):
    """[examples, buckets] hashed n-gram counts (CSR) of the words DSIR reads (token ids for plain blocks)."""
    from sklearn.feature_extraction.text import HashingVectorizer

    from .dsir import words

    vectorizer = HashingVectorizer(n_features=config.buckets, token_pattern=r"\S+", lowercase=False,
                                   ngram_range=(1, config.ngram), alternate_sign=False, norm=None)
    return vectorizer.transform([" ".join(words(e)) for e in examples])


def _folds(n: int, config: Config) -> np.ndarray:
    folds = min(config.folds, n)
    return np.random.default_rng(config.seed).permutation(n) % folds


def _fit_flops(nnz: int, rows: int, iterations: int) -> float:
    return iterations * (4.0 * (nnz + rows) + NEWTON * rows)


def _flops(counts, n_pool: int, fold: np.ndarray, iterations: list[int], config: Config) -> float:
    nnz = np.diff(counts.indptr)
    pool_nnz, dev_nnz, n_dev = nnz[:n_pool], int(nnz[n_pool:].sum()), len(nnz) - n_pool
    total = 2.0 * config.buckets + 5.0 * int(nnz.sum()) if config.idf else 3.0 * int(nnz.sum())
    for k, it in zip(np.unique(fold), iterations):
        inside = fold == k
        fitted = ~inside if len(np.unique(fold)) > 1 else np.ones_like(inside)
        total += _fit_flops(int(pool_nnz[fitted].sum()) + dev_nnz, int(fitted.sum()) + n_dev, it)
        total += 2.0 * (int(pool_nnz[inside].sum()) + int(inside.sum()))
    return total


def predicted_flops(profile, examples, target=(), config: Config | None = None) -> float:
    """The FLOPs `score` charges when every fit runs `max_iter` iterations (an upper bound of what it charges)."""
    config = config or Config()
    counts = features(list(examples) + list(target), config)
    fold = _folds(len(examples), config)
    total = _flops(counts, len(examples), fold, [config.max_iter] * len(np.unique(fold)), config)
    if config.dsir_weight > 0:
        from .dsir import predicted_flops as dsir_flops

        total += dsir_flops(None, examples)
    return total


def predict_seconds(pool, target) -> float:
    """One timed run on a few examples (after a warm one), scaled by the pool's size: every part of the work
    (hashing, TF-IDF, each fit's passes, scoring) grows with the stored features, which grow with the examples."""
    import time

    few, aim = list(pool[:64]), list(target)
    scorer = Scorer(Config())
    scorer.score(None, few[:8], aim)  # warm: imports and first allocations
    t0 = time.perf_counter()
    scorer.score(None, few, aim)
    return (time.perf_counter() - t0) * max(1.0, (len(pool) + len(aim)) / (len(few) + len(aim)))


@scorer
class Scorer:
    def score(self, model, pool, target) -> Scores:
        from scipy.sparse import vstack
        from sklearn.feature_extraction.text import TfidfTransformer
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import normalize

        c = self.config
        counts = features(list(pool) + list(target), c)
        x = TfidfTransformer(sublinear_tf=True).fit_transform(counts) if c.idf else normalize(counts)
        x = x.tocsr()
        n = len(pool)
        pool_x, dev_x = x[:n], x[n:]
        fold = _folds(n, c)
        values, iterations = np.zeros(n), []
        for k in np.unique(fold):
            inside = fold == k
            fitted = ~inside if len(np.unique(fold)) > 1 else np.ones(n, dtype=bool)
            train_x = vstack([pool_x[fitted], dev_x])
            labels = np.r_[np.zeros(int(fitted.sum())), np.ones(dev_x.shape[0])]
            clf = LogisticRegression(C=c.c, class_weight="balanced", solver="liblinear", dual=True,
                                     max_iter=c.max_iter).fit(train_x, labels)
            iterations.append(int(np.max(clf.n_iter_)))
            values[inside] = clf.decision_function(pool_x[inside])  # log-odds of "target"
        flops = _flops(counts, n, fold, iterations, c)
        meta = {"model_free": True, "folds": len(iterations), "iterations": iterations}
        if c.dsir_weight > 0:
            from scipy.stats import rankdata

            from . import dsir

            weights = dsir.Scorer(dsir.Config()).score(None, pool, target)
            values = (1 - c.dsir_weight) * rankdata(values) / n + c.dsir_weight * rankdata(weights.values) / n
            flops += weights.flops
        return Scores(values, flops, meta=meta)
