"""One run between set-up, the loop and finish: what set-up decided and built, and the loop's state.

`setup.set_up` makes it, the loop (loop.py) advances `state`, `ledger` and `pool`, and `finish.finish` writes the
result from it. Saving a checkpoint is here because all three save one (step 0, every checkpoint_every steps, the
last step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..budget import Budget, Ledger
from . import checkpoint, ranks
from .rundir import RunDir


@dataclass
class Session:
    cfg: Any
    budget: Budget
    layout: dict  # processes and sharding this run really uses (ranks.layout)
    plan: dict | None  # check_fits's plan under a memory budget, reported in the summary
    accelerator: Any
    run: RunDir
    resumed: tuple | None  # the checkpoint a --resume continued from (RunDir.resume_point)
    tokenizer: Any
    data: Any  # the DataSplit
    ledger: Ledger
    pool: list  # the training examples (after selection, or a refresh)
    stepper: Any
    governor: Any
    peak_lr: float
    state: dict  # the loop's state, saved in every checkpoint
    tracker: Any = None

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id

    @property
    def world(self) -> int:
        return self.accelerator.num_processes

    @property
    def per_step(self) -> int:
        """Examples in one optimizer step over all processes."""
        return self.cfg.train.micro_batch_size * self.cfg.train.grad_accum * self.world

    def save(self) -> None:
        """A checkpoint of the current step (weights, method state, RNG, loop state, ledger, governor)."""
        run, stepper, state, ledger, governor, cfg = (self.run, self.stepper, self.state, self.ledger, self.governor,
                                                      self.cfg)
        if ranks.save_sharded(run, stepper, state, ledger, governor, cfg):  # every rank writes its own shard
            return
        weights = stepper.trainable_state_dict()
        method_state = {"method": stepper.state_dict(), "rng": torch.get_rng_state()}
        saved = {"loop": dict(state), "ledger": ledger.to_dict(), "governor": governor.state_dict()}
        if run.writer:
            best = state.get("best") if cfg.train.restore_best else None
            checkpoint.save(run.path, state["step"], weights, method_state, saved, keep=cfg.train.keep_checkpoints,
                            protect=None if best is None else best["step"])
            run.write_json("ledger.json", ledger.to_dict())
