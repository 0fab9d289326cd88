"""Benchmark `selection`: which training subset buys the lowest held-out target loss for the same training FLOPs?

Real model and data: SmolLM2-135M-Instruct with LoRA (the project's `train()`), chatterbot-corpus. The target task
is a few categories (default ai and science). Their prompts are split by hash into a pool half, a dev part
(the target examples the scorers see) and a test part (the held-out target loss). The pool is that half plus a
random sample of the other categories. A `noisy` variant shuffles the responses of a share of the pool between
examples (label noise). Each scorer scores the pool once (seed 0); each (budget, seed) selection then trains a fresh
LoRA under the same training FLOPs. Scoring FLOPs are reported next to the loss: selection is only worth it when
they are small next to the training they save.

Every run gets the same training FLOPs: by default those of one pass over a random 20% of the pool (batch 8,
padded as training pads), what a user with a fixed compute budget and no selection would spend on a random subset.
A 5% selection is thus seen about four times, the full pool (a random stream) once over its first 20%.

A scorer is named `scorer` (its default strategy) or `scorer:strategy`, so one score can be shown under several
strategies; a `+dedup` suffix drops near-duplicates from the order (MinHash, Jaccard 0.8) before the budget is taken. To fit a shared 2-core CPU, examples use an empty system prompt (the model's default one is 16 tokens of
every example), the pool is some hundreds of examples, not the whole corpus, and the costly scorers run with one
warm-up run / checkpoint; the sizes are printed and written to the doc. Scores and finished runs are cached in
bench/out/ under a fingerprint of the data and training settings, so an interrupted run continues where it stopped
and a changed setting starts afresh. Runs go seed by seed (all rows of seed 0 first), so a partial run has every row.

    OMP_NUM_THREADS=1 nice -n 5 python bench/selection.py   # the table (about an hour here)
    python bench/selection.py --quick                       # a smoke run: 1 seed, 2 scorers
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

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
DOC = ROOT / "docs" / "benchmarks" / "selection.md"

# Costly scorers are run lighter than their defaults so the whole table fits the machine; the table says so.
SCORER_OPTIONS = {
    "el2n": {"runs": 1, "warmup_steps": 4},
    "grand": {"runs": 1, "warmup_steps": 4},
    "s2l": {"checkpoints": 2, "warmup_steps": 6, "clusters": 10},
    "less": {"checkpoints": 1, "warmup_steps": 8, "k": 512},
    "rho": {"holdout_steps": 6},
}


def hash01(text: str) -> float:
    return int(hashlib.sha1(text.encode("utf-8")).hexdigest()[:8], 16) / 16**8


def build(tokenizer, args, noisy: bool):
    """(pool, dev, test) Examples; the pool's `meta['target']` marks examples of the target categories."""
    from budgetune.data.embedded import chatterbot_records
    from budgetune.data.examples import chat_example

    records = chatterbot_records()
    targets = set(args.target)
    inside = [r for r in records if r["category"] in targets]
    others = [r for r in records if r["category"] not in targets]
    pool_half = [r for r in inside if hash01(r["prompt"]) < 0.5]
    dev = [r for r in inside if 0.5 <= hash01(r["prompt"]) < 0.7]
    test = [r for r in inside if hash01(r["prompt"]) >= 0.7][: args.test]
    rng = np.random.default_rng(0)
    n_other = max(0, args.pool - len(pool_half))
    pool = pool_half + [others[i] for i in rng.choice(len(others), n_other, replace=False)]
    pool = [dict(r) for r in pool]
    if noisy:
        chosen = rng.choice(len(pool), round(args.noise * len(pool)), replace=False)
        responses = [pool[i]["response"] for i in chosen]
        shift = np.roll(np.arange(len(chosen)), 1)  # a cyclic shift: every chosen example gets another's answer
        for i, j in zip(chosen, shift):
            pool[i]["response"] = responses[j]
            pool[i]["noisy"] = True

    def examples(rows, kind):
        out = []
        for r in rows:
            messages = [{"role": "system", "content": ""}, {"role": "user", "content": r["prompt"]},
                        {"role": "assistant", "content": r["response"]}]
            e = chat_example(tokenizer, messages, args.max_seq_len, r["category"])
            e.meta.update({"target": r["category"] in targets, "noisy": bool(r.get("noisy")), "part": kind})
            if e.n_target_tokens:
                out.append(e)
        return out

    return examples(pool, "pool"), examples(dev, "dev"), examples(test, "test")


