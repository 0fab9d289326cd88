"""Benchmark the mismatch filter (`selection: {denoise: true}`, selection/noise.py): how well does an answer's
likelihood under its own prompt against under another example's prompt find the shuffled answers?

Real model and data: SmolLM2-135M-Instruct (the whole model and truncated proxies of its first K layers and its
head) on the noisy chatterbot-corpus variant of the selection benchmarks (30% of the pool's answers shuffled by a
cyclic shift among them). Reported: ROC AUC of −margin at flagging the shuffled examples (scikit-learn), and the
filter's precision and recall at its default threshold (margin ≤ 0 dropped), with the FLOPs and seconds each
detector spent. A shuffled answer can land on an example whose own answer is the same text (the corpus repeats
pairs); those are counted apart, since no detector can tell them.

    OMP_NUM_THREADS=1 nice -n 15 python bench/selection_noise.py --pool 40
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from selection import (
    build,  # the selection benchmarks' chatterbot pool and its noisy variant
)

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
DOC = ROOT / "docs" / "benchmarks" / "selection_noise.md"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pool", type=int, default=40)
    p.add_argument("--max-seq-len", type=int, default=40)
    p.add_argument("--proxies", nargs="+", default=["4", "30"], help="layers kept (30: the whole model)")
    p.add_argument("--others", type=int, default=1, help="other prompts each answer is read after")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from budgetune import atomic
    from budgetune.models import load_model, load_tokenizer
    from budgetune.selection.noise import keep_matched, mismatch_margin
    from budgetune.selection.proxy import proxy_for

    tokenizer = load_tokenizer("smollm2-135m")
    model = load_model("smollm2-135m")
    model.eval()
    ns = argparse.Namespace(target=["ai", "science"], pool=600, test=4, noise=0.3, max_seq_len=args.max_seq_len)
    noisy_pool, _, _ = build(tokenizer, ns, True)
    clean_pool, _, _ = build(tokenizer, ns, False)
    clean = {e.messages[1]["content"]: e.messages[2]["content"] for e in clean_pool}
    keep = np.sort(np.random.default_rng(1).choice(len(noisy_pool), args.pool, replace=False))
    pool = [noisy_pool[i] for i in keep]
    shuffled = np.array([e.meta["noisy"] for e in pool])
    changed = np.array([e.meta["noisy"] and clean.get(e.messages[1]["content"]) != e.messages[2]["content"]
                        for e in pool])
    print(f"pool {len(pool)}: {shuffled.sum()} shuffled answers, {changed.sum()} of them a different text", flush=True)
    rows = []
    for layers in args.proxies:
        detector, described = proxy_for(model, int(layers))
        if detector is model:
            described = f"the whole model ({model.config.num_hidden_layers} layers)"
        t0 = time.perf_counter()
        margin, flops, _ = mismatch_margin(detector, pool, others=args.others, seed=0)
        seconds = time.perf_counter() - t0
        kept = keep_matched(margin, 0.0)
        dropped = ~kept
        row = {"detector": described, "layers": int(layers), "auc_shuffled": float(roc_auc_score(shuffled, -margin)),
               "auc_changed": float(roc_auc_score(changed, -margin)) if 0 < changed.sum() < len(pool) else None,
               "precision": float((dropped & shuffled).sum() / max(dropped.sum(), 1)),
               "recall": float((dropped & shuffled).sum() / max(shuffled.sum(), 1)), "dropped": int(dropped.sum()),
               "flops": flops, "seconds": seconds}
        rows.append(row)
        print(f"  {described}: AUC {row['auc_shuffled']:.3f} (different text only: {row['auc_changed']}); "
              f"drops {row['dropped']}, precision {row['precision']:.2f}, recall {row['recall']:.2f}; "
              f"{flops:.3g} FLOPs, {seconds:.0f} s", flush=True)
    result = {"pool": len(pool), "shuffled": int(shuffled.sum()), "changed": int(changed.sum()),
              "others": args.others, "max_seq_len": args.max_seq_len, "rows": rows}
    OUT.mkdir(parents=True, exist_ok=True)
    atomic.write_json(OUT / "selection_noise.json", result)
    lines = [("| detector | AUC (shuffled) | AUC (different text) | dropped at margin ≤ 0 | precision | recall | "
              "FLOPs | seconds |"), "|" + "---|" * 8]
    for r in rows:
        auc2 = "–" if r["auc_changed"] is None else f"{r['auc_changed']:.3f}"
        lines.append(f"| {r['detector']} | {r['auc_shuffled']:.3f} | {auc2} | {r['dropped']} | {r['precision']:.2f} | "
                     f"{r['recall']:.2f} | {r['flops']:.3g} | {r['seconds']:.0f} |")
    table = "\n".join(lines)
    print(table)
    begin, end = "<!-- table: generated by bench/selection_noise.py -->", "<!-- /table -->"
    block = (begin + f"\nPool {len(pool)} examples of the noisy chatterbot-corpus variant ({int(shuffled.sum())} "
             f"shuffled answers, {int(changed.sum())} of them a text other than the example's own), max "
             f"{args.max_seq_len} tokens, {args.others} other prompt(s) per answer.\n\n" + table + "\n" + end)
    old = DOC.read_text() if DOC.exists() else "# Benchmark: the mismatch filter\n\n" + begin + "\n" + end + "\n"
    atomic.write_text(DOC, old[: old.index(begin)] + block + old[old.index(end) + len(end):])
    return 0


if __name__ == "__main__":
    sys.exit(main())
