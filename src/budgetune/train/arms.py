"""Arms: start several candidate configurations with small budgets, then move the FLOPs to the best ones.

`orchestrate` is the policy-driven schedule, independent of how an arm is advanced: `run_arms` advances real runs
through the training loop (each arm is a run directory; giving it more FLOPs raises its cfg.budget.max_flops and
resumes it exactly from its checkpoint), and the governor benchmark advances recorded curves with the same code.
Any governor with `allocate` (see protocol.ArmPolicy) can drive it: fixed (equal split), halving, marginal.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from ..governor.protocol import ArmView, Decision


@dataclass
class ArmsResult:
    best: str  # arm with the lowest last held-out loss
    best_loss: float
    flops_used: float  # over all arms
    flops_left: float  # not spent: left for inference
    arms: dict[str, ArmView]
    decisions: list[dict] = field(default_factory=list)


def orchestrate(policy, names: list[str], total: float, advance: Callable[[str, float], tuple[list, list]], *,
                initial_share: float = 1 / 9, min_round: float = 0.0, max_rounds: int = 20,
                log: Callable[[dict], None] | None = None) -> ArmsResult:
    """Give each arm `initial_share` of `total`, then let `policy.allocate` split what is left, round by round.

    advance(name, extra_flops) trains arm `name` for `extra_flops` more FLOPs and returns its whole evaluation
    history so far as (cumulative flops, held-out losses). Rounds stop when the policy hands out nothing, when what
    is left is below `min_round`, or after `max_rounds`.
    """
    if not hasattr(policy, "allocate"):
        raise UserError(f"governor '{getattr(policy, 'name', policy)}' cannot share FLOPs between arms; "
                        f"use fixed, halving or marginal")
    if len(set(names)) != len(names) or not names:
        raise UserError(f"arms need distinct names; got {names}")
    if not 0 < initial_share * len(names) <= 1:
        raise UserError(f"arms: initial_share={initial_share} × {len(names)} arms must be in (0, 1] of the budget")
    arms = {n: ArmView(n, [], []) for n in names}
    used = 0.0
    decisions: list[dict] = []
    grants = {n: initial_share * total for n in names}
    for round_ in range(max_rounds + 1):
        progressed = False
        for name, extra in grants.items():
            if extra <= 0:
                continue
            before = arms[name].flops[-1] if arms[name].flops else 0.0
            flops, losses = advance(name, extra)
            arms[name].flops, arms[name].losses = [float(f) for f in flops], [float(v) for v in losses]
            gained = max(0.0, arms[name].flops[-1] - before) if arms[name].flops else 0.0
            used += gained
            progressed = progressed or gained > 0 or round_ == 0
        remaining = max(0.0, total - used)
        if remaining <= min_round or round_ == max_rounds or not progressed:
            break
        amounts, decision = policy.allocate(list(arms.values()), remaining, total)
        for name, extra in amounts.items():
            if extra <= 0:
                arms[name].active = False
        record = {"round": round_, "used": used, "remaining": remaining, "action": decision.action,
                  "reason": decision.reason, "grants": amounts, **decision.inputs}
        decisions.append(record)
        if log:
            log(record)
        grants = _whole_evaluations({n: a for n, a in amounts.items() if a > 0 and a >= min_round}, arms, remaining)
        if decision.action == "stop" or not grants:
            break
    live = [a for a in arms.values() if a.losses]
    best = min(live, key=lambda a: (a.losses[-1], a.name))
    return ArmsResult(best.name, best.losses[-1], used, max(0.0, total - used), arms, decisions)


def _whole_evaluations(grants: dict, arms: dict, remaining: float) -> dict:
    """Raise each grant to at least the arm's last evaluation interval, so every round brings each granted arm a new
    evaluation (a grant below it trains nothing that can be measured); the best arms by last loss are served first
    when the raised grants exceed what is left."""
    raised = {}
    for name, amount in grants.items():
        f = arms[name].flops
        interval = f[-1] - f[-2] if len(f) >= 2 else 0.0
        raised[name] = max(amount, interval)
    out = {}
    for name in sorted(raised, key=lambda n: (arms[n].losses[-1] if arms[n].losses else math.inf, n)):
        give = min(raised[name], remaining)
        if give > 0:
            out[name] = give
            remaining -= give
    return out


def run_arms(configs: dict, total_flops: float, policy, out: str | Path, *, initial_share: float = 1 / 9,
             train_kwargs: dict | None = None) -> ArmsResult:
    """Real arms: each RunConfig trains in out/<name>/ through budgetune.train.loop.train.

    An arm's learning-rate decay is switched off (decay_fraction=0): its budget is raised round by round, and a
    schedule tied to a budget that later grows would decay too early.
    """
    from .loop import train

    out = Path(out)
    spent: dict[str, float] = {}
    results: dict = {}

    def advance(name: str, extra: float):
        cfg = dataclasses.replace(configs[name])
        cfg.train = dataclasses.replace(cfg.train, decay_fraction=0.0)
        cfg.budget = dataclasses.replace(cfg.budget, max_flops=spent.get(name, 0.0) + extra)
        cfg.out = str(out / name)
        cfg.resume = name in spent
        result = train(cfg, progress=False, **(train_kwargs or {}))
        spent[name] = result.ledger.total_flops
        results[name] = result
        return [e["flops"] for e in result.evals], [e["eval_loss"] for e in result.evals]

    def log(record: dict) -> None:
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "decisions.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True, default=str) + "\n")

    return orchestrate(policy, list(configs), total_flops, advance, initial_share=initial_share, log=log)


def replay_advance(curves: dict[str, tuple[list, list]]) -> Callable[[str, float], tuple[list, list]]:
    """advance() over recorded curves: an arm at F FLOPs given `extra` more sees the evaluations within F + extra
    (like a run whose budget is raised: it stops at the last evaluation that fits)."""
    at: dict[str, float] = {}

    def advance(name: str, extra: float):
        flops, losses = curves[name]
        n = max(1, sum(1 for f in flops if f <= at.get(name, flops[0]) + extra))
        at[name] = flops[n - 1]
        return list(flops[:n]), list(losses[:n])

    return advance


__all__ = ["ArmsResult", "Decision", "orchestrate", "replay_advance", "run_arms"]
