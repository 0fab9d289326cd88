"""Benchmark `early_exit`: adaptive-depth decoding (`budgetune generate --early-exit`) on the embedded
SmolLM2-135M-Instruct against full-depth greedy decoding, on held-out chatterbot prompts.

Per exit rule (exit layers, confidence threshold):
- FLOPs per new token (the ledger's count) against full-depth greedy on the same prompts, and the mean depth;
- agreement with full-depth greedy output: prompts whose whole output is identical, and the mean share of the
  full-depth output reproduced before the first differing token;
- teacher-forced calibration (one full-depth forward over prompt + greedy answer): at each exit layer, how often the
  rule would fire and how often the exit token then equals the full-depth token.

The survey's claim (adaptive depth: fewer layers on easy tokens at little quality cost) presumes a model trained to
exit early (CALM, LayerSkip); SmolLM2 was not, and this measures what a confidence rule gets from it as it is.

    nice -n 10 python bench/early_exit.py [--prompts 6] [--max-new-tokens 32]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
DOC = ROOT / "docs" / "benchmarks" / "early_exit.md"
RULES = (((20, 26), 0.9), ((20, 26), 0.7), ((26,), 0.8))


def prefix_share(a: list[int], b: list[int]) -> float:
    k = 0
    while k < min(len(a), len(b)) and a[k] == b[k]:
        k += 1
    return k / max(1, len(b))


def calibration(model, sequences, layers, threshold: float) -> dict:
    """Per exit layer: (fires, agrees when firing) over the answer positions, teacher-forced."""
    import torch

    fired = {layer: 0 for layer in layers}
    agree = {layer: 0 for layer in layers}
    total = 0
    with torch.inference_mode():
        for prompt_len, ids in sequences:
            out = model(input_ids=torch.tensor([ids]), output_hidden_states=True)
            full = out.logits[0, prompt_len - 1: -1].argmax(-1)
            total += int(full.numel())
            for layer in layers:
                h = out.hidden_states[layer][0, prompt_len - 1: -1]
                probs = torch.softmax(model.lm_head(model.model.norm(h)).float(), -1)
                conf, tok = probs.max(-1)
                fire = conf >= threshold
                fired[layer] += int(fire.sum())
                agree[layer] += int((fire & (tok == full)).sum())
    return {str(layer): {"fires": fired[layer] / max(1, total),
                         "agrees_when_fired": agree[layer] / fired[layer] if fired[layer] else None}
            for layer in layers}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=6)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    sys.path.insert(0, str(ROOT / "src"))
    import torch

    from budgetune.config import DataConfig
    from budgetune.data import load_data
    from budgetune.infer.early_exit import EarlyExit, generate_early_exit
    from budgetune.infer.generate import encode_prompts, generate
    from budgetune.models import load_model, load_tokenizer

    torch.set_num_threads(1)
    tokenizer = load_tokenizer("smollm2-135m")
    model = load_model("smollm2-135m").eval()
    split = load_data(DataConfig(), tokenizer)
    prompts = [e.messages for e in split.target[: args.prompts]]  # as_messages asks the question only
    plain = generate(model, tokenizer, prompts, max_new_tokens=args.max_new_tokens, batch_size=1)
    ids = encode_prompts(tokenizer, prompts)
    plain_tokens = [tokenizer(r.text, add_special_tokens=False)["input_ids"] for r in plain]
    base = {"flops": sum(r.flops for r in plain), "new": sum(r.new_tokens for r in plain),
            "seconds": sum(r.seconds for r in plain)}
    sequences = [(len(x), x + t) for x, t in zip(ids, plain_tokens)]
    rows = []
    for layers, threshold in RULES:
        results = generate_early_exit(model, tokenizer, prompts, EarlyExit(layers, threshold),
                                      max_new_tokens=args.max_new_tokens)
        depths = [d for r in results for d in r.extra["early_exit"]["depths"][1:]]
        tokens = [tokenizer(r.text, add_special_tokens=False)["input_ids"] for r in results]
        new = sum(r.new_tokens for r in results)
        rows.append({"layers": list(layers), "threshold": threshold,
                     "flops_per_token": sum(r.flops for r in results) / new,
                     "plain_flops_per_token": base["flops"] / base["new"],
                     "mean_depth": statistics.fmean(depths) if depths else None,
                     "exited": sum(d < model.config.num_hidden_layers for d in depths) / max(1, len(depths)),
                     "identical": sum(a.text == b.text for a, b in zip(results, plain)),
                     "prefix_share": statistics.fmean(prefix_share(a, b) for a, b in zip(tokens, plain_tokens)),
                     "tokens_per_s": new / sum(r.seconds for r in results),
                     "calibration": calibration(model, sequences, layers, threshold)})
        print(json.dumps(rows[-1]), flush=True)
    n_layers = model.config.num_hidden_layers
    lines = [(f"SmolLM2-135M-Instruct ({n_layers} layers), fp32, batch 1, {len(prompts)} held-out chatterbot prompts, "
              f"≤{args.max_new_tokens} new tokens; full-depth greedy: {base['flops'] / base['new']:.3g} FLOPs per new "
              f"token, {base['new'] / base['seconds']:.1f} tokens/s."), "",
             ("| exit layers | threshold | FLOPs/token vs full | mean depth | tokens exited | identical outputs | "
              "share before first difference | teacher-forced: fires / agrees when fired, per exit layer |"),
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cal = "; ".join(f"L{k}: {v['fires']:.0%} / " + ("—" if v["agrees_when_fired"] is None
                                                         else f"{v['agrees_when_fired']:.0%}")
                        for k, v in r["calibration"].items())
        lines.append(f"| {','.join(map(str, r['layers']))} | {r['threshold']} | "
                     f"{r['flops_per_token'] / r['plain_flops_per_token']:.3f}× | {r['mean_depth']:.1f} | "
                     f"{r['exited']:.0%} | {r['identical']}/{len(prompts)} | {r['prefix_share']:.0%} | {cal} |")
    text = "\n".join(lines) + "\n"
    print(text)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "early_exit.json").write_text(json.dumps({"plain": base, "rows": rows}, indent=1))
    DOC.write_text("# Benchmark: adaptive-depth decoding (early exit)\n\nProduced by `nice -n 10 python "
                   f"bench/early_exit.py --prompts {args.prompts} --max-new-tokens {args.max_new_tokens}`.\n\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
