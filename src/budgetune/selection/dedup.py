"""Near-duplicate removal with MinHash LSH (datasketch): walking a priority order, an example is dropped when one
already kept is estimated to share more than `threshold` of its word 3-shingles (Jaccard similarity)."""

from __future__ import annotations

import numpy as np

from ..errors import UserError
from .scorers.dsir import words


def shingles(example, n: int = 3) -> set[bytes]:
    w = words(example)
    if len(w) < n:
        return {" ".join(w).encode("utf-8")}
    return {" ".join(w[i: i + n]).encode("utf-8") for i in range(len(w) - n + 1)}


def drop_near_duplicates(examples, order: np.ndarray, threshold: float = 0.8, num_perm: int = 64,
                         seed: int = 1) -> np.ndarray:
    """The order without near-duplicates of earlier (higher-priority) examples."""
    from datasketch import MinHash, MinHashLSH

    if not 0 < threshold < 1:
        raise UserError(f"selection dedup threshold {threshold} must be in (0, 1), e.g. 0.8")
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    kept = []
    for i in order:
        m = MinHash(num_perm=num_perm, seed=seed)
        m.update_batch(list(shingles(examples[i])))
        if lsh.query(m):
            continue
        lsh.insert(str(i), m)
        kept.append(i)
    return np.asarray(kept, dtype=np.int64)
