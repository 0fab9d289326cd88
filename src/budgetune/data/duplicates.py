"""Exact and near duplicates of a set of prompt/response records, so a user decides about them with numbers.

Exact: the same (prompt, response) after case and whitespace folding. Near: MinHash LSH (datasketch) over word
3-shingles of prompt and response together, above a Jaccard threshold, grouped transitively (union-find).
"""

from __future__ import annotations

import re
from collections import Counter

_WORD = re.compile(r"\w+", re.UNICODE)


def _key(record: dict) -> tuple[str, str]:
    fold = lambda s: " ".join(str(s).lower().split())
    return fold(record["prompt"]), fold(record["response"])


def _shingles(record: dict, n: int = 3) -> set[bytes]:
    w = _WORD.findall(f"{record['prompt']} {record['response']}".lower())
    if len(w) < n:
        return {" ".join(w).encode("utf-8")}
    return {" ".join(w[i: i + n]).encode("utf-8") for i in range(len(w) - n + 1)}


def duplicate_report(records: list[dict], threshold: float = 0.8, num_perm: int = 128, top: int = 5) -> dict:
    """Counts of exact and near duplicates and the most repeated pairs."""
    from datasketch import MinHash, MinHashLSH

    exact = Counter(_key(r) for r in records)
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    parent = list(range(len(records)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, r in enumerate(records):
        m = MinHash(num_perm=num_perm, seed=1)
        m.update_batch(list(_shingles(r)))
        for j in lsh.query(m):
            parent[root(i)] = root(int(j))
        lsh.insert(str(i), m)
    groups = Counter(root(i) for i in range(len(records)))
    repeated = exact.most_common(top)
    return {
        "records": len(records),
        "distinct_exact": len(exact),
        "exact_copies": len(records) - len(exact),  # records that repeat an earlier one exactly
        "exact_groups_over_1": sum(1 for c in exact.values() if c > 1),
        "near_groups": len(groups),
        "near_copies": len(records) - len(groups),
        "near_groups_over_1": sum(1 for c in groups.values() if c > 1),
        "threshold": threshold,
        "most_repeated": [{"prompt": p, "response": a, "count": c} for (p, a), c in repeated],
    }
