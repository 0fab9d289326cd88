"""DSIR-style importance weights toward the target (Xie et al. 2023, "Data Selection for Language Models via
Importance Resampling"): bag-of-hashed-n-gram models of the target and of the pool; an example's log weight is
Σ_n-grams log p_target − log p_pool, and sampling by weight without replacement is a Gumbel top-k. No model runs.

The target model is smoothed toward the pool's (a Dirichlet prior, Zhai & Lafferty 2001), not add-α: a target set of
a few dozen examples holds a few hundred n-grams, so α over 10000 buckets would be most of its mass and would give
an n-gram the target never used more probability than the pool gives its rarest ones; the pool's one-off words
(names, typos) then looked target-like. With the prior, an n-gram absent from the target always lowers the weight."""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

import numpy as np

from ...errors import UserError
from ..protocol import Scores
from ..scaffold import scorer

NAME = "dsir"
NEEDS_MODEL = False
NEEDS_TARGET = True
DEFAULT_STRATEGY = "topk"
AUTO = True  # scorer 'auto' weighs it (selection/auto.py) by predicted_flops below
AUTO_ORDER = 1  # auto's order among the model-free scorers it can afford: after the classifier (see its file)


def predicted_flops(profile, examples, target=()) -> float:
    """A dot product over 10000 hashed buckets per example (no model); the target's size does not enter it."""
    return 2.0 * len(examples) * 10000


def predict_seconds(pool, target) -> float:
    """One timed run on a few examples (its fixed part: the log ratios over every bucket) plus the hashing time per
    example, measured on the same few, for the examples beyond them."""
    import time

    few, aim = list(pool[:32]), list(target[:4]) or list(pool[:1])
    scorer = Scorer(Config())
    scorer.score(None, few[:4], aim)  # warm: imports and first allocations
    t0 = time.perf_counter()
    scorer.score(None, few, aim)
    run = time.perf_counter() - t0
    t0 = time.perf_counter()
    hashed_counts(few, 10000, 2)
    per_example = (time.perf_counter() - t0) / len(few)
    return run + per_example * max(0, len(pool) + len(target) - len(few) - len(aim))


_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(kw_only=True)
class Config:
    buckets: int = 10000  # hashed n-gram features (DSIR uses 10000)
    ngram: int = 2  # unigrams up to this order
    smoothing: float = 0.1  # add-α smoothing of the pool's n-gram model
    prior: float = 1000.0  # strength (in n-grams) of the pool model as the target model's Dirichlet prior
    normalize: bool = True  # mean log ratio per n-gram instead of DSIR's sum (see below)
    resample: bool = False  # add Gumbel noise: importance resampling (DSIR) rather than a deterministic top-k
    seed: int = 0

    def __post_init__(self):
        if self.buckets < 2 or self.ngram < 1 or self.smoothing <= 0 or self.prior <= 0:
            raise UserError(f"{NAME} options need buckets >= 2, ngram >= 1, smoothing > 0 and prior > 0")


def words(example) -> list[str]:
    """Words of the conversation (or plain text); token ids when neither is kept."""
    if example.messages:
        text = " ".join(m["content"] for m in example.messages)
    elif example.text:
        text = example.text
    else:
        return [str(t) for t in example.input_ids]
    return _WORD.findall(text.lower())


def hashed_counts(examples, buckets: int, ngram: int, progress: str | None = None):
    """[examples, buckets] n-gram counts as a scipy CSR matrix: memory follows the n-grams the examples hold, not
    examples × buckets (40 kB per example dense at 10000 buckets)."""
    from scipy.sparse import csr_matrix

    from ..forward import progress_bar

    cols, indptr = [], [0]
    bar = progress_bar(len(examples), progress)
    for e in examples:
        w = words(e)
        for n in range(1, ngram + 1):
            cols.extend(zlib.crc32(" ".join(w[i: i + n]).encode("utf-8")) % buckets for i in range(len(w) - n + 1))
        indptr.append(len(cols))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    counts = csr_matrix((np.ones(len(cols), dtype=np.float32), np.array(cols, dtype=np.int64), np.array(indptr)),
                        shape=(len(examples), buckets))
    counts.sum_duplicates()
    return counts


@scorer
class Scorer:
    def score(self, model, pool, target) -> Scores:
        c = self.config
        pool_counts = hashed_counts(pool, c.buckets, c.ngram, "dsir: hashing the pool")
        target_counts = np.asarray(hashed_counts(target, c.buckets, c.ngram).sum(0)).ravel()
        raw = np.asarray(pool_counts.sum(0)).ravel()
        p_pool = (raw + c.smoothing) / (raw.sum() + c.smoothing * c.buckets)
        p_target = (target_counts + c.prior * p_pool) / (target_counts.sum() + c.prior)
        values = pool_counts @ (np.log(p_target) - np.log(p_pool))
        if c.normalize:
            # DSIR sums over an example's n-grams: with a small target set that sum rewards sheer length, so by
            # default the weight is the mean log ratio per n-gram (how target-like the words are).
            values = values / np.maximum(np.asarray(pool_counts.sum(1)).ravel(), 1)
        if c.resample:
            values = values + np.random.default_rng(c.seed).gumbel(size=len(pool))
        # 2 FLOPs per bucket per example for the dot product; hashing is not floating point.
        return Scores(values, 2.0 * len(pool) * c.buckets, meta={"model_free": True})
