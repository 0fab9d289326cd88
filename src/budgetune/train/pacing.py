"""When the loop stops, how far through its budget it is, and when it evaluates: pure functions of the budget, the
ledger and the step, so a resumed run paces itself exactly as an uninterrupted one."""

from __future__ import annotations

from ..budget import Budget, Ledger


def should_stop(budget: Budget, ledger: Ledger, max_steps, step: int, next_flops: float, eval_cost: float):
    if max_steps is not None and step >= max_steps:
        return f"max_steps reached ({step} steps)"
    if budget.max_flops is not None and ledger.total_flops + next_flops + eval_cost > budget.max_flops:
        return (f"flop budget spent ({ledger.total_flops:.3g} of {budget.max_flops:.3g} FLOPs; "
                f"the final evaluation is reserved)")
    return budget.exhausted(ledger)


def progress_fraction(budget: Budget, ledger: Ledger, max_steps, step: int) -> float:
    fraction = budget.fraction_spent(ledger)
    if max_steps:
        fraction = max(fraction, step / max_steps)
    return fraction


def eval_due(t, budget: Budget, ledger: Ledger, state: dict) -> bool:
    if t.eval_every:
        return state["step"] % t.eval_every == 0
    done = progress_fraction(budget, ledger, t.max_steps, state["step"])
    # evals_done counts the one before training: evaluation k of eval_points falls at k/(eval_points + 1).
    return state["evals_done"] <= t.eval_points and done >= state["evals_done"] / (t.eval_points + 1)

