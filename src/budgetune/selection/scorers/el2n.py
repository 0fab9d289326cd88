"""EL2N (Paul et al. 2021): mean over response tokens of ‖softmax(f(x)) − onehot(y)‖₂, early in training, averaged
over several short warm-up runs (each a LoRA copy trained from the current model with its own seed)."""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import UserError
from .. import warmup
from ..forward import token_stats
from ..protocol import Scores
from ..scaffold import scorer

NAME = "el2n"
NEEDS_MODEL = True
DEFAULT_STRATEGY = "offset"  # hard examples first, but not the very hardest, which are often mislabelled


def predicted_work(model, pool, target, config):
    """Per run: a LoRA copy, its warm-up steps and one EL2N forward pass over the pool on it (selection/costs.py)."""
    from ..costs import Work
    from ..forward import forward_pass_flops

    lora = warmup.lora_profile(model)
    work = Work()
    for r in range(config.runs):
        work = work + Work(forward=forward_pass_flops(lora, pool, config.batch_size), copies=1,
                           train=warmup.planned_flops(lora, pool, steps=config.warmup_steps,
                                                      batch_size=config.batch_size, seed=config.seed + r))
    return work


@dataclass(kw_only=True)
class Config:
    runs: int = 2  # warm-up runs averaged
    warmup_steps: int = 4  # AdamW steps per run (0: score the model as it is)
    lr: float = 1e-3  # warm-up learning rate
    batch_size: int = 16  # examples per forward pass / warm-up step
    seed: int = 0

    def __post_init__(self):
        if self.runs < 1 or self.warmup_steps < 0 or self.batch_size < 1:
            raise UserError(f"{NAME} options need runs >= 1, warmup_steps >= 0, batch_size >= 1")


@scorer
class Scorer:
    def score(self, model, pool, target) -> Scores:
        c = self.config

        def measure(warm):
            _, err, flops, tokens = token_stats(warm, pool, batch_size=c.batch_size, el2n=True)
            return err, flops, tokens

        values, flops, tokens = warmup.averaged(model, pool, measure, runs=c.runs, steps=c.warmup_steps, lr=c.lr,
                                                batch_size=c.batch_size, seed=c.seed)
        return Scores(values, flops, tokens, meta={"runs": c.runs})
