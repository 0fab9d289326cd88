"""Generation-based evaluation: answer held-out prompts greedily and score the answers against the references with
token-level F1 (SQuAD-style) and ROUGE-L (rouge-score), so a fine-tune is judged by what it says, not only its loss.
"""

from __future__ import annotations

import html
import re
import string
import time
from collections import Counter

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces: the SQuAD v1.1 evaluation script's normalisation
    (Rajpurkar et al. 2016). Written out here because no maintained package exposes it without heavy dependencies."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def token_f1(prediction: str, reference: str) -> float:
    """Harmonic mean of token precision and recall over normalised words (SQuAD v1.1 `f1_score`)."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def _rouge():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def prompt_and_reference(example) -> tuple[list[dict], str] | None:
    """The chat up to the last assistant turn, and that turn's text; None for examples without chat messages."""
    messages = example.messages or []
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
    if last is None or last == 0:
        return None
    return messages[:last], messages[last]["content"]


def generation_eval(model, tokenizer, examples, *, max_new_tokens: int = 32, limit: int | None = None,
                    batch_size: int = 16, ledger=None) -> dict:
    """Greedy answers to `examples` (the first `limit` chat examples) scored against their references.

    Returns {f1, rougeL, n, flops, seconds, new_tokens, tokens (prompt + new tokens processed), max_new_tokens,
    samples: [{prompt, reference, output, f1, rougeL}]};
    f1 and rougeL are means in [0, 1] (None when no example has a chat turn to answer). FLOPs are charged to
    `ledger`'s eval phase when one is given.
    """
    from ..budget import Ledger
    from .generate import generate

    pairs = [p for p in (prompt_and_reference(e) for e in examples) if p is not None]
    if limit is not None:
        pairs = pairs[:limit]
    if not pairs:
        return {"f1": None, "rougeL": None, "n": 0, "flops": 0.0, "seconds": 0.0, "new_tokens": 0, "samples": [],
                "note": "no chat examples with a reference answer to generate for"}
    spent = Ledger()
    start = time.perf_counter()
    results = generate(model, tokenizer, [p for p, _ in pairs], max_new_tokens=max_new_tokens,
                       batch_size=batch_size, ledger=spent)
    seconds = time.perf_counter() - start
    scorer = _rouge()
    samples = []
    for (prompt, reference), r in zip(pairs, results):
        samples.append({"prompt": prompt[-1]["content"], "reference": reference, "output": r.text,
                        "f1": token_f1(r.text, reference),
                        "rougeL": scorer.score(reference, r.text)["rougeL"].fmeasure})
    flops = spent.flops["inference"]
    if ledger is not None:
        ledger.charge("eval", flops, tokens=spent.tokens["inference"])
    n = len(samples)
    return {"f1": sum(s["f1"] for s in samples) / n, "rougeL": sum(s["rougeL"] for s in samples) / n, "n": n,
            "flops": flops, "seconds": seconds, "new_tokens": sum(r.new_tokens for r in results),
            "tokens": spent.tokens["inference"],
            "max_new_tokens": max_new_tokens, "samples": samples}


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def samples_html(before: dict, after: dict, k: int = 5) -> str:
    """An HTML fragment: the scores before and after fine-tuning and `k` side-by-side answers.

    Shows the examples where the fine-tune changed F1 the most (either way), so the table says what changed."""
    e = html.escape
    head = (f"<table class='gen-eval'><tr><th></th><th>before</th><th>after</th></tr>"
            f"<tr><td>token F1</td><td>{_fmt(before.get('f1'))}</td><td>{_fmt(after.get('f1'))}</td></tr>"
            f"<tr><td>ROUGE-L</td><td>{_fmt(before.get('rougeL'))}</td><td>{_fmt(after.get('rougeL'))}</td></tr>"
            f"<tr><td>prompts</td><td>{before.get('n', 0)}</td><td>{after.get('n', 0)}</td></tr></table>")
    a_by = {(s["prompt"], s["reference"]): s for s in after.get("samples", [])}
    pairs = [(b, a_by[(b["prompt"], b["reference"])]) for b in before.get("samples", [])
             if (b["prompt"], b["reference"]) in a_by]
    pairs.sort(key=lambda p: -abs(p[1]["f1"] - p[0]["f1"]))
    rows = "".join(
        f"<tr><td>{e(b['prompt'])}</td><td>{e(b['reference'])}</td><td>{e(b['output'])}</td>"
        f"<td>{e(a['output'])}</td></tr>" for b, a in pairs[:k])
    table = ("<table class='gen-samples'><tr><th>prompt</th><th>reference</th><th>before</th><th>after</th></tr>"
             f"{rows}</table>") if rows else "<p>No paired examples to show.</p>"
    return f"<section class='generation-eval'><h2>Generated answers, held-out prompts</h2>{head}{table}</section>"
