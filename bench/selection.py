"""Benchmark `selection`: which training subset buys the lowest held-out target loss for the same training FLOPs?

Real model and data: SmolLM2-135M-Instruct with LoRA (the project's `train()`), chatterbot-corpus. The target task
is a few categories (default ai and science). Their prompts are split by hash into a pool half, a dev part
(the target examples the scorers see) and a test part (the held-out target loss). The pool is that half plus a
random sample of the other categories. A `noisy` variant shuffles the responses of a share of the pool between
examples (label noise). Each scorer scores the pool once (seed 0); each (budget, seed) selection then trains a fresh
LoRA under the same training FLOPs. Scoring FLOPs are reported next to the loss: selection is only worth it when
they are small next to the training they save.

To fit a shared 2-core CPU, examples use an empty system prompt (the model's default one is 16 tokens of every
example), the pool is small, and the costly scorers run with one warm-up run / checkpoint; the sizes are printed and
written to the doc. Results are cached per run in bench/out/, so an interrupted run continues where it stopped.

    nice -n 5 python bench/selection.py            # the full table (tens of minutes here)
    python bench/selection.py --quick              # a smoke run: tiny pool, 1 seed, 3 scorers
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
    "less": {"checkpoints": 1, "warmup_steps": 6, "k": 512},
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
        chosen = rng.choice(len(pool), int(round(args.noise * len(pool))), replace=False)
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


def pick(entry, name, pool, budget, seed):
    from budgetune.selection import strategies
    from budgetune.selection.protocol import Scores
    from budgetune.selection.sizing import parse_budget, take

    if name == "full":
        return np.arange(len(pool))
    values = np.asarray(entry["values"])
    if name == "random":
        values = np.random.default_rng(seed).random(len(pool))
    scores = Scores(values, entry["flops"], keep=None if entry["keep"] is None else np.asarray(entry["keep"]),
                    groups=None if entry["groups"] is None else np.asarray(entry["groups"]))
    ranked = strategies.order(scores, entry["strategy"], seed=seed)
    return take(ranked, np.array([e.n_tokens for e in pool]), parse_budget(budget))


def train_once(base, tokenizer, subset, test, seed, args, max_flops):
    """LoRA on `subset` until the next step would pass `max_flops` training FLOPs; then the held-out loss.

    The project's method, stepper, schedule and evaluation, in a loop that evaluates once: `train()` also evaluates
    before training and midway, which here tripled the cost of every run without changing its result.
    """
    import torch
    from accelerate import Accelerator

    from budgetune.data import collate
    from budgetune.methods import lora
    from budgetune.methods.base import TrainContext
    from budgetune.train.evaluate import heldout_loss
    from budgetune.train.schedule import wsd_lr

    accelerator = Accelerator(cpu=True)
    torch.manual_seed(seed)
    stepper = lora.prepare(copy.deepcopy(base), lora.Config(), TrainContext(accelerator=accelerator, seed=seed))
    from budgetune.flops import profile_from_model, train_step_flops

    profile = profile_from_model(stepper.unwrapped)
    rng = np.random.default_rng(seed)
    order, cursor, spent, steps = rng.permutation(len(subset)), 0, 0.0, 0
    while True:
        if cursor + args.batch > len(order):
            order, cursor = np.concatenate([order[cursor:], rng.permutation(len(subset))]), 0
        batch = collate([subset[i] for i in order[cursor: cursor + args.batch]], tokenizer.pad_token_id)
        # Stop before a step the budget cannot pay for, so no run trains on more FLOPs than another may.
        if spent + train_step_flops(profile, *batch["input_ids"].shape) > max_flops:
            break
        cursor += args.batch
        lr = wsd_lr(args.lr, steps, warmup_steps=2, progress=spent / max_flops, decay_fraction=0.2, min_ratio=0.1)
        result = stepper.step([batch], lr)
        spent, steps = spent + result.flops, steps + 1
    loss, _, _ = heldout_loss(stepper.model, test, pad_id=tokenizer.pad_token_id, batch_size=32,
                              accelerator=accelerator)
    return loss, spent, steps


def save_json(path, obj):
    from budgetune import atomic

    atomic.write_json(path, obj)


def plan(args):
    """(variant, budget, scorer) in the order they run: the 5% table first, so a partial run is already useful."""
    jobs = [("clean", "5%", s) for s in ["full", "random"] + args.scorers]
    jobs += [("noisy", "5%", s) for s in ["full", "random"] + args.noisy_scorers]
    for budget in ("10%", "20%"):
        jobs += [("clean", budget, s) for s in ["random"] + args.wide_scorers]
    jobs += [("clean", "5%", s) for s in args.late_scorers]
    return jobs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", nargs="+", default=["ai", "science"])
    p.add_argument("--pool", type=int, default=160)
    p.add_argument("--test", type=int, default=32, help="test examples (held-out loss)")
    p.add_argument("--noise", type=float, default=0.3)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--train-flops", type=float, default=8e11)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--max-seq-len", type=int, default=64)
    p.add_argument("--scorers", nargs="+", default=["dsir", "loss", "length", "ifd", "rho", "less"])
    p.add_argument("--late-scorers", nargs="+", default=["el2n", "s2l", "grand"],
                   help="scorers run at 5%% after everything else (the costliest or least promising)")
    p.add_argument("--noisy-scorers", nargs="+", default=["dsir", "rho", "loss"])
    p.add_argument("--wide-scorers", nargs="+", default=["dsir", "less"])
    p.add_argument("--quick", action="store_true", help="smoke run: pool 60, 1 seed, few scorers")
    p.add_argument("--fresh", action="store_true", help="ignore cached scores and runs in bench/out/")
    p.add_argument("--report-only", action="store_true", help="write the table from the cached runs; train nothing")
    args = p.parse_args(argv)
    if args.quick:
        args.pool, args.seeds, args.train_flops, args.test = 160, 1, 2e11, 8
        args.scorers, args.noisy_scorers, args.wide_scorers, args.late_scorers = ["dsir", "loss"], ["loss"], ["dsir"], []
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from budgetune.models import load_model, load_tokenizer

    OUT.mkdir(parents=True, exist_ok=True)
    tag = "_quick" if args.quick else ""
    scores_path, runs_path = OUT / f"selection_scores{tag}.json", OUT / f"selection_runs{tag}.jsonl"
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
    print(f"pool {len(pool)} ({sum(e.meta['target'] for e in pool)} of the target categories), dev {len(dev)}, "
          f"test {len(test)}; mean {np.mean([e.n_tokens for e in pool]):.0f} tokens/example", flush=True)
    max_flops = args.train_flops
    jobs = plan(args)
    for variant, budget, name in [] if args.report_only else jobs:
        vpool = data[variant][0]
        for seed in range(args.seeds):
            key = (variant, budget, name, seed)
            if key in done:
                continue
            if name not in ("full", "random") and f"{variant}/{name}" not in cache:
                score_all_into(base, variant, vpool, dev, [name], cache, scores_path)
            entry = cache.get(f"{variant}/{name}", {"values": [0.0] * len(vpool), "flops": 0.0, "keep": None,
                                                     "groups": None, "strategy": "topk", "seconds": 0.0})
            chosen = pick(entry, name, vpool, budget, seed)
            subset = [vpool[i] for i in chosen]
            t0 = time.perf_counter()
            loss, tflops, steps = train_once(base, tokenizer, subset, test, seed, args, max_flops)
            r = {"variant": variant, "budget": budget, "scorer": name, "seed": seed, "loss": loss,
                 "train_flops": tflops, "steps": steps, "selected": len(subset),
                 "target_share": float(np.mean([e.meta["target"] for e in subset])),
                 "noisy_share": float(np.mean([e.meta["noisy"] for e in subset])),
                 "scoring_flops": 0.0 if name in ("full", "random") else entry["flops"],
                 "scoring_seconds": 0.0 if name in ("full", "random") else entry["seconds"],
                 "seconds": time.perf_counter() - t0}
            done[key] = r
            with open(runs_path, "a") as f:
                f.write(json.dumps(r) + "\n")
            print(f"  {variant} {budget} {name} seed {seed}: loss {loss:.4f} ({steps} steps, {tflops:.3g} train "
                  f"FLOPs, target share {r['target_share']:.2f}, {r['seconds']:.0f} s)", flush=True)
    report(args, done, jobs, pool, dev, test, tag)
    return 0


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


def report(args, done, jobs, pool, dev, test, tag):
    rows = []
    seen = []
    for variant, budget, name in jobs:
        if (variant, budget, name) in seen:
            continue
        seen.append((variant, budget, name))
        runs = [done[k] for k in done if k[:3] == (variant, budget, name)]
        if not runs:
            continue
        losses = [r["loss"] for r in runs]
        rows.append({"variant": variant, "budget": budget if name != "full" else "100%", "scorer": name,
                     "seeds": len(runs), "loss_mean": statistics.mean(losses),
                     "loss_std": statistics.stdev(losses) if len(losses) > 1 else 0.0,
                     "selected": runs[0]["selected"], "target_share": statistics.mean(r["target_share"] for r in runs),
                     "noisy_share": statistics.mean(r["noisy_share"] for r in runs),
                     "scoring_flops": runs[0]["scoring_flops"], "scoring_seconds": runs[0]["scoring_seconds"],
                     "train_flops": statistics.mean(r["train_flops"] for r in runs)})
    for r in rows:
        ref = next((x for x in rows if x["variant"] == r["variant"] and x["budget"] == r["budget"]
                    and x["scorer"] == "random"), None)
        r["vs_random"] = None if ref is None else r["loss_mean"] - ref["loss_mean"]
    header = ("| variant | budget | scorer | selected | target share | noisy share | held-out loss (mean ± sd) | "
              "Δ vs random | scoring FLOPs | scoring s | train FLOPs |")
    lines = [header, "|" + "---|" * 11]
    for r in rows:
        delta = "" if r["vs_random"] is None or r["scorer"] == "random" else f"{r['vs_random']:+.4f}"
        lines.append(f"| {r['variant']} | {r['budget']} | {r['scorer']} | {r['selected']} | {r['target_share']:.2f} | "
                     f"{r['noisy_share']:.2f} | {r['loss_mean']:.4f} ± {r['loss_std']:.4f} (n={r['seeds']}) | {delta} | "
                     f"{r['scoring_flops']:.3g} | {r['scoring_seconds']:.0f} | {r['train_flops']:.3g} |")
    table = "\n".join(lines)
    print(table)
    sizes = (f"Pool {len(pool)} examples ({sum(e.meta['target'] for e in pool)} from the target categories "
             f"{', '.join(args.target)}), {len(dev)} dev target examples shown to the scorers, {len(test)} test "
             f"examples for the held-out loss; mean {np.mean([e.n_tokens for e in pool]):.0f} tokens per example "
             f"(empty system prompt, max {args.max_seq_len} tokens). Noisy variant: {args.noise:.0%} of the pool's "
             f"responses shuffled between examples. Training: LoRA r=16 on all linear layers, lr {args.lr}, batch "
             f"{args.batch}, {args.train_flops:.3g} training FLOPs per run (one evaluation at the end), "
             f"{args.seeds} seeds (training seed = selection tie-break seed; scores computed once with seed 0). "
             f"Lighter scorer settings than the defaults: {json.dumps(SCORER_OPTIONS)}.")
    save_json(OUT / f"selection{tag}.json", {"rows": rows, "sizes": sizes, "args": vars(args)})
    if not args.quick:
        from budgetune import atomic

        atomic.write_text(DOC, "# Benchmark: selection\n\nProduced by `bench/selection.py`; numbers as measured "
                          "on a shared 2-core CPU.\n\n" + sizes + "\n\n" + table + "\n")


if __name__ == "__main__":
    sys.exit(main())