DEDUP = "+dedup"


def split(label: str) -> tuple[str, str | None]:
    """'loss:stratified' → ('loss', 'stratified'); 'loss' → ('loss', None: the scorer's default strategy).
    A '+dedup' suffix (near-duplicate removal after ordering, MinHash Jaccard 0.8) is not part of either."""
    name, _, strategy = label.removesuffix(DEDUP).partition(":")
    return name, strategy or None


def pick(entry, label, pool, budget, seed):
    from budgetune.selection import strategies
    from budgetune.selection.protocol import Scores
    from budgetune.selection.sizing import parse_budget, take

    name, strategy = split(label)
    if name == "full":
        return np.arange(len(pool)), "all"
    values = np.asarray(entry["values"])
    if name == "random":
        values = np.random.default_rng(seed).random(len(pool))
    strategy = strategy or entry["strategy"]
    scores = Scores(values, entry["flops"], keep=None if entry["keep"] is None else np.asarray(entry["keep"]),
                    groups=None if entry["groups"] is None else np.asarray(entry["groups"]))
    ranked = strategies.order(scores, strategy, seed=seed)
    if label.endswith(DEDUP):
        from budgetune.selection.dedup import drop_near_duplicates

        ranked = drop_near_duplicates(pool, ranked, 0.8)
    return take(ranked, np.array([e.n_tokens for e in pool]), parse_budget(budget)), strategy


def pass_flops(base, pool, share, batch, seed=0):
    """Training FLOPs of one pass over a random `share` of the pool in batches of `batch`: the per-run budget."""
    from budgetune.flops import train_step_flops

    profile = _lora_profile(base)
    idx = np.random.default_rng(seed).permutation(len(pool))[: max(batch, round(share * len(pool)))]
    lengths = [pool[i].n_tokens for i in idx]
    return sum(train_step_flops(profile, len(lengths[i: i + batch]), max(lengths[i: i + batch]))
               for i in range(0, len(lengths), batch))


def train_once(base, tokenizer, subset, test, seed, args, max_flops):
    """LoRA on `subset` with the project's `train()` until the next step would pass `max_flops` training FLOPs;
    then the held-out loss on `test`. Returns (loss, training FLOPs, steps).

    The run evaluates `test` before training and at the end only (eval_every beyond any step), and its FLOP budget
    is `max_flops` plus those two evaluations, so the loop's own stop rule (spent + next step + the reserved final
    evaluation within the budget) leaves exactly `max_flops` for training: no run trains on more FLOPs than another
    may. The run directory is a temporary one, removed afterwards.
    """
    import shutil
    import tempfile

    from budgetune.config import RunConfig
    from budgetune.data import DataSplit
    from budgetune.train.evalplan import evaluation_flops
    from budgetune.train.loop import train

    cfg = RunConfig()
    cfg.model.model = "smollm2-135m"
    cfg.report = False
    cfg.train.method, cfg.train.precision, cfg.train.seed = "lora", "fp32", seed
    cfg.train.micro_batch_size, cfg.train.grad_accum, cfg.train.lr = args.batch, 1, args.lr
    cfg.train.warmup_steps, cfg.train.decay_fraction, cfg.train.min_lr_ratio = 2, 0.2, 0.1
    cfg.train.eval_every, cfg.train.eval_batch_size = 10**9, 32
    cfg.train.checkpoint_every, cfg.train.keep_checkpoints = 0, 1
    # the loop's evaluation FLOPs from the batch shapes, on the LoRA model's profile as the loop counts them
    evaluation = evaluation_flops(_lora_profile(base), [e.n_tokens for e in test], cfg.train.eval_batch_size)
    cfg.budget.max_flops = max_flops + 2 * evaluation
    out = Path(tempfile.mkdtemp(prefix="selection-run-"))
    cfg.out = str(out / "run")
    try:
        r = train(cfg, model=copy.deepcopy(base), tokenizer=tokenizer, data=DataSplit(list(subset), list(test), "bench"),
                  progress=False)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return r.after_loss, r.ledger.flops["train"], r.ledger.steps


