"""The budget axis the marginal governor prices against: the whole budget and what is left of it, in FLOPs.

Kept apart from the stop rule (governor/marginal.py) because it is about budgets, not curves: whichever limit (FLOPs,
tokens, seconds) ends the run first sets the horizon.
"""

from __future__ import annotations

import math


def budget_axis(budget, ledger, flops_now: float) -> tuple[float, float]:
    """(whole budget, what is left) in FLOPs; a token or time budget is converted at the rate spent so far. Where a
    token or time limit is further spent than the FLOP budget, it ends the run first and sets the horizon."""
    if budget.max_flops is not None:
        by_flops = float(budget.max_flops), max(0.0, float(budget.max_flops) - ledger.total_flops)
        if budget.fraction_spent(ledger) <= ledger.total_flops / float(budget.max_flops) or flops_now <= 0:
            return by_flops
    spent = budget.fraction_spent(ledger)
    if spent <= 0:
        return math.inf, math.inf
    total = flops_now / spent
    return total, max(0.0, total - flops_now)
