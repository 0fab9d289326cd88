"""What every scorer returns and the one method it has.

A scorer's parameters are set in `__init__` (from its Config dataclass) and never changed by `score`, so one scorer
object can score the pool now and again later (dynamic re-selection) with the same meaning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass
class Scores:
    """Per-example scores of a pool and what computing them cost.

    values: one float per pool example; the scorer's default strategy reads higher as "pick first" unless it says
        otherwise (strategies can take the bottom, an offset, or strata instead).
    flops: FLOPs spent scoring (forward, backward, warm-up training, projection), charged to the `selection` phase.
    tokens: tokens read while scoring.
    groups: optional cluster id per example (S2L), used by the `balanced` strategy.
    keep: optional mask of examples the scorer rules out (IFD > 1); strategies never pick a False one.
    """

    values: np.ndarray
    flops: float
    tokens: int = 0
    groups: np.ndarray | None = None
    keep: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=np.float64)


class Scorer(Protocol):
    name: str
    needs_model: bool  # False: scores from the text alone (random, length, dsir)
    default_strategy: str

    def score(self, model, pool: list, target: list) -> Scores: ...
