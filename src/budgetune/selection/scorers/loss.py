"""Loss (log-perplexity) of each example's response under the current model: what it has not learned yet."""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import UserError
from ..forward import token_stats
from ..protocol import Scores
from ..scaffold import scorer

NAME = "loss"
NEEDS_MODEL = True
DEFAULT_STRATEGY = "topk"
PER_EXAMPLE = True  # an example's score depends on it alone: ranks may score shares of the pool


def predicted_flops(profile, examples, batch: int = 16) -> float:
    """One batched forward over the examples (the wall-time model of a planned loss scoring)."""
    from ..forward import forward_pass_flops

    return forward_pass_flops(profile, examples, batch)


def predicted_work(model, pool, target, config):
    """One forward pass over the pool (selection/costs.py)."""
    from ...flops import profile_from_model
    from ..costs import Work
    from ..forward import forward_pass_flops

    return Work(forward=forward_pass_flops(profile_from_model(model), pool, config.batch_size))


@dataclass(kw_only=True)
class Config:
    batch_size: int = 16  # examples per forward pass

    def __post_init__(self):
        if self.batch_size < 1:
            raise UserError(f"{NAME} option batch_size={self.batch_size} must be at least 1")


@scorer
class Scorer:
    def score(self, model, pool, target) -> Scores:
        loss, _, flops, tokens = token_stats(model, pool, batch_size=self.config.batch_size)
        return Scores(loss, flops, tokens)
