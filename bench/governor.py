"""Benchmark `governor`: does the governor save FLOPs against the fixed budget, and against patience, at equal loss?

1. Record (bench/governor_suite.py): real runs of SmolLM2-135M to their whole fixed budget, evaluating the whole
   (small) held-out set densely and keeping every example's loss.
2. Replay: every single-run policy sees the recorded evaluations one at a time, as the loop would show them: the
   ones nearest its plan's schedule (train/evalplan.py, bound by the 10% share; a plan the share cannot pay for has
   none in between), restricted to the plan's evaluation sample. Its FLOPs are the training FLOPs up to its stop
   plus every evaluation it used (the whole set before and after, the sample in between); its loss is the whole
   set's at the evaluation where it stopped. The fixed budget evaluates the whole set before and after only. The
   hindsight bounds are charged the same two whole-set evaluations (and the plan's own, for the bound on them).
   A stop before the end is charged the loop's decay on stop (stop_outcome): its cooldown FLOPs, and the loss
   recorded nearest the cooldown's end; a table without it shows the replay as last session measured it.
   Patience gets the default governor's plan (same evaluation FLOPs), and also every recorded evaluation.
3. Calibration: at every evaluation, the ensemble's ±1 sd band for the next evaluation's loss, and how often the
   next observation falls inside it (aim: about 68%).
4. Real governed runs (--governed N): the default `budgetune run` governor (decay on stop) in the loop.

    python bench/governor.py              # replays what is recorded, writes bench/out/governor.json and the doc
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import itertools

import governor_suite as suite
from governor_policies import (
    BUMP,
    BUMP_LABEL,
    CANDIDATES,
    CAPPED,
    CAPPED_LABEL,
    PREVIOUS,
    PREVIOUS_LABEL,
    RESTORE,
    RESTORE_LABEL,
)
from governor_synthetic import synthetic_curves

if __name__ == "__main__":  # governor_report and governor_real read this module's state (CURVES), not a second copy
    sys.modules.setdefault("governor", sys.modules[__name__])

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
DOC = ROOT / "docs" / "benchmarks" / ("governor_v1.md" if suite.SUITE == "v1" else "governor.md")
# bench/governor_tune.py's summary (committed: bench/out does not outlive the machine), shown in the doc
TUNED = ROOT / "bench" / "records" / f"governor_tune{suite.TAG}.json"
SHARE = 0.1  # train.eval_share's default


def _default_threshold() -> float:
    from budgetune.governor.marginal import Config

    return Config().threshold


DEFAULT_T = _default_threshold()  # the marginal governor's default (its other options at their defaults too)

def _cooldown_fraction() -> float:
    from budgetune.config import TrainConfig

    return TrainConfig().cooldown_fraction


COOLDOWN = _cooldown_fraction()  # decay on stop (train.cooldown_fraction's default); 0: stop at once (as recorded)
THRESHOLDS = tuple(sorted({0.005, 0.01, 0.02, 0.04, 0.06, DEFAULT_T}))
PATIENCE = (3, 5, 10)


def _sub(e: dict, sample) -> dict:
    """An evaluation as the governor would have measured it: on the sample's examples only."""
    if sample is None:
        return dict(e)
    sums = [e["eval_sums"][i] for i in sample]
    counts = [e["eval_counts"][i] for i in sample]
    return {**e, "eval_sums": sums, "eval_counts": counts, "eval_indices": list(sample),
            "eval_loss": sum(sums) / max(1, sum(counts))}


def _needs(name: str, options: dict) -> dict:
    """What a policy declares it needs from the evaluation plan (the marginal governor's Config; a policy without
    one, such as patience, is given the default governor's plan so both spend the same on evaluation)."""
    from budgetune.governor import make
    from budgetune.train.governed import needs

    return needs(make(name, options)) or needs(make("marginal", {}))


def costs(curve: dict, need: dict | None = None) -> dict:
    """The fixed run's budget and the evaluation plan a governed run would get on this curve (train/evalplan.py at
    the default 10% share, bound by it: a plan the share cannot pay for has no evaluations in between)."""
    from budgetune.train.evalplan import make_plan

    need = need or _needs("marginal", {})
    evals = curve["evals"]
    whole = float(evals[0]["eval_flops"])
    n = len(evals[0]["eval_sums"])
    budget = evals[-1]["train_flops"] + 2 * whole
    recorded = len(evals) - 2  # the recorded evaluations between the one before training and the last
    plan = make_plan(max_flops=budget, whole_flops=whole, n_examples=n, points=min(need["points"], recorded),
                     min_points=min(need["min_points"], recorded), min_sample=need["min_sample"], share=SHARE,
                     spacing=need.get("spacing", 1.0))
    return {"whole": whole, "n": n, "budget": budget, "plan": plan}


