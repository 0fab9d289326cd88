"""Benchmark `inference`: tokens/s and FLOPs per generated token of SmolLM2-135M on this CPU, plain greedy decoding
against speculative decoding (the distilled layer-skip draft, and prompt lookup), on two prompt sets:
- chat: held-out chatterbot prompts (the answers are new text; prompt lookup has little to copy);
- repeat: "repeat this text" prompts over chatterbot answers (the answer is in the prompt; prompt lookup shines).
Also times the generation-based evaluation `budgetune run` adds (32 held-out prompts × 32 new tokens).

Runs are interleaved prompt by prompt (plain, draft, lookup, rotating the order), so the machine's speed swings hit
every mode alike; speed-ups are ratios of summed seconds within one run, and the median of per-prompt ratios.

    nice -n 5 python bench/inference.py [--chat 6] [--repeat 3] [--max-new-tokens 48]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODES = ("plain", "draft", "prompt-lookup")


def repeat_prompts(examples, n: int) -> list[str]:
    answers = [m["content"] for e in examples for m in (e.messages or []) if m["role"] == "assistant"]
    answers = sorted({a for a in answers if 12 <= len(a.split()) <= 40})
    out, i = [], 0
    while len(out) < n and i + 3 <= len(answers):
        text = " ".join(answers[i: i + 3])
        out.append(f"Repeat the following text exactly, word for word:\n\n{text}")
        i += 7
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chat", type=int, default=6, help="held-out chat prompts")
    parser.add_argument("--repeat", type=int, default=3, help="repeat-the-text prompts")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--draft-tokens", type=int, default=3)
    parser.add_argument("--eval-prompts", type=int, default=32)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

    import torch

    from budgetune.config import DataConfig
    from budgetune.data import load_data
    from budgetune.infer.draft import draft_info, embedded_draft_path, load_draft
    from budgetune.infer.evaluate import generation_eval
    from budgetune.infer.generate import Speculation, generate
    from budgetune.models import load_model, load_tokenizer

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    tokenizer = load_tokenizer("smollm2-135m")
    model = load_model("smollm2-135m").eval()
    split = load_data(DataConfig(), tokenizer)
    draft_path = embedded_draft_path("smollm2-135m")
    draft = load_draft(str(draft_path), model, tokenizer)
    specs = {"plain": Speculation(), "draft": Speculation(kind="draft", draft=draft, draft_tokens=args.draft_tokens),
             "prompt-lookup": Speculation(kind="prompt-lookup")}
    chat = [[m for m in e.messages if m["role"] != "assistant"] for e in split.target[: args.chat]]
    sets = {"chat": chat, "repeat": repeat_prompts(split.train, args.repeat)}
    generate(model, tokenizer, ["Hello"], max_new_tokens=2)  # warm-up: first-call allocations

    rows, per_prompt = [], {}
    for set_name, prompts in sets.items():
        acc = {m: {"new": 0, "seconds": 0.0, "flops": 0.0, "draft_flops": 0.0, "passes": 0, "proposed": 0,
                   "accepted": 0, "texts": []} for m in MODES}
        ratios = {m: [] for m in MODES}
        for i, prompt in enumerate(prompts):
            order = MODES[i % 3:] + MODES[: i % 3]
            seconds = {}
            for mode in order:
                [r] = generate(model, tokenizer, [prompt], max_new_tokens=args.max_new_tokens,
                               speculation=specs[mode])
                a = acc[mode]
                a["new"] += r.new_tokens
                a["seconds"] += r.seconds
                a["flops"] += r.flops
                a["draft_flops"] += r.draft_flops
                a["passes"] += r.target_passes
                a["proposed"] += r.draft_proposed
                a["accepted"] += r.draft_accepted
                a["texts"].append(r.text)
                seconds[mode] = r.seconds
            for mode in MODES:
                ratios[mode].append(seconds["plain"] / seconds[mode])
            print(f"  {set_name} {i + 1}/{len(prompts)}: " + ", ".join(f"{m} {seconds[m]:.1f} s" for m in MODES),
                  flush=True)
        # For scale: the same prompts decoded together in one batch (what `generate --file` does without
        # speculation); not interleaved, so its ratio is rougher.
        batched = generate(model, tokenizer, prompts, max_new_tokens=args.max_new_tokens, batch_size=len(prompts))
        b_new, b_sec = sum(r.new_tokens for r in batched), sum(r.seconds for r in batched)
        acc["plain, one batch"] = {"new": b_new, "seconds": b_sec, "flops": sum(r.flops for r in batched),
                                   "draft_flops": 0.0, "passes": max(r.new_tokens for r in batched), "proposed": 0,
                                   "accepted": 0, "texts": [r.text for r in batched]}
        ratios["plain, one batch"] = [acc["plain"]["seconds"] / b_sec]
        base = acc["plain"]
        for mode in MODES + ("plain, one batch",):
            a = acc[mode]
            rows.append({"set": set_name, "mode": mode, "prompts": len(prompts), "new_tokens": a["new"],
                         "tokens_per_second": a["new"] / a["seconds"],
                         "flops_per_token": a["flops"] / a["new"],
                         "draft_flops_share": a["draft_flops"] / a["flops"] if a["flops"] else 0.0,
                         "tokens_per_target_pass": a["new"] / a["passes"],  # batch: tokens per batched pass
                         "acceptance": a["accepted"] / a["proposed"] if a["proposed"] else None,
                         "speedup": base["seconds"] / a["seconds"],
                         "speedup_median": statistics.median(ratios[mode]),
                         "identical_to_plain": a["texts"] == base["texts"]})
        per_prompt[set_name] = ratios

    # The cost of one decode step of each model, timed back to back: what a draft must undercut.
    ids = tokenizer("Tell me about the weather today.", return_tensors="pt")
    step = {}
    with torch.inference_mode():
        for label, m in (("target", model), ("draft", draft)):
            m.generate(**ids, max_new_tokens=2, do_sample=False, pad_token_id=tokenizer.pad_token_id)
            t = time.perf_counter()
            m.generate(**ids, max_new_tokens=17, min_new_tokens=17, do_sample=False,
                       pad_token_id=tokenizer.pad_token_id)
            step[label] = (time.perf_counter() - t) / 17
    ev = generation_eval(model, tokenizer, split.target, max_new_tokens=32, limit=args.eval_prompts)

    info = draft_info(draft_path)
    out = {"rows": rows, "per_prompt_speedups": per_prompt, "decode_step_seconds": step, "draft": info,
           "generation_eval": {k: ev[k] for k in ("n", "f1", "rougeL", "flops", "seconds", "new_tokens")},
           "args": vars(args), "torch_threads": torch.get_num_threads(), "load_average": os.getloadavg()}
    header = ("| prompt set | decoding | tokens/s | speed-up (sum / median) | FLOPs per token | draft share of FLOPs "
              "| tokens per target pass | acceptance | same output as plain |\n|---|---|---|---|---|---|---|---|---|")
    lines = [header] + [
        f"| {r['set']} | {r['mode']} | {r['tokens_per_second']:.1f} | {r['speedup']:.2f}× / "
        f"{r['speedup_median']:.2f}× | {r['flops_per_token']:.3g} | {r['draft_flops_share']:.0%} | "
        f"{r['tokens_per_target_pass']:.2f} | {'—' if r['acceptance'] is None else format(r['acceptance'], '.0%')} | "
        f"{'yes' if r['identical_to_plain'] else 'NO'} |" for r in rows]
    table = "\n".join(lines)
    notes = (f"\nOne decode step (batch 1, timed back to back): target {step['target'] * 1e3:.0f} ms, draft "
             f"{step['draft'] * 1e3:.0f} ms ({step['draft'] / step['target']:.0%} of the target).\n"
             f"Draft: first {info.get('layers')} of 30 layers of SmolLM2-135M-Instruct with its final norm and tied "
             f"head, distilled {info.get('steps')} steps in {info.get('seconds', 0):.0f} s; greedy agreement with "
             f"the target on {info.get('agreement_on', 'held-out tokens')} {info.get('agreement_before', 0):.1%} → "
             f"{info.get('agreement_after', 0):.1%}. {args.draft_tokens} draft tokens per pass; prompt lookup: "
             f"10 tokens, 2-grams.\n"
             f"Generation-based evaluation as `budgetune run` adds it: {ev['n']} held-out prompts × ≤32 new tokens "
             f"(batch 16) took {ev['seconds']:.1f} s and {ev['flops']:.3g} FLOPs ({ev['new_tokens']} tokens "
             f"generated; token F1 {ev['f1']:.3f}, ROUGE-L {ev['rougeL']:.3f}).\n"
             f"Load average during the run: {', '.join(f'{x:.1f}' for x in os.getloadavg())} (2 cores, shared).\n")
    print(table + "\n" + notes)
    (ROOT / "bench" / "out").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "out" / "inference.json").write_text(json.dumps(out, indent=2) + "\n")
    doc = ROOT / "docs" / "benchmarks" / "inference.md"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text("# Benchmark: inference (plain vs speculative decoding, CPU)\n\n"
                   "Produced by `nice -n 5 python bench/inference.py "
                   f"--chat {args.chat} --repeat {args.repeat} --max-new-tokens {args.max_new_tokens} "
                   f"--draft-tokens {args.draft_tokens}`; SmolLM2-135M-Instruct, fp32, greedy, batch 1, "
                   f"{torch.get_num_threads()} threads.\n\n" + table + "\n" + notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
