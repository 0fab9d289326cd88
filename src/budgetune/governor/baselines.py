"""The baselines the marginal-gain governor is measured against, behind the same protocol.

- Patience: Hugging Face's EarlyStoppingCallback rule (Prechelt 1998): stop after `patience` evaluations without an
  improvement larger than `min_delta` over the best loss. Unlike the HF callback, its counter and best loss are part
  of the state saved in checkpoints, so a resumed run does not start counting afresh (transformers#28544).
- Successive halving (Jamieson & Talwalkar 2016; Li et al. 2018's Hyperband rung rule): among several arms, keep the
  best 1/eta by held-out loss at each rung and give the survivors eta times the FLOPs. A single run is one arm,
  which is never halved, so alone it spends the budget like the fixed governor.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ..errors import UserError
from .protocol import ArmView, Decision


@dataclass(kw_only=True)
class PatienceConfig:
    patience: int = 3  # evaluations without improvement before stopping (HF early_stopping_patience)
    min_delta: float = 0.0  # an improvement must exceed this absolute loss drop (HF early_stopping_threshold)

    def __post_init__(self):
        if self.patience < 1:
            raise UserError(f"governor option patience={self.patience} must be at least 1")
        if self.min_delta < 0:
            raise UserError(f"governor option min_delta={self.min_delta} must be non-negative; a negative "
                            f"threshold would count a worse loss as an improvement")


class Patience:
    name = "patience"
    Config = PatienceConfig

    def __init__(self, config: PatienceConfig | None = None):
        self.config = config or PatienceConfig()
        self.best: float | None = None
        self.counter = 0

    def decide(self, evaluation: dict, ledger, budget) -> Decision:
        loss = evaluation.get("eval_loss")
        if loss is None or not math.isfinite(float(loss)):
            raise UserError("the patience governor needs a held-out loss at every evaluation; give --target or a "
                            "positive --heldout-fraction")
        loss = float(loss)
        # HF: improved when better than the best AND by more than the threshold.
        if self.best is None or (loss < self.best and abs(loss - self.best) > self.config.min_delta):
            self.best, self.counter = loss, 0
        else:
            self.counter += 1
        inputs = {"eval_loss": loss, "best_loss": self.best, "counter": self.counter,
                  "patience": self.config.patience, "flops_left": budget.remaining_flops(ledger)}
        if self.counter >= self.config.patience:
            return Decision("stop", f"no improvement over {self.best:.4f} for {self.counter} evaluations", inputs)
        return Decision("continue", f"{self.counter} of {self.config.patience} evaluations without improvement",
                        inputs)

    def state_dict(self) -> dict:
        return {"best": self.best, "counter": self.counter}

    def load_state_dict(self, state: dict) -> None:
        self.best = None if state.get("best") is None else float(state["best"])
        self.counter = int(state.get("counter", 0))


@dataclass(kw_only=True)
class HalvingConfig:
    eta: int = 3  # survivors are the best 1/eta; each rung gives them eta times the FLOPs

    def __post_init__(self):
        if self.eta < 2:
            raise UserError(f"governor option eta={self.eta} must be at least 2")


class SuccessiveHalving:
    name = "halving"
    Config = HalvingConfig

    def __init__(self, config: HalvingConfig | None = None):
        self.config = config or HalvingConfig()
        self.rung = 0

    def decide(self, evaluation: dict, ledger, budget) -> Decision:
        return Decision("continue", "successive halving ranks arms; a single run is one arm and is never halved",
                        {"eval_loss": evaluation.get("eval_loss"), "rung": self.rung})

    def allocate(self, arms: list[ArmView], remaining: float, total: float) -> tuple[dict, Decision]:
        active = [a for a in arms if a.active]
        eta = self.config.eta
        n_keep = max(1, math.ceil(len(active) / eta)) if self.rung > 0 or len(active) > 1 else 1
        ranked = sorted(active, key=lambda a: (a.losses[-1] if a.losses else math.inf, a.name))
        keep = ranked[:n_keep]
        spent = {a.name: (a.flops[-1] - a.flops[0]) if a.flops else 0.0 for a in keep}
        if len(keep) == 1:
            share = {keep[0].name: remaining}  # the last arm standing gets everything left
        else:
            # The next rung: eta times what a survivor has spent, or an equal split if that overdraws the budget.
            wanted = {k: (eta - 1) * v for k, v in spent.items()}
            scale = min(1.0, remaining / sum(wanted.values())) if sum(wanted.values()) > 0 else 0.0
            share = {k: v * scale for k, v in wanted.items()} if scale > 0 else \
                {a.name: remaining / len(keep) for a in keep}
        self.rung += 1
        stopped = [a.name for a in active if a not in keep]
        amounts = {a.name: share.get(a.name, 0.0) for a in active}
        inputs = {"rung": self.rung, "last_loss": {a.name: a.losses[-1] for a in active if a.losses},
                  "kept": [a.name for a in keep]}
        reason = (f"rung {self.rung}: keep the best {len(keep)} of {len(active)} by held-out loss"
                  + (f", stop {', '.join(stopped)}" if stopped else ""))
        return amounts, Decision("reallocate" if stopped else "continue", reason, inputs)

    def state_dict(self) -> dict:
        return {"config": asdict(self.config), "rung": self.rung}

    def load_state_dict(self, state: dict) -> None:
        self.rung = int(state.get("rung", 0))
