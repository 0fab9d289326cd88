"""The time budget as planned work, inside the loop: what the next step and the final evaluation will take in
seconds, so that a run that runs out of time still ends with its final evaluation inside --max-seconds.

Seconds are predicted from FLOPs (known before the work runs, train/precost.py) times this run's measured seconds
per FLOP of that phase, read off the ledger (Ledger.phase_seconds over Ledger.flops). Before a phase has been
measured the plan's throughput stands in (budget.flops_per_second, from the plan's timed probe or the flag). A
training step is priced at the slower of the mean rate so far and the last step's, so a machine that slows down
mid-run is noticed at the next step. The final evaluation's seconds are reserved with a margin, as its FLOPs are
(pacing.should_stop); an evaluation in between runs only if it leaves that reserve, and, when the time budget binds,
the evaluation share in seconds (`train.eval_share`), inside the budget.
"""

from __future__ import annotations

from ..budget import Budget, Ledger

# The final evaluation's reserve over its predicted seconds: the test set's batch shapes differ from the dev set's
# that the rate was measured on, and a shared machine's speed drifts between measurements.
MARGIN = 1.2
PLAN = "plan"  # the Ledger.phase_seconds key of the plan's timed throughput probe


def charge_probe(ledger: Ledger, joint_plan: dict | None) -> None:
    """A fresh run's ledger starts with the seconds its plan spent timing this machine (budgetune.joint.seconds)."""
    probe = ((joint_plan or {}).get("numbers") or {}).get("probe") or {}
    if probe.get("seconds"):
        ledger.add_seconds(PLAN, float(probe["seconds"]))


def seconds_per_flop(ledger: Ledger, phase: str, budget: Budget) -> float | None:
    """Measured seconds per FLOP of `phase` on this run; the plan's throughput, else the other phase's measured
    rate, before anything of it has run; None when nothing is known."""
    measured = _measured(ledger, phase)
    if measured is not None:
        return measured
    if budget.flops_per_second:
        return 1.0 / budget.flops_per_second
    return _measured(ledger, "eval" if phase == "train" else "train")


def _measured(ledger: Ledger, phase: str) -> float | None:
    flops, seconds = ledger.flops.get(phase, 0.0), ledger.phase_seconds.get(phase, 0.0)
    return seconds / flops if flops > 0 and seconds > 0 else None


def train_seconds_per_flop(ledger: Ledger, budget: Budget, state: dict) -> float | None:
    """The slower of the mean training rate and the last step's (kept in the loop state, so a resume keeps it)."""
    mean = seconds_per_flop(ledger, "train", budget)
    pace = state.setdefault("pace", {"flops": 0.0, "seconds": 0.0, "last": None})
    flops, seconds = ledger.flops.get("train", 0.0), ledger.phase_seconds.get("train", 0.0)
    if flops > pace["flops"] and pace["flops"] > 0:
        pace["last"] = (seconds - pace["seconds"]) / (flops - pace["flops"])
    if flops != pace["flops"]:
        pace["flops"], pace["seconds"] = flops, seconds
    known = [r for r in (mean, pace["last"]) if r is not None]
    return max(known) if known else None


def reserve_seconds(ledger: Ledger, budget: Budget, reserve_flops: float, state: dict | None = None) -> float:
    """Seconds kept back for the final evaluation of `reserve_flops` (0 when no rate is known yet): at the measured
    evaluation rate, slowed by as much as the last training step ran slower than the mean one (a shared machine's
    load changes between the evaluations before training and the final one)."""
    rate = seconds_per_flop(ledger, "eval", budget)
    return MARGIN * reserve_flops * rate * slowdown(ledger, state) if rate else 0.0


def slowdown(ledger: Ledger, state: dict | None) -> float:
    """How much slower the last training step ran than the mean step, per FLOP (at least 1)."""
    mean = _measured(ledger, "train")
    last = ((state or {}).get("pace") or {}).get("last")
    return max(1.0, last / mean) if mean and last else 1.0


def should_stop(budget: Budget, ledger: Ledger, next_flops: float, reserve_flops: float, state: dict) -> str | None:
    """Why the next step (of `next_flops`) must not run under the time budget: it would leave too little time for
    the final evaluation. None without a time budget or while both fit."""
    if budget.max_seconds is None:
        return None
    rate = train_seconds_per_flop(ledger, budget, state)
    step = next_flops * rate if rate else 0.0
    reserve = reserve_seconds(ledger, budget, reserve_flops, state)
    if ledger.seconds + step + reserve <= budget.max_seconds:
        return None
    return (f"time budget spent ({ledger.seconds:.0f} of {budget.max_seconds:.0f} s; the next step would take about "
            f"{step:.1f} s and {reserve:.1f} s are reserved for the final evaluation)")


def fits(budget: Budget, ledger: Ledger, evals: list[dict], indices, n_whole: int, reserve_flops: float,
         train_cfg) -> bool:
    """Whether an evaluation in between still leaves the final evaluation's reserve inside the time budget and,
    when the time budget binds, keeps all evaluation within `train.eval_share` of the seconds (a schedule the
    user fixed in steps, --eval-every, excepted)."""
    if budget.max_seconds is None:
        return True
    rate = seconds_per_flop(ledger, "eval", budget)
    priced = [r for r in evals if r.get("eval_flops")]
    if rate is None or not priced:
        return True
    last = priced[-1]
    per = last["eval_flops"] / max(1, len(last.get("eval_indices") or ()) or n_whole)
    need = per * (n_whole if indices is None else len(indices)) * rate
    reserve = reserve_seconds(ledger, budget, reserve_flops)
    if ledger.seconds + need + reserve > budget.max_seconds:
        return False
    share = None if getattr(train_cfg, "eval_every", 0) else getattr(train_cfg, "eval_share", None)
    if share is None or not time_binds(budget, ledger, getattr(train_cfg, "max_steps", None)):
        return True
    return ledger.phase_seconds.get("eval", 0.0) + need + reserve <= share * budget.max_seconds


def time_binds(budget: Budget, ledger: Ledger, max_steps: int | None = None) -> bool:
    """Whether the run is on course to end on its time budget: it has spent more of it than of any other limit."""
    if budget.max_seconds is None:
        return False
    others = [0.0]
    if budget.max_flops:
        others.append(ledger.total_flops / budget.max_flops)
    if budget.max_tokens:
        others.append(ledger.tokens.get("train", 0) / budget.max_tokens)
    if max_steps:
        others.append(ledger.steps / max_steps)
    return ledger.seconds / budget.max_seconds >= max(others)


def planning_budget(budget: Budget, ledger: Ledger) -> Budget:
    """The budget an evaluation plan is sized on: max_flops lowered to what the seconds left buy at the plan's
    throughput, when that is less (so its evaluations fit the share of the time the run really has)."""
    import dataclasses

    flops = budget.planning_flops(ledger)
    if flops is None or flops <= 0 or flops == budget.max_flops:
        return budget
    return dataclasses.replace(budget, max_flops=flops)