_PROFILES: dict = {}


def _lora_profile(base):
    """The FLOP profile of `base` with the default LoRA adapters, as training and evaluation read it (once)."""
    if id(base) not in _PROFILES:
        from accelerate import Accelerator

        from budgetune.flops import profile_from_model
        from budgetune.methods import lora
        from budgetune.methods.base import TrainContext

        stepper = lora.prepare(copy.deepcopy(base), lora.Config(), TrainContext(accelerator=Accelerator(cpu=True)))
        _PROFILES[id(base)] = profile_from_model(stepper.unwrapped)
    return _PROFILES[id(base)]


def save_json(path, obj):
    from budgetune import atomic

    atomic.write_json(path, obj)


def plan(args):
    """(variant, budget, scorer) in priority order; main() runs seed by seed through it."""
    jobs = [("clean", "5%", s) for s in ["full", "random"] + args.scorers]
    jobs += [("noisy", "5%", s) for s in ["full", "random"] + args.scorers]
    jobs += [(v, "5%", s) for v in ("clean", "noisy") for s in args.late_scorers]
    for budget in ("10%", "20%"):
        jobs += [(v, budget, s) for v in ("clean", "noisy") for s in ["random"] + args.wide_scorers]
    return jobs


def schedule(args, jobs):
    """(seed, job) in run order. For the main 5% rows: seed 0 of each, then the other seeds of the `--first` rows,
    then those of the rest; the late scorers and the wider budgets after that, seed by seed."""
    seeds = range(min(args.seeds, args.only_seeds or args.seeds))
    main = [j for j in jobs if j[1] == "5%" and j[2] in ["full", "random"] + args.scorers]
    rest = [j for j in jobs if j not in main]
    later = [(s, j) for s in seeds[1:] for j in main]
    later.sort(key=lambda sj: sj[1][2] not in args.first)  # a stable sort: seed by seed within each group
    return [(0, j) for j in main] + later + [(s, j) for s in seeds for j in rest]


