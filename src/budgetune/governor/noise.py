"""Noise measured on the evaluation examples themselves, not guessed.

Every evaluation keeps each example's loss sum s_i and token count n_i (train/evaluate.py), always on the same
examples, so the gain between two evaluations is a paired difference: D = Σ(a_i − b_i) / Σn_i. Its standard
error is that of a ratio estimator over examples drawn from the held-out distribution (Cochran 1977, §6.3):

    se(D)² = N / (N − 1) · Σ (d_i − D·n_i)² / (Σn_i)²,   d_i = a_i − b_i

which is what "is this gain real, or the luck of these N examples?" needs. Pairing removes the spread between easy
and hard examples, which dominates the spread of a single mean (tested against unpaired errors).
"""

from __future__ import annotations

import math

import numpy as np


def common(a: dict, b: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(a's sums, b's sums, counts) on the examples both evaluations measured; None without per-example data."""
    if "eval_sums" not in a or "eval_sums" not in b:
        return None
    ia = a.get("eval_indices") or range(len(a["eval_sums"]))
    ib = b.get("eval_indices") or range(len(b["eval_sums"]))
    pa = {int(i): k for k, i in enumerate(ia)}
    pb = {int(i): k for k, i in enumerate(ib)}
    keys = sorted(set(pa) & set(pb))
    if not keys:
        return None
    sa = np.array([a["eval_sums"][pa[k]] for k in keys], dtype=float)
    sb = np.array([b["eval_sums"][pb[k]] for k in keys], dtype=float)
    n = np.array([a["eval_counts"][pa[k]] for k in keys], dtype=float)
    return sa, sb, n


def paired_gain(a: dict, b: dict) -> tuple[float, float, float] | None:
    """Loss reduction from evaluation a to the later evaluation b on their common examples, relative to a's loss
    there: (gain, its standard error, a's loss on the common examples); None without per-example data."""
    c = common(a, b)
    if c is None:
        return None
    sa, sb, n = c
    total = float(n.sum())
    if total <= 0:
        return None
    base = float(sa.sum()) / total
    d = sa - sb
    gain = float(d.sum()) / total
    m = len(d)
    se = math.sqrt(m / (m - 1) * float(np.sum((d - gain * n) ** 2))) / total if m > 1 else math.inf
    return gain / base, se / base, base


def mean_se(e: dict) -> float:
    """Standard error of one evaluation's mean loss over its examples (unpaired), relative to that loss."""
    s = np.asarray(e.get("eval_sums", ()), dtype=float)
    n = np.asarray(e.get("eval_counts", ()), dtype=float)
    if len(s) < 2 or n.sum() <= 0:
        return math.inf
    loss = s.sum() / n.sum()
    return math.sqrt(len(s) / (len(s) - 1) * float(np.sum((s - loss * n) ** 2))) / float(n.sum()) / loss


def sample_request(n: int, gap: float, se: float) -> int | None:
    """A larger evaluation sample for a close stop decision: the paired gain is within one standard error of its
    price (|gap| ≤ se), so the examples cannot tell. The se of a mean over n examples falls as 1/√n, so the gap
    would be one se at n·(se/gap)² examples; ask for that, at least twice and at most four times the sample (the
    loop grants what the evaluation share can pay for). None when the decision is not that close or the
    evaluation has no per-example losses."""
    if n < 2 or not math.isfinite(se) or se <= 0 or abs(gap) > se:
        return None
    wanted = 4 * n if abs(gap) * 2 <= se else math.ceil(n * (se / abs(gap)) ** 2)
    return int(min(4 * n, max(2 * n, wanted)))
