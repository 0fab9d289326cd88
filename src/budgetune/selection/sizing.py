"""Selection budgets: a fraction ("5%", "0.05"), an example count ("200") or a token count ("20000tok")."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..errors import UserError

_PATTERN = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*(%|tok|tokens)?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class SelectionBudget:
    kind: str  # "fraction", "count" or "tokens"
    value: float

    def __str__(self) -> str:
        return {"fraction": f"{self.value:.4g} of the pool", "count": f"{int(self.value)} examples",
                "tokens": f"{int(self.value)} tokens"}[self.kind]


def parse_budget(text) -> SelectionBudget:
    """A number with '%' or below 1 (or written with a point, like 1.0) is a share of the pool; a whole number is
    an example count; a number ending in 'tok' is a token count."""
    m = _PATTERN.match(str(text))
    if not m:
        raise UserError(f"selection budget '{text}' is not understood; write it as 5%, 0.05, 200 (examples) "
                        f"or 20000tok (tokens)")
    number, unit = float(m.group(1)), (m.group(2) or "").lower()
    if number <= 0:
        raise UserError(f"selection budget '{text}' selects nothing; give a positive share, count or token count")
    if unit == "%":
        kind, value = "fraction", number / 100.0
    elif unit in ("tok", "tokens"):
        if number != int(number):
            raise UserError(f"selection budget '{text}' is not a whole number of tokens; write e.g. 20000tok")
        kind, value = "tokens", number
    elif number < 1 or "." in m.group(1) or "e" in m.group(1).lower():
        kind, value = "fraction", number
    else:
        kind, value = "count", number
    if kind == "fraction" and value > 1:
        raise UserError(f"selection budget '{text}' is over 100% of the pool; give at most 100%")
    return SelectionBudget(kind, value)


def take(order: np.ndarray, lengths: np.ndarray, budget: SelectionBudget) -> np.ndarray:
    """The prefix of a priority order that the budget pays for (lengths: tokens per example)."""
    n = len(lengths)
    if budget.kind == "tokens":
        total = int(np.sum(lengths))
        if budget.value > total:
            raise UserError(f"selection budget {int(budget.value)} tokens is over the pool's {total} tokens; "
                            f"give at most {total}tok or 100%")
        cumulative = np.cumsum(lengths[order])
        return order[: max(1, int(np.searchsorted(cumulative, budget.value, side="right")))]
    k = round(budget.value * n) if budget.kind == "fraction" else int(budget.value)
    if k > n:
        raise UserError(f"selection budget {k} examples is over the pool's {n} examples; give at most {n} or 100%")
    return order[: max(1, k)]