def schedule(curve: dict, plan: dict | None) -> list[int]:
    """The recorded evaluations a plan's schedule lands on: for each planned budget fraction (evalplan.fractions),
    the nearest recorded evaluation after the previous one (None: every recorded evaluation, densely)."""
    from budgetune.train.evalplan import fractions

    evals = curve["evals"]
    last = len(evals) - 1
    if plan is None:
        return list(range(1, last))
    end = evals[-1]["train_flops"]
    out: list[int] = []
    for f in fractions(plan):
        options = [i for i in range(1, last) if not out or i > out[-1]]
        if not options:
            break
        out.append(min(options, key=lambda i: abs(evals[i]["train_flops"] / end - f)))
    return out


def replay(name: str, options: dict, curve: dict, dense: bool = False, restore: bool = False) -> dict:
    """One policy on one curve: it sees the evaluation before training (whole set), then the plan's evaluations
    (its sample, at its schedule); dense: every recorded evaluation on the whole set (last session's replay);
    restore: a stop above the best evaluation on the same examples goes back to it (train.restore_best)."""
    from budgetune.budget import Budget, Ledger
    from budgetune.governor import make
    from budgetune.train.governed import enlarge

    c = costs(curve, _needs(name, options))
    plan, whole, budget_flops = c["plan"], c["whole"], c["budget"]
    plan = {**plan, "sample": None if plan.get("sample") is None else list(plan["sample"])}  # enlarge edits it
    per_example = whole / c["n"]
    budget = Budget(max_flops=budget_flops)
    governor = make(name, options, budget)
    evals = curve["evals"]
    last = len(evals) - 1
    stop_at, used, decisions, spent = last, 0, [], 0.0  # spent: the evaluations between the two whole-set ones
    seen_at: list[tuple[int, tuple, float]] = []  # (evaluation, the examples it read, its loss on them)
    for i in [0] + schedule(curve, None if dense else plan):
        e = evals[i]
        sample = None if dense else plan["sample"]
        if i > 0:
            used += 1
            spent += whole if sample is None else per_example * len(sample)
        eval_flops = whole + spent
        seen = _sub(e, sample) if i > 0 else dict(e)
        seen["flops"] = e["train_flops"] + eval_flops
        ledger = Ledger()
        ledger.charge("train", e["train_flops"])
        ledger.charge("eval", eval_flops)
        seen_at.append((i, tuple(sorted(seen.get("eval_indices") or ())), seen["eval_loss"]))
        d = governor.decide(seen, ledger, budget)
        decisions.append({"i": i, "action": d.action, "reason": d.reason})
        if not dense:  # a close decision's larger sample, as the loop grants it (what the share still pays for)
            enlarge(plan, d, evals_done=used + 1, eval_spent=eval_flops, max_flops=budget_flops, n_examples=c["n"],
                    seed=0)
        if d.action == "stop":
            stop_at = i
            break
    same = [x for x in seen_at if x[1] == seen_at[-1][1]]
    start = min(same, key=lambda x: x[2])[0] if restore and stop_at < last else stop_at
    train, cool, loss = stop_outcome(evals, stop_at, budget_flops - 2 * whole - spent, start)
    flops = train + cool + 2 * whole + spent
    return {"flops": flops, "loss": loss, "stop_eval": stop_at, "restored_to": start, "evals_used": used,
            "cooldown_flops": cool,
            "eval_flops": 2 * whole + spent, "decisions": decisions[-2:], "points": plan["points"]}


