"""IFD, instruction-following difficulty (Li et al. 2023, "From Quantity to Quality", Cherry LLM):
s(A|Q) / s(A), the mean response-token loss with the instruction over the loss without it. High IFD: the
instruction helps little, so the pair is hard to follow; IFD > 1 means the instruction misleads and is dropped."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import UserError
from ..forward import forward_pass_flops, response_only, token_stats
from ..protocol import Scores
from ..scaffold import scorer

NAME = "ifd"
NEEDS_MODEL = True
DEFAULT_STRATEGY = "topk"
PER_EXAMPLE = True  # an example's score depends on it alone: ranks may score shares of the pool
AUTO = True  # scorer 'auto' weighs it (selection/auto.py) by predicted_flops below
NEEDS_PROMPTS = True  # it compares the answer's loss with and without the instruction


def predicted_flops(profile, examples, batch: int = 16) -> float:
    """One forward with the prompt, one of the answer alone (the response tokens plus the one before)."""
    return forward_pass_flops(profile, examples, batch) + forward_pass_flops(
        profile, [response_only(e) for e in examples], batch)


def predicted_work(model, pool, target, config):
    """The two forward passes of `predicted_flops`, at the configured batch (selection/costs.py)."""
    from ...flops import profile_from_model
    from ..costs import Work

    return Work(forward=predicted_flops(profile_from_model(model), pool, config.batch_size))


@dataclass(kw_only=True)
class Config:
    batch_size: int = 16  # examples per forward pass
    drop_above: float = 1.0  # IFD above this is ruled out

    def __post_init__(self):
        if self.batch_size < 1 or self.drop_above <= 0:
            raise UserError(f"{NAME} options need batch_size >= 1 and drop_above > 0")


@scorer
class Scorer:
    def score(self, model, pool, target) -> Scores:
        bare = [response_only(e) for e in pool]  # raises a one-line error for data without instructions
        with_q, _, f1, t1 = token_stats(model, pool, batch_size=self.config.batch_size)
        without_q, _, f2, t2 = token_stats(model, bare, batch_size=self.config.batch_size)
        ifd = with_q / np.maximum(without_q, 1e-8)
        keep = ifd <= self.config.drop_above
        return Scores(ifd, f1 + f2, t1 + t2, keep=keep, meta={"dropped_above": int((~keep).sum())})