def fingerprint(args, *fields) -> str:
    settings = {f: getattr(args, f) for f in fields}
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", nargs="+", default=["ai", "science"])
    p.add_argument("--pool", type=int, default=600)
    p.add_argument("--test", type=int, default=40, help="test examples (held-out loss)")
    p.add_argument("--noise", type=float, default=0.3)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--train-share", type=float, default=0.2,
                   help="training FLOPs per run: one pass over this random share of the pool")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--max-seq-len", type=int, default=64)
    p.add_argument("--scorers", nargs="+", default=["dsir", "ifd", "less", "el2n", "loss"],
                   help="scorer, scorer:strategy, optionally +dedup; run at 5%% on both variants first")
    p.add_argument("--late-scorers", nargs="*", default=["length", "loss:stratified", "rho", "s2l", "grand"],
                   help="run at 5%% after the first scorers (the costliest or least promising)")
    p.add_argument("--wide-scorers", nargs="*", default=["dsir", "ifd", "less"], help="run at 10%% and 20%% last")
    p.add_argument("--first", nargs="+", default=["full", "random", "ifd", "dsir"],
                   help="rows whose seeds 1.. run before the other rows' (seed 0 runs first for every row)")
    p.add_argument("--only-seeds", type=int, default=None, help="stop after this many seeds of every job")
    p.add_argument("--quick", action="store_true", help="smoke run: pool 160, 1 seed, 2 scorers")
    p.add_argument("--fresh", action="store_true", help="ignore cached scores and runs in bench/out/")
    p.add_argument("--report-only", action="store_true", help="write the table from the cached runs; train nothing")
    args = p.parse_args(argv)
    if args.quick:
        args.pool, args.seeds, args.test = 160, 1, 8
        args.scorers, args.late_scorers, args.wide_scorers = ["dsir", "loss"], [], []
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from budgetune.models import load_model, load_tokenizer

    OUT.mkdir(parents=True, exist_ok=True)
    data_fp = fingerprint(args, "target", "pool", "noise", "max_seq_len") + fingerprint_options()
    run_fp = fingerprint(args, "target", "pool", "test", "noise", "max_seq_len", "train_share", "lr", "batch")
    tag = "_quick" if args.quick else ""
    scores_path = OUT / f"selection_scores{tag}_{data_fp}.json"
    runs_path = OUT / f"selection_runs{tag}_{run_fp}.jsonl"
    if args.fresh:
        scores_path.unlink(missing_ok=True)
        runs_path.unlink(missing_ok=True)
    cache = json.loads(scores_path.read_text()) if scores_path.exists() else {}
    done = {}
    if runs_path.exists():
        for line in runs_path.read_text().splitlines():
            r = json.loads(line)
            done[(r["variant"], r["budget"], r["scorer"], r["seed"])] = r

    tokenizer = load_tokenizer("smollm2-135m")
    base = load_model("smollm2-135m")
    data = {v: build(tokenizer, args, v == "noisy") for v in ("clean", "noisy")}
    pool, dev, test = data["clean"]
    max_flops = pass_flops(base, pool, args.train_share, args.batch)
    print(f"pool {len(pool)} ({sum(e.meta['target'] for e in pool)} of the target categories), dev {len(dev)}, "
          f"test {len(test)}; mean {np.mean([e.n_tokens for e in pool]):.0f} tokens/example; {max_flops:.3g} "
          f"training FLOPs per run; runs in {runs_path.name}", flush=True)
    jobs = plan(args)
    for seed, (variant, budget, label) in [] if args.report_only else schedule(args, jobs):
        key = (variant, budget, label, seed)
        if key in done:
            continue
        vpool = data[variant][0]
        name, _ = split(label)
        if name not in ("full", "random") and f"{variant}/{name}" not in cache:
            score_all_into(base, variant, vpool, dev, [name], cache, scores_path)
        entry = cache.get(f"{variant}/{name}", {"values": [0.0] * len(vpool), "flops": 0.0, "keep": None,
                                                 "groups": None, "strategy": "topk", "seconds": 0.0})
        chosen, strategy = pick(entry, label, vpool, budget, seed)
        subset = [vpool[i] for i in chosen]
        t0 = time.perf_counter()
        loss, tflops, steps = train_once(base, tokenizer, subset, test, seed, args, max_flops)
        r = {"variant": variant, "budget": budget, "scorer": label, "strategy": strategy, "seed": seed,
             "loss": loss, "train_flops": tflops, "steps": steps, "selected": len(subset),
             "target_share": float(np.mean([e.meta["target"] for e in subset])),
             "noisy_share": float(np.mean([e.meta["noisy"] for e in subset])),
             "scoring_flops": 0.0 if name in ("full", "random") else entry["flops"],
             "scoring_seconds": 0.0 if name in ("full", "random") else entry["seconds"],
             "seconds": time.perf_counter() - t0}
        done[key] = r
        with open(runs_path, "a") as f:
            f.write(json.dumps(r) + "\n")
        print(f"  {variant} {budget} {label} seed {seed}: loss {loss:.4f} ({steps} steps, {tflops:.3g} train "
              f"FLOPs, target share {r['target_share']:.2f}, noisy {r['noisy_share']:.2f}, {r['seconds']:.0f} s)",
              flush=True)
    report(args, done, jobs, pool, dev, test, tag, max_flops)
    return 0


def fingerprint_options() -> str:
    return hashlib.sha1(json.dumps(SCORER_OPTIONS, sort_keys=True).encode()).hexdigest()[:4]


def score_all_into(model, variant, pool, dev, scorers, cache, path):
    from budgetune.selection import registry

    for name in scorers:
        key = f"{variant}/{name}"
        if key in cache:
            continue
        scorer = registry.make(name, SCORER_OPTIONS.get(name, {}))
        t0 = time.perf_counter()
        s = scorer.score(model, pool, dev)
        cache[key] = {"values": s.values.tolist(), "flops": s.flops, "seconds": time.perf_counter() - t0,
                      "keep": None if s.keep is None else np.asarray(s.keep).tolist(),
                      "groups": None if s.groups is None else np.asarray(s.groups).tolist(),
                      "strategy": scorer.default_strategy}
        print(f"  scored {key}: {s.flops:.3g} FLOPs in {cache[key]['seconds']:.0f} s", flush=True)
        save_json(path, cache)


