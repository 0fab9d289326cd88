"""Decay on stop: a governed stop ends with a short learning-rate cooldown, not at once.

Under the warmup-stable-decay schedule most of a run's late loss drop is bought by the final decay, and a run
stopped early in the stable phase never gets it (WSD's own recipe: a stable-phase checkpoint is finished by a
short decay; Hägele et al. 2024). So when the governor says stop, the loop decays the rate linearly from its
current value to 0 over `cooldown_fraction` of the training FLOPs spent so far, capped by what the budget has left,
then runs the final evaluation. The state is plain numbers in the loop state, so a run killed while cooling down
resumes in the cooldown with the same rates.
"""

from __future__ import annotations

from ..budget import Budget, Ledger


def begin(*, fraction: float, lr: float, ledger: Ledger, budget: Budget, progress: float, eval_cost: float,
          reason: str) -> dict | None:
    """The cooldown state for a stop decided now, or None when there is nothing to cool down over."""
    spent = ledger.flops["train"]
    length = fraction * spent
    # The last step starts before the cooldown's end and runs past it by up to a step: leave room for one.
    mean_step = spent / max(1, ledger.steps)
    if budget.max_flops is not None:
        # The final evaluation stays reserved, as for any stop.
        length = min(length, budget.max_flops - ledger.total_flops - eval_cost - mean_step)
    flop_share = ledger.total_flops / budget.max_flops if budget.max_flops else 0.0
    if flop_share < progress < 1:
        # A token, time or step limit binds first: what it leaves, in FLOPs at the rate spent so far.
        length = min(length, spent * (1 - progress) / progress - mean_step)
    if length <= 0 or lr <= 0:
        return None
    return {"from_train_flops": spent, "flops": length, "lr": lr, "reason": reason}


def lr(state: dict, ledger: Ledger) -> float:
    """Linear from the rate at the stop to 0 at the cooldown's end (steps at done = 0, s, 2s, ... < 1)."""
    done = (ledger.flops["train"] - state["from_train_flops"]) / state["flops"]
    return state["lr"] * max(0.0, 1.0 - done)


def finished(state: dict, ledger: Ledger) -> bool:
    return ledger.flops["train"] - state["from_train_flops"] >= state["flops"]


def record(state: dict, step: int, ledger: Ledger, *, done: bool) -> dict:
    """The decisions.jsonl line for the cooldown's start or end."""
    spent = ledger.flops["train"] - state["from_train_flops"]
    if done:
        reason = (f"cooldown finished: the learning rate decayed from {state['lr']:.3g} to 0 over {spent:.3g} "
                  f"training FLOPs; final evaluation")
    else:
        share = state["flops"] / max(state["from_train_flops"], 1.0)
        reason = (f"stop decided: the learning rate decays from {state['lr']:.3g} to 0 over {state['flops']:.3g} "
                  f"FLOPs ({share:.0%} of the training FLOPs so far) before the final evaluation")
    return {"step": step, "flops": ledger.total_flops, "action": "cooldown", "reason": reason,
            "cooldown_flops": state["flops"], "cooldown_spent": spent, "cooldown_lr": state["lr"], "done": done}
