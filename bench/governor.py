"""Benchmark `governor`: does the marginal-gain governor save FLOPs against a fixed budget and patience?

1. Record: real runs on the embedded SmolLM2-135M and chatterbot-corpus (different target categories, training
   pools, learning rates, methods), each to its full fixed FLOP budget with dense evaluation, so the whole held-out
   loss curve, and with it the oracle stopping point, is known. Runs already recorded in bench/out are reused.
2. Replay: every single-run policy sees the recorded evaluations one at a time, exactly as the training loop would
   show them, until it stops; its FLOPs and final held-out loss are those of the evaluation where it stopped. The
   learning-rate schedule depends on the budget, not on the stop, so replaying a stop on the fixed run is exact.
3. Arms: runs that share a target are arms; each arm policy splits one run's budget between them (governor/arms.py
   over the recorded curves; an arm granted F FLOPs sees its evaluations within F).

4. Governed (--governed): chosen runs trained again for real with the governor in the loop and decay on stop
   (train.cooldown_fraction); the cooldown changes the trajectory after the stop, so it cannot be replayed.

    OMP_NUM_THREADS=1 nice -n 5 python bench/governor.py   # records (≈1 h on 2 shared CPU cores), then replays
    OMP_NUM_THREADS=1 nice -n 5 python bench/governor.py --governed   # + real marginal runs with decay on stop
    (one thread: on a loaded machine, OpenMP threads that wait on each other made steps ~30x slower)
    python bench/governor.py --replay-only         # replays what is recorded
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
DOC = ROOT / "docs" / "benchmarks" / "governor.md"

# (name, target categories, training pool, method, learning rate). Pools: "same" = the training examples of the
# target's categories, "all" = every training example, "small" = 24 examples of the target's categories (a small
# fine-tuning set that the budget covers about twice). Suite B repeats suite A's settings on small pools.
SUITE_A = [
    ("trivia-lora-2e-4", ("trivia",), "same", "lora", 2e-4),
    ("trivia-lora-1e-3", ("trivia",), "same", "lora", 1e-3),
    ("trivia-full-3e-5", ("trivia",), "all", "full", 3e-5),
    ("emotion-lora-2e-4", ("emotion",), "same", "lora", 2e-4),
    ("emotion-lora-1e-3", ("emotion",), "all", "lora", 1e-3),
    ("coding-ai-lora-5e-4", ("coding", "ai"), "all", "lora", 5e-4),
]
SUITE_B = [("small-" + name, cats, "small", method, lr) for name, cats, _, method, lr in SUITE_A]
# Suite C repeats suite A with 4x the budget and 20 evaluations (recorded last; partly, if time runs out).
SUITE_C = [("long-" + name, cats, pool, method, lr) for name, cats, pool, method, lr in SUITE_A]
LONG = {"budget": 4.0, "evals": 20}
RUNS = SUITE_A + SUITE_B + SUITE_C
SMALL_POOL = 24

POLICIES = [
    ("fixed", "fixed", {}),
    ("patience-3", "patience", {"patience": 3}),
    ("patience-5", "patience", {"patience": 5}),
    ("marginal (fit only)", "marginal", {"trend_cap": False}),
    ("marginal", "marginal", {}),
]
ARM_POLICIES = [("fixed-split", "fixed", {}), ("halving", "halving", {}), ("marginal", "marginal", {})]



def _setting(name: str, args, data, out_dir: Path):
    """The RunConfig and data of suite run `name`, as recorded (governed reruns use the very same)."""
    from budgetune.config import RunConfig
    from budgetune.data import DataSplit

    _, cats, pool, method, lr = next(r for r in RUNS if r[0] == name)
    # A small target set keeps dense evaluation affordable on 2 shared CPU cores; sorted by length so that
    # evaluation batches carry little padding.
    target = sorted((e for e in data.target if e.category in cats), key=lambda e: e.uid)[:args.target_size]
    target.sort(key=lambda e: e.n_tokens)
    same = [e for e in data.train if e.category in cats]
    train_pool = {"same": same, "all": list(data.train),
                  "small": sorted(same, key=lambda e: e.uid)[:SMALL_POOL]}[pool]
    cfg = RunConfig()
    cfg.train.method, cfg.train.lr = method, lr
    cfg.train.micro_batch_size = args.batch
    long = name.startswith("long-")
    cfg.train.eval_points = LONG["evals"] if long else args.evals
    cfg.train.eval_batch_size = 8
    cfg.train.warmup_steps = 3
    cfg.train.checkpoint_every = 0
    cfg.budget.max_flops = args.budget * (LONG["budget"] if long else 1.0)
    cfg.out = str(out_dir)
    cfg.report = False
    return cfg, DataSplit(train_pool, target, data.source)


def record(args) -> None:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from budgetune.config import RunConfig
    from budgetune.data import load_data
    from budgetune.models import load_model, load_tokenizer
    from budgetune.train.loop import train

    tokenizer = load_tokenizer("smollm2-135m")
    data = load_data(RunConfig().data, tokenizer)
    for name, *_ in RUNS:
        run_dir = OUT / "governor_runs" / name
        if (run_dir / "summary.json").exists():
            print(f"{name}: recorded already", flush=True)
            continue
        cfg, split = _setting(name, args, data, run_dir)
        t0 = time.perf_counter()
        result = train(cfg, model=load_model("smollm2-135m"), tokenizer=tokenizer, data=split, progress=False)
        print(f"{name}: {len(result.evals)} evals, loss {result.before_loss:.4f} -> {result.after_loss:.4f}, "
              f"{result.ledger.steps} steps, {time.perf_counter() - t0:.0f} s", flush=True)


def load_curves() -> dict[str, dict]:
    curves = {}
    for name, cats, pool, method, lr in RUNS:
        path = OUT / "governor_runs" / name / "metrics.jsonl"
        if not (path.parent / "summary.json").exists():  # not recorded to the end (yet)
            continue
        evals = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
        evals = [e for e in evals if e.get("kind") == "eval"]
        budget = json.loads((OUT / "governor_runs" / name / "config.json").read_text())["budget"]["max_flops"]
        curves[name] = {"evals": evals, "budget": budget, "method": method, "lr": lr, "target": "+".join(cats),
                        "pool": pool}
    return curves


def replay(name: str, options: dict, curve: dict) -> dict:
    from budgetune.budget import Budget, Ledger
    from budgetune.governor import make

    budget = Budget(max_flops=curve["budget"])
    governor = make(name, options, budget)
    evals = curve["evals"]
    stop_at, decisions = len(evals) - 1, []
    for i, e in enumerate(evals[1:], 1):  # the evaluation before training is not a decision point in the loop
        ledger = Ledger()
        ledger.charge("train", e["train_flops"])
        ledger.charge("eval", e["flops"] - e["train_flops"])
        d = governor.decide(e, ledger, budget)
        decisions.append({"i": i, "action": d.action, "reason": d.reason})
        if d.action == "stop":
            stop_at = i
            break
    e = evals[stop_at]
    return {"flops": e["flops"], "loss": e["eval_loss"], "stop_eval": stop_at, "decisions": decisions}


def replay_arms(name: str, options: dict, group: dict) -> dict:
    from budgetune.governor import make
    from budgetune.governor.arms import orchestrate, replay_advance

    total = max(c["budget"] for c in group.values())
    curves = {k: ([e["flops"] for e in c["evals"]], [e["eval_loss"] for e in c["evals"]]) for k, c in group.items()}
    result = orchestrate(make(name, options), list(group), total, replay_advance(curves), initial_share=1 / 9)
    return {"flops": result.flops_used, "loss": result.best_loss, "best": result.best,
            "rounds": [(d["action"], d["reason"]) for d in result.decisions]}


def main(argv=None) -> int:
    import governor_real as real  # part 4; imported here, as it reads this module's suite
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=3e12, help="FLOP budget of each recorded run")
    ap.add_argument("--evals", type=int, default=10, help="evaluations spread over each run's budget")
    ap.add_argument("--target-size", type=int, default=8, help="held-out examples per target (evaluation cost)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--replay-only", action="store_true")
    ap.add_argument("--governed", nargs="*", choices=list(real.GOVERNED), default=None, metavar="POLICY",
                    help=f"also run these policies for real with decay on stop (none given: marginal); "
                         f"choices: {', '.join(real.GOVERNED)}")
    ap.add_argument("--runs", nargs="*", default=None, help="suite runs to govern (default: GOVERNED_RUNS)")
    args = ap.parse_args(argv)
    if args.governed is not None and not args.governed:
        args.governed = ["marginal + cooldown"]
    if not args.replay_only:
        record(args)
    if args.governed and not args.replay_only:
        real.run_governed(args, _setting)
    curves = load_curves()
    if not curves:
        print("nothing recorded yet; run without --replay-only", file=sys.stderr)
        return 1

    rows, per_policy = [], {p: [] for p, _, _ in POLICIES}
    for run, curve in curves.items():
        losses = [e["eval_loss"] for e in curve["evals"]]
        oracle = min(range(len(losses)), key=lambda i: losses[i])
        o_loss, o_flops = losses[oracle], curve["evals"][oracle]["flops"]
        fixed_flops = curve["evals"][-1]["flops"]
        for label, gname, options in POLICIES:
            r = replay(gname, options, curve)
            r.update(run=run, policy=label, oracle_loss=o_loss, oracle_flops=o_flops,
                     regret=(r["loss"] - o_loss) / o_loss, flops_vs_fixed=r["flops"] / fixed_flops)
            rows.append(r)
            per_policy[label].append(r)

    fixed = {r["run"]: r for r in per_policy["fixed"]}
    summary = []
    suites = {"all": lambda run: True,
              "A (large pools)": lambda run: not run.startswith(("small-", "long-")),
              "B (small pools)": lambda run: run.startswith("small-"),
              "C (A with 4x budget)": lambda run: run.startswith("long-")}
    for (suite, keep), (label, _, _) in ((x, y) for x in suites.items() for y in POLICIES):
        rs = [r for r in per_policy[label] if keep(r["run"])]
        if not rs:
            continue
        flops = sum(r["flops"] for r in rs) / sum(fixed[r["run"]]["flops"] for r in rs)
        dloss = [(r["loss"] - fixed[r["run"]]["loss"]) / fixed[r["run"]]["loss"] for r in rs]
        summary.append({"suite": suite, "policy": label, "flops_vs_fixed": flops, "mean_loss_vs_fixed": statistics.mean(dloss),
                        "worst_loss_vs_fixed": max(dloss), "mean_regret": statistics.mean(r["regret"] for r in rs),
                        "runs": len(rs)})

        if label == POLICIES[-1][0]:
            # What any stopping rule could at best achieve on these curves: stop exactly at the lowest loss.
            fx = [r for r in per_policy["fixed"] if keep(r["run"])]
            o_dloss = [(r["oracle_loss"] - r["loss"]) / r["loss"] for r in fx]
            summary.append({"suite": suite, "policy": "oracle (hindsight)",
                            "flops_vs_fixed": sum(r["oracle_flops"] for r in fx) / sum(r["flops"] for r in fx),
                            "mean_loss_vs_fixed": statistics.mean(o_dloss), "worst_loss_vs_fixed": max(o_dloss),
                            "mean_regret": 0.0, "runs": len(fx)})

    groups: dict[str, dict] = {}
    for run, curve in curves.items():
        prefix = "small " if run.startswith("small-") else "long " if run.startswith("long-") else ""
        groups.setdefault(prefix + curve["target"], {})[run] = curve
    arm_rows = []
    for target, group in groups.items():
        if len(group) < 2:
            continue
        best_single = min(min(e["eval_loss"] for e in c["evals"]) for c in group.values())
        for label, gname, options in ARM_POLICIES:
            r = replay_arms(gname, options, group)
            r.update(target=target, policy=label, arms=len(group), oracle_loss=best_single,
                     regret=(r["loss"] - best_single) / best_single, budget=max(c["budget"] for c in group.values()))
            arm_rows.append(r)

    grows = real.load_governed(curves)
    gsummary = real.governed_summary(grows, rows, curves)
    md = render(curves, rows, summary, arm_rows, real.render(grows, gsummary), gsummary)
    print(md)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "governor.json").write_text(json.dumps({"rows": rows, "summary": summary, "arms": arm_rows,
                                                   "governed": grows, "governed_summary": gsummary,
                                                   "runs": {k: {kk: vv for kk, vv in v.items()}
                                                            for k, v in curves.items()}}, indent=1, default=str))
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(md)
    return 0


def render(curves, rows, summary, arm_rows, governed_md=(), gsummary=()) -> str:
    out = ["# Benchmark: governor", "",
           "Produced by `bench/governor.py` (numbers as measured; FLOPs include the dense evaluations).", "",
           "## Runs (each to its full fixed budget)", "",
           "| run | target | pool | method | lr | evals | loss before → at end | oracle loss (at % of budget) |",
           "|---|---|---|---|---|---|---|---|"]
    for name, c in curves.items():
        ls = [e["eval_loss"] for e in c["evals"]]
        i = min(range(len(ls)), key=lambda k: ls[k])
        out.append(f"| {name} | {c['target']} | {c['pool']} | {c['method']} | {c['lr']:g} | {len(ls)} | "
                   f"{ls[0]:.4f} → {ls[-1]:.4f} | {ls[i]:.4f} ({100 * c['evals'][i]['flops'] / c['budget']:.0f}%) |")
    out += ["", "## Single-run policies, replayed on the recorded curves", "",
            "| run | policy | FLOPs vs fixed | final loss | regret vs oracle | stopped at eval |",
            "|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['run']} | {r['policy']} | {100 * r['flops_vs_fixed']:.0f}% | {r['loss']:.4f} | "
                   f"{100 * r['regret']:+.2f}% | {r['stop_eval']} |")
    out += ["", "## Summary over the suite", "",
            ("| suite | runs | policy | FLOPs vs fixed (sum) | loss vs fixed (mean) | loss vs fixed (worst run) | "
            "regret vs oracle (mean) |"),
            "|---|---|---|---|---|---|---|"]
    for s in summary:
        out.append(f"| {s['suite']} | {s['runs']} | {s['policy']} | {100 * s['flops_vs_fixed']:.0f}% | {100 * s['mean_loss_vs_fixed']:+.2f}% | "
                   f"{100 * s['worst_loss_vs_fixed']:+.2f}% | {100 * s['mean_regret']:+.2f}% |")
    if arm_rows:
        out += ["", "## Arms: runs sharing a target split one run's budget", "",
                "| target | arms | policy | FLOPs used (of one budget) | best arm | its loss | regret vs best arm's oracle |",
                "|---|---|---|---|---|---|---|"]
        for r in arm_rows:
            out.append(f"| {r['target']} | {r['arms']} | {r['policy']} | {100 * r['flops'] / r['budget']:.0f}% | "
                       f"{r['best']} | {r['loss']:.4f} | {100 * r['regret']:+.2f}% |")
    marginal = next(s for s in summary if s["policy"] == "marginal" and s["suite"] == "all")
    out += ["", "## Decisions of the marginal governor (last decision of each run)", ""]
    for r in rows:
        if r["policy"] == "marginal" and r["decisions"]:
            d = r["decisions"][-1]
            out.append(f"- {r['run']}, eval {d['i']}: **{d['action']}** — {d['reason']}")
    out += list(governed_md)
    out += ["", (f"Marginal governor over the suite (replay, no cooldown): {100 * (1 - marginal['flops_vs_fixed']):.0f}% fewer FLOPs than "
                f"fixed, mean loss {100 * marginal['mean_loss_vs_fixed']:+.2f}% vs fixed "
                f"(worst run {100 * marginal['worst_loss_vs_fixed']:+.2f}%).")]
    for g in gsummary:
        if g["policy"] == g["set"].split(": ")[0] + " (real)":
            out.append(f"{g['policy']} over {g['set'].split(': ')[1]} ({g['runs']} runs): "
                       f"{100 * (1 - g['flops_vs_fixed']):.0f}% fewer FLOPs than fixed, mean loss "
                       f"{100 * g['mean_loss_vs_fixed']:+.2f}% vs fixed (worst run {100 * g['worst_loss_vs_fixed']:+.2f}%).")
    out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
