"""RHO-LOSS-style reducible loss (Mindermann et al. 2022): the current model's loss on an example minus the loss of a
model trained on holdout data (here: a LoRA copy warmed up on the target examples). High reducible loss: learnable
and relevant; noisy or already-learnt examples score low."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import UserError
from .. import warmup
from ..forward import token_stats
from ..protocol import Scores
from ..scaffold import scorer

NAME = "rho"
NEEDS_MODEL = True
NEEDS_TARGET = True
DEFAULT_STRATEGY = "topk"


def predicted_work(model, pool, target, config):
    """A forward pass of the model, the holdout warm-up on the target (one LoRA copy) and a pass of it over the
    pool (selection/costs.py)."""
    from ...flops import profile_from_model
    from ..costs import Work
    from ..forward import forward_pass_flops

    lora = warmup.lora_profile(model)
    return Work(forward=forward_pass_flops(profile_from_model(model), pool, config.batch_size)
                + forward_pass_flops(lora, pool, config.batch_size),
                train=warmup.planned_flops(lora, target, steps=config.holdout_steps, batch_size=config.batch_size,
                                           seed=config.seed), copies=1)


@dataclass(kw_only=True)
class Config:
    holdout_steps: int = 8  # AdamW steps of the holdout (irreducible-loss) model on the target examples
    lr: float = 1e-3
    batch_size: int = 16
    seed: int = 0

    def __post_init__(self):
        if self.holdout_steps < 1 or self.batch_size < 1:
            raise UserError(f"{NAME} options need holdout_steps >= 1 and batch_size >= 1")


@scorer
class Scorer:
    def score(self, model, pool, target) -> Scores:
        c = self.config
        current, _, flops, tokens = token_stats(model, pool, batch_size=c.batch_size)
        irreducible = np.zeros(len(pool))
        cost = {"flops": flops, "tokens": tokens}

        def on_checkpoint(ck):
            loss, _, f, t = token_stats(ck.model, pool, batch_size=c.batch_size)
            irreducible[:] = loss
            cost["flops"] += f
            cost["tokens"] += t

        spent = warmup.run(model, target, steps=c.holdout_steps, lr=c.lr, batch_size=c.batch_size,
                           seed=c.seed, on_checkpoint=on_checkpoint)
        cost["flops"] += spent
        return Scores(current - irreducible, cost["flops"], cost["tokens"])