def stop_outcome(evals: list[dict], stop_at: int, room: float, start: int | None = None) -> tuple[float, float, float]:
    """(training FLOPs at the stop, cooldown FLOPs, loss) of a stop at recorded evaluation `stop_at`, with `room`
    training FLOPs left in the budget once every evaluation is paid for; `start`: the evaluation whose weights the
    cooldown starts from (a restored best one; its loss is read as training on from there, the same convention).

    Decay on stop, as the loop does it (train/cooldown.py): the rate decays over COOLDOWN of the training FLOPs
    spent, within the room the budget leaves. Its FLOPs are charged; its loss is the recorded one nearest the
    cooldown's end, i.e. training on at the stable rate, which the decay is expected to beat: the decay itself is
    given no credit. A stop at the last evaluation is the fixed run's end (its own decay already recorded)."""
    last = len(evals) - 1
    start = stop_at if start is None else start
    train, loss = evals[stop_at]["train_flops"], evals[start]["eval_loss"]
    if not COOLDOWN or stop_at >= last:
        return train, 0.0, loss
    cool = max(0.0, min(COOLDOWN * train, room - train))
    end = evals[start]["train_flops"] + cool
    near = min(range(start, last + 1), key=lambda k: abs(evals[k]["train_flops"] - end))
    return train, cool, evals[near]["eval_loss"]


def fixed_row(curve: dict) -> dict:
    c = costs(curve)
    e = curve["evals"][-1]
    return {"flops": e["train_flops"] + 2 * c["whole"], "loss": e["eval_loss"], "stop_eval": len(curve["evals"]) - 1,
            "evals_used": 0, "eval_flops": 2 * c["whole"]}


def hindsight(curve: dict, within: float | None) -> dict:
    """The best stop in hindsight among the recorded evaluations, charged the whole set before and after and the
    cooldown a stop there would need (stop_outcome): the cheapest whose loss is within `within` of the fixed run's
    (None: the lowest loss)."""
    c = costs(curve)
    evals = curve["evals"]
    final = evals[-1]["eval_loss"]
    room = c["budget"] - 2 * c["whole"]
    outcomes = [stop_outcome(evals, i, room) for i in range(1, len(evals))]
    if within is None:
        train, cool, loss = min(outcomes, key=lambda o: (o[2], o[0]))
    else:
        train, cool, loss = next(o for o in outcomes if o[2] <= final * (1 + within))
    return {"flops": train + cool + 2 * c["whole"], "loss": loss, "eval_flops": 2 * c["whole"]}