def report(args, done, jobs, pool, dev, test, tag, max_flops):
    rows = []
    for variant, budget, label in dict.fromkeys(jobs):
        runs = [done[k] for k in done if k[:3] == (variant, budget, label)]
        if not runs:
            continue
        losses = [r["loss"] for r in runs]
        rows.append({"variant": variant, "budget": budget if label != "full" else "100%", "scorer": label,
                     "strategy": runs[0].get("strategy", ""), "seeds": len(runs),
                     "loss_mean": statistics.mean(losses),
                     "loss_std": statistics.stdev(losses) if len(losses) > 1 else 0.0,
                     "selected": runs[0]["selected"], "target_share": statistics.mean(r["target_share"] for r in runs),
                     "noisy_share": statistics.mean(r["noisy_share"] for r in runs),
                     "scoring_flops": runs[0]["scoring_flops"], "scoring_seconds": runs[0]["scoring_seconds"],
                     "train_flops": statistics.mean(r["train_flops"] for r in runs),
                     "steps": statistics.mean(r["steps"] for r in runs)})

    def ref(r, name, same_budget):
        return next((x for x in rows if x["variant"] == r["variant"] and x["scorer"] == name
                     and (x["budget"] == r["budget"] or not same_budget)), None)

    for r in rows:
        rnd, full = ref(r, "random", True), ref(r, "full", False)
        r["vs_random"] = None if rnd is None or r["scorer"] in ("random", "full") else r["loss_mean"] - rnd["loss_mean"]
        r["vs_full"] = None if full is None or r["scorer"] == "full" else r["loss_mean"] - full["loss_mean"]
    header = ("| variant | budget | scorer | strategy | selected | target share | noisy share | held-out loss "
              "(mean ± sd) | Δ vs random | Δ vs full | scoring FLOPs | scoring s | train FLOPs (steps) |")
    lines = [header, "|" + "---|" * 13]
    fmt = lambda x: "" if x is None else f"{x:+.4f}"
    for r in rows:
        lines.append(f"| {r['variant']} | {r['budget']} | {r['scorer'].split(':')[0]} | {r['strategy']} | "
                     f"{r['selected']} | {r['target_share']:.2f} | {r['noisy_share']:.2f} | {r['loss_mean']:.4f} ± "
                     f"{r['loss_std']:.4f} (n={r['seeds']}) | {fmt(r['vs_random'])} | {fmt(r['vs_full'])} | "
                     f"{r['scoring_flops']:.3g} | {r['scoring_seconds']:.0f} | {r['train_flops']:.3g} "
                     f"({r['steps']:.0f}) |")
    table = "\n".join(lines)
    print(table)
    sizes = (f"Pool {len(pool)} examples ({sum(e.meta['target'] for e in pool)} from the target categories "
             f"{', '.join(args.target)}: their training half; the rest a random sample of the other categories), "
             f"{len(dev)} dev target examples shown to the scorers, {len(test)} test examples for the held-out loss; "
             f"mean {np.mean([e.n_tokens for e in pool]):.0f} tokens per example (empty system prompt, max "
             f"{args.max_seq_len} tokens). Noisy variant: {args.noise:.0%} of the pool's responses shuffled between "
             f"examples (dev and test stay clean). Training: LoRA r=16 on all linear layers, lr {args.lr} (WSD), "
             f"batch {args.batch}, {max_flops:.3g} training FLOPs per run = one pass over a random "
             f"{args.train_share:.0%} of the pool (one evaluation at the end), {args.seeds} seeds (training seed = "
             f"selection tie-break seed; scores computed once with seed 0). Lighter scorer settings than the "
             f"defaults: {json.dumps(SCORER_OPTIONS)}.")
    save_json(OUT / f"selection{tag}.json", {"rows": rows, "sizes": sizes, "args": vars(args)})
    if not args.quick:
        from budgetune import atomic

        # The hand-written reading below the marker survives a rerun; the table above it is regenerated.
        marker = "<!-- reading: hand-written, kept by bench/selection.py -->"
        old = DOC.read_text() if DOC.exists() else ""
        reading = old[old.index(marker):] if marker in old else marker + "\n"
        atomic.write_text(DOC, "# Benchmark: selection\n\nProduced by `bench/selection.py`; numbers as measured "
                          "on a shared 2-core CPU.\n\n" + sizes + "\n\n" + table + "\n\n" + reading)


if __name__ == "__main__":
    sys.exit(main())
