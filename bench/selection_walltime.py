"""Benchmark the scorers' cost model: predicted against measured wall seconds, and peak memory, for every scorer
`auto`'s cost model covers, side by side on the real SmolLM2-135M-Instruct and a small chatterbot-corpus pool.

Prediction: `budgetune.selection.auto.predict_seconds` (the scorer's predicted work over this machine's measured
forward and training throughputs and LoRA-copy time, selection/costs.py), taken just before the scorer runs.
Measured: the scorer's `score()` call. Peak memory: the process's resident set, sampled every 20 ms while the
scorer runs, above what it held just before (the model and data are already loaded). Light scorer settings keep
the whole run short; the point is the ratio, and the ratio covers the fixed costs (copies, warm-ups) small pools
expose most.

    OMP_NUM_THREADS=1 nice -n 15 python bench/selection_walltime.py --pool 8
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from selection import (
    build,  # the selection benchmarks' chatterbot pool (target categories ai, science)
)

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
DOC = ROOT / "docs" / "benchmarks" / "selection_walltime.md"

LIGHT = {
    "dsir": {},
    "loss": {"batch_size": 8},
    "ifd": {"batch_size": 8},
    "el2n": {"runs": 1, "warmup_steps": 2, "batch_size": 4},
    "grand": {"runs": 1, "warmup_steps": 2, "batch_size": 4},
    "rho": {"holdout_steps": 2, "batch_size": 4},
    "s2l": {"checkpoints": 2, "warmup_steps": 2, "clusters": 3, "batch_size": 4},
    "less": {"checkpoints": 1, "warmup_steps": 2, "k": 64, "batch_size": 4, "warmup_fraction": 0.5},
}


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """The largest resident set seen while the block runs, sampled on a thread."""

    def __enter__(self):
        self.start = self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_bytes())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pool", type=int, default=8)
    p.add_argument("--target", type=int, default=4, help="dev examples the targeted scorers read")
    p.add_argument("--max-seq-len", type=int, default=48)
    p.add_argument("--scorers", nargs="+", default=list(LIGHT))
    p.add_argument("--report-only", action="store_true", help="rewrite the doc's table from the saved JSON")
    args = p.parse_args(argv)
    if args.report_only:
        write_doc(json.loads((OUT / "selection_walltime_scorers.json").read_text()))
        return 0
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import numpy as np
    import torch

    from budgetune import atomic
    from budgetune.models import load_model, load_tokenizer
    from budgetune.selection import registry
    from budgetune.selection.auto import predict_seconds

    torch.manual_seed(0)
    tokenizer = load_tokenizer("smollm2-135m")
    model = load_model("smollm2-135m")
    model.eval()
    pool, dev, _ = build(tokenizer, argparse.Namespace(target=["ai", "science"], pool=600, test=4, noise=0.3,
                                                       max_seq_len=args.max_seq_len), False)
    keep = np.sort(np.random.default_rng(1).choice(len(pool), args.pool, replace=False))
    pool, target = [pool[i] for i in keep], dev[: args.target]
    print(f"pool {len(pool)} examples ({np.mean([e.n_tokens for e in pool]):.0f} tokens on average), target "
          f"{len(target)}; torch threads {torch.get_num_threads()}", flush=True)
    rows = []
    for name in args.scorers:
        options = LIGHT.get(name, {})
        t0 = time.perf_counter()
        predicted = predict_seconds({"scorer": name, "options": options}, model, pool, target)
        predicting = time.perf_counter() - t0
        scorer = registry.make(name, options)
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            scores = scorer.score(model if scorer.needs_model else None, pool, target)
            measured = time.perf_counter() - t0
        row = {"scorer": name, "options": options, "predicted_s": predicted, "measured_s": measured,
               "ratio": measured / max(predicted, 1e-12), "predicting_s": predicting, "flops": scores.flops,
               "peak_rss_above_start_mb": (mem.peak - mem.start) / 2 ** 20, "rss_start_mb": mem.start / 2 ** 20}
        rows.append(row)
        print(f"  {name}: predicted {predicted:.3g} s, measured {measured:.3g} s (measured/predicted "
              f"{row['ratio']:.2f}); peak RSS +{row['peak_rss_above_start_mb']:.0f} MB over "
              f"{row['rss_start_mb']:.0f} MB", flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    result = {"pool": len(pool), "target": len(target), "max_seq_len": args.max_seq_len,
              "mean_tokens": float(np.mean([e.n_tokens for e in pool])), "rows": rows}
    saved = OUT / "selection_walltime_scorers.json"
    if saved.exists():  # a run of some scorers keeps the others' rows measured on the same pool
        old = json.loads(saved.read_text())
        if all(old.get(k) == result[k] for k in ("pool", "target", "max_seq_len")):
            ran = {r["scorer"] for r in rows}
            mine = {r["scorer"]: r for r in rows}
            order = [r["scorer"] for r in old["rows"]] + [n for n in mine if n not in {r["scorer"] for r in old["rows"]}]
            result["rows"] = [mine[n] if n in ran else next(r for r in old["rows"] if r["scorer"] == n) for n in order]
    atomic.write_json(OUT / "selection_walltime_scorers.json", result)
    write_doc(result)
    return 0


def write_doc(result: dict) -> None:
    from budgetune import atomic

    lines = [("| scorer | light settings | predicted s | measured s | measured / predicted | within 2× | "
              "the prediction's own s | scoring FLOPs | peak RSS (above the start) |"), "|" + "---|" * 9]
    for r in result["rows"]:
        ok = 0.5 <= r["ratio"] <= 2.0
        lines.append(f"| {r['scorer']} | `{json.dumps(r['options'])}` | {r['predicted_s']:.3g} | {r['measured_s']:.3g} | "
                     f"{r['ratio']:.2f} | {'yes' if ok else 'no'} | {r['predicting_s']:.3g} | {r['flops']:.3g} | "
                     f"{r['rss_start_mb'] + r['peak_rss_above_start_mb']:.0f} MB (+{r['peak_rss_above_start_mb']:.0f}) |")
    table = "\n".join(lines)
    begin, end = "<!-- table: generated by bench/selection_walltime.py -->", "<!-- /table -->"
    head = (f"Pool {result['pool']} chatterbot-corpus examples ({result['mean_tokens']:.0f} tokens on average, max "
            f"{result['max_seq_len']}), {result['target']} dev examples as the target; SmolLM2-135M-Instruct; one "
            f"process, scorers one after another (so the start includes memory an earlier scorer or prediction "
            f"freed, which the allocator keeps and a later one reuses).\n\n")
    block = begin + "\n" + head + table + "\n" + end
    old = DOC.read_text() if DOC.exists() else "# Benchmark: the scorers' wall-time cost model\n\n" + begin + "\n" + end + "\n"
    if begin in old:
        old = old[: old.index(begin)] + block + old[old.index(end) + len(end):]
    atomic.write_text(DOC, old)
    print(table)


if __name__ == "__main__":
    sys.exit(main())
