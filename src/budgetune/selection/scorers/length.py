"""Response length in tokens: longer answers carry more to learn (Zhao et al. 2024, "Long Is More for
Alignment"); free to compute."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import UserError
from ..protocol import Scores
from ..scaffold import scorer

NAME = "length"
NEEDS_MODEL = False
DEFAULT_STRATEGY = "topk"


@dataclass(kw_only=True)
class Config:
    part: str = "response"  # "response" (learned tokens) or "all" (whole example)

    def __post_init__(self):
        if self.part not in ("response", "all"):
            raise UserError(f"length option part='{self.part}' is not known; use response or all")


@scorer
class Scorer:
    def score(self, model, pool, target) -> Scores:
        values = [e.n_target_tokens if self.config.part == "response" else e.n_tokens for e in pool]
        return Scores(np.asarray(values, dtype=float), 0.0)