def calibration(curve: dict) -> list[dict]:
    """One row per evaluation with a fit: the predicted next loss, its sd, the observation (on the plan's sample),
    with the noise measured as the governor measures it (median paired standard error so far)."""
    from budgetune.governor import noise
    from budgetune.governor.curves import fit_ensemble

    c = costs(curve)
    evals = [_sub(e, c["plan"]["sample"]) for e in curve["evals"]]
    total = c["budget"]
    out = []
    for t in range(3, len(evals) - 1):
        window = evals[: t + 1]
        gaps = [noise.paired_gain(a, b) for a, b in itertools.pairwise(window)]
        ses = sorted(g[1] for g in gaps if g is not None)
        rel = ses[len(ses) // 2] if ses else 0.0
        x = [(e["train_flops"] - window[0]["train_flops"]) / total for e in window]
        ens = fit_ensemble(x, [e["eval_loss"] for e in window], noise=rel * window[-1]["eval_loss"], min_dof=1)
        if ens is None:
            continue
        x_next = (evals[t + 1]["train_flops"] - window[0]["train_flops"]) / total
        mean, sd = ens.next_level(x_next)
        obs = evals[t + 1]["eval_loss"]
        out.append({"t": t, "pred": mean, "sd": sd, "obs": obs, "inside": bool(abs(obs - mean) <= sd),
                    "z": (obs - mean) / sd if sd > 0 else math.inf})
    return out


def planned_hindsight(curve: dict) -> dict:
    """The hindsight bound on the default plan's own evaluations: its first scheduled evaluation within 1% of the
    fixed run's loss, charged the plan's evaluations up to it (no such evaluation: the whole budget and all of them)."""
    c = costs(curve)
    per = c["whole"] * c["plan"]["sample_size"] / c["n"]
    evals = curve["evals"]
    final = evals[-1]["eval_loss"]
    sched = schedule(curve, c["plan"])
    for used, i in enumerate(sched, 1):
        train, cool, loss = stop_outcome(evals, i, c["budget"] - 2 * c["whole"] - used * per)
        if loss <= final * (1 + 0.01):
            return {"flops": train + cool + 2 * c["whole"] + used * per, "loss": loss,
                    "eval_flops": 2 * c["whole"] + used * per, "stop_eval": i}
    return {"flops": evals[-1]["train_flops"] + 2 * c["whole"] + len(sched) * per, "loss": final,
            "eval_flops": 2 * c["whole"] + len(sched) * per, "stop_eval": len(evals) - 1}


def tuning_runs() -> list[str]:
    """The curves the default options were chosen on: in the v1 suite bench/governor_tune.py's budget split (1x and
    4x, seed 0); in the big suite the threshold (governor_tune.choose_threshold) on the seed-0 curves, the seed replicates
    left out of sample."""
    if suite.SUITE != "v1":
        return [r for r, c in CURVES.items() if c["seed"] == 0]
    return [r for r, c in CURVES.items() if c["budget_key"] in ("x1", "x4") and c["seed"] == 0]


def summarise(rows: dict, fixed: dict, bound: dict, runs: list[str] | None = None) -> dict:
    runs = list(fixed) if runs is None else runs
    ff = sum(fixed[r]["flops"] for r in runs)
    pf = sum(rows[r]["flops"] for r in runs)
    bf = sum(bound[r]["flops"] for r in runs)
    dl = [(rows[r]["loss"] - fixed[r]["loss"]) / fixed[r]["loss"] for r in runs]
    ev = sum(rows[r].get("eval_flops", 0.0) for r in runs)
    return {"runs": len(runs), "flops_vs_fixed": pf / ff, "mean_loss_vs_fixed": statistics.mean(dl),
            "worst_loss_vs_fixed": max(dl), "eval_share": ev / pf,
            "bound_captured": (ff - pf) / (ff - bf) if ff > bf else math.nan,
            "stopped": sum(1 for r in runs if rows[r].get("stop_eval", 0) < len(CURVES[r]["evals"]) - 1)}


CURVES: dict = {}

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--governed", type=int, default=0, help="also train this many suite runs for real, governed")
    ap.add_argument("--governed-budget", default=suite.SEED_BUDGET, choices=sorted(suite.BUDGETS),
                    help="which budget's recorded runs the real governed runs repeat (x1 runs are too short to stop)")
    ap.add_argument("--governed-runs", default="",
                    help="comma-separated recorded runs to repeat for real, governed (instead of the budget's first N)")
    ap.add_argument("--bump", action="store_true",
                    help="the real governed runs use the bump options (BUMP; bench/out/governor_governed_bump/)")
    ap.add_argument("--synthetic", action="store_true", help="replay on curves of known shape instead (own table)")
    args = ap.parse_args(argv)
    CURVES.update(synthetic_curves() if args.synthetic else suite.load_curves())
    if not CURVES:
        print("nothing recorded yet; run bench/governor_suite.py first", file=sys.stderr)
        return 1
    fixed = {r: fixed_row(c) for r, c in CURVES.items()}
    bound = {r: hindsight(c, 0.01) for r, c in CURVES.items()}
    oracle = {r: hindsight(c, None) for r, c in CURVES.items()}
    policies = {f"marginal t={t:g}": ("marginal", {"threshold": t}) for t in THRESHOLDS}
    policies[CAPPED_LABEL] = ("marginal", CAPPED)
    policies[PREVIOUS_LABEL] = ("marginal", PREVIOUS)
    policies[BUMP_LABEL] = ("marginal", BUMP)
    policies.update({label: ("marginal", o) for label, o in CANDIDATES.items()})
    policies.update({f"patience-{p}": ("patience", {"patience": p}) for p in PATIENCE})
    per = {label: {r: replay(g, o, c) for r, c in CURVES.items()} for label, (g, o) in policies.items()}
    per[RESTORE_LABEL] = {r: replay("marginal", RESTORE, c, restore=True) for r, c in CURVES.items()}
    per.update({f"patience-{p}, every recorded evaluation": {r: replay("patience", {"patience": p}, c, dense=True)
                                                             for r, c in CURVES.items()} for p in PATIENCE})
    planned = {r: planned_hindsight(c) for r, c in CURVES.items()}
    rows_all = {"fixed": fixed, **per, "hindsight: cheapest stop within 1% of fixed": bound,
                "hindsight: lowest recorded loss": oracle,
                "hindsight on the default plan's own evaluations (within 1%)": planned}
    table = [{"policy": label, **summarise(rows, fixed, bound)} for label, rows in rows_all.items()]
    tune = tuning_runs()
    judge = [r for r in CURVES if r not in tune]
    split = [{"policy": label, "in_sample": summarise(rows, fixed, bound, tune),
              "out_of_sample": summarise(rows, fixed, bound, judge)} for label, rows in rows_all.items()] \
        if tune and judge else []
    global COOLDOWN
    charged, COOLDOWN = COOLDOWN, 0.0  # the same policies as last session replayed them: a stop ends at once
    plain = {label: {r: replay("marginal", o, c) for r, c in CURVES.items()}
             for label, o in ((f"marginal t={DEFAULT_T:g} (default)", {}), (CAPPED_LABEL, CAPPED),
                              (PREVIOUS_LABEL, PREVIOUS))}
    plain_bound = {r: hindsight(c, 0.01) for r, c in CURVES.items()}
    plain["hindsight: cheapest stop within 1% of fixed"] = plain_bound
    plain["hindsight on the default plan's own evaluations (within 1%)"] = {r: planned_hindsight(c)
                                                                             for r, c in CURVES.items()}
    COOLDOWN = charged
    no_cooldown = [{"policy": label, "all": summarise(rows, fixed, plain_bound),
                    "in_sample": summarise(rows, fixed, plain_bound, tune),
                    "out_of_sample": summarise(rows, fixed, plain_bound, judge)} for label, rows in plain.items()] \
        if tune and judge else []
    calib = {r: calibration(c) for r, c in CURVES.items()}
    cal_rows = [x for v in calib.values() for x in v]
    coverage = sum(x["inside"] for x in cal_rows) / len(cal_rows) if cal_rows else math.nan
    import governor_real

    chosen = {r: c for r, c in CURVES.items() if c["budget_key"] == args.governed_budget}
    only = [r for r in args.governed_runs.split(",") if r] if args.governed_runs else None
    if only:
        chosen = {r: CURVES[r] for r in only}
    elif not args.governed:
        chosen = dict(CURVES)  # nothing to train: every run with a kept row, whatever its budget
    # Real runs with today's defaults: trained when asked (--governed N), else whatever is cached is shown.
    bump_chosen = chosen if args.bump else dict(CURVES)
    bump_real = governor_real.run(bump_chosen, args.governed or len(bump_chosen), governor_real.BUMPED,
                                  train_missing=bool(args.governed) and args.bump, options=BUMP) \
        if not args.synthetic else []
    if args.bump:
        chosen = dict(CURVES)  # the default's runs: only what is kept
    n_real = len(chosen) if args.bump else (args.governed or len(chosen))
    real = governor_real.run(chosen, n_real, train_missing=bool(args.governed) and not args.bump) \
        if not args.synthetic else []
    old_real = governor_real.run({r: c for r, c in CURVES.items() if c["budget_key"] == "x4"}, len(CURVES),
                                 governor_real.OLD, train_missing=False) if not args.synthetic else []
    restore_real = governor_real.run(dict(CURVES), len(CURVES), governor_real.RESTORED, train_missing=False) \
        if not args.synthetic else []
    candidate_real = governor_real.run(dict(CURVES), len(CURVES), governor_real.CANDIDATE, train_missing=False) \
        if not args.synthetic else []
    capped_real = governor_real.run(dict(CURVES), len(CURVES), governor_real.CAPPED, train_missing=False) \
        if not args.synthetic else []
    from governor_report import render

    # Where the share leaves room for evaluations in between: the runs a governor can decide on at all.
    decidable = [r for r, c in CURVES.items() if costs(c)["plan"]["points"] > 0]
    subset = [{"policy": label, **summarise(rows, fixed, bound, decidable)} for label, rows in rows_all.items()] \
        if decidable and len(decidable) < len(CURVES) else []
    md = render(table, per, fixed, coverage, cal_rows, calib, real, split, no_cooldown, old_real, bump_real,
                restore_real, subset, candidate_real, capped_real)
    print(md)
    OUT.mkdir(parents=True, exist_ok=True)
    if args.synthetic:
        (OUT / "governor_synthetic.json").write_text(json.dumps({"table": table, "coverage": coverage}, indent=1))
        (OUT / "governor_synthetic.md").write_text(md)
        return 0
    (OUT / f"governor{suite.TAG}.json").write_text(json.dumps({"table": table, "split": split, "no_cooldown": no_cooldown,
                                                   "cooldown_fraction": COOLDOWN, "per_run": per, "fixed": fixed,
                                                   "calibration": calib, "coverage": coverage, "real": real,
                                                   "real_previous_defaults": old_real, "real_bump": bump_real,
                                                   "real_restore": restore_real, "real_candidate": candidate_real,
                                                   "real_capped": capped_real},
                                                  indent=1, default=str))
    DOC.write_text(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
