"""What the training loop asks of a governor, and the decision it gets back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

ACTIONS = ("continue", "stop", "refresh", "reallocate")


@dataclass
class Decision:
    action: str  # one of ACTIONS
    reason: str
    inputs: dict = field(default_factory=dict)  # the numbers the decision was made from (written to decisions.jsonl)

    def __post_init__(self):
        if self.action not in ACTIONS:
            raise ValueError(f"unknown governor action {self.action!r}; one of {ACTIONS}")


class Governor(Protocol):
    def decide(self, evaluation: dict, ledger, budget) -> Decision: ...

    def state_dict(self) -> dict: ...  # JSON-serialisable; saved in every checkpoint

    def load_state_dict(self, state: dict) -> None: ...


class FixedBudget:
    """Spend the whole budget: the loop stops only when a budget limit is reached."""

    name = "fixed"

    def decide(self, evaluation: dict, ledger, budget) -> Decision:
        return Decision("continue", "fixed budget: train until a limit is reached",
                        {"eval_loss": evaluation.get("eval_loss")})

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def allocate(self, arms: list[ArmView], remaining: float, total: float) -> tuple[dict, Decision]:
        """Every arm gets an equal share of what is left: no arm is ever stopped early."""
        active = [a for a in arms if a.active]
        share = remaining / max(1, len(active))
        return ({a.name: share for a in active},
                Decision("continue", f"fixed budget: {len(active)} arms share the rest equally", {"share": share}))


@dataclass
class ArmView:
    """One candidate configuration as an arm policy sees it: its evaluations so far, on its own FLOP axis."""

    name: str
    flops: list  # cumulative FLOPs of the arm at each evaluation
    losses: list  # held-out loss at each evaluation
    active: bool = True


class ArmPolicy(Protocol):
    """A governor that can also share FLOPs between arms (train/arms.py drives it)."""

    def allocate(self, arms: list[ArmView], remaining: float, total: float) -> tuple[dict, Decision]: ...
    # returns {arm name: extra FLOPs (0 stops the arm)} and the decision that explains it
