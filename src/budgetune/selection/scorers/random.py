"""Uniform random scores: the baseline every other scorer must beat, at no cost."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..protocol import Scores
from ..scaffold import scorer

NAME = "random"
NEEDS_MODEL = False
DEFAULT_STRATEGY = "topk"


@dataclass(kw_only=True)
class Config:
    seed: int = 0  # the draw


@scorer
class Scorer:
    def score(self, model, pool, target) -> Scores:
        return Scores(np.random.default_rng(self.config.seed).random(len(pool)), 0.0)
