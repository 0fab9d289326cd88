"""`budgetune generate`: greedy generation with its cost per request (FLOPs, KV cache), an optional FLOP budget per
request, and speculative decoding (a draft model or prompt lookup)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import UserError, check_number

HELP = ("generate with a model or a run's fine-tune: FLOPs and KV-cache bytes per request, an optional per-request "
        "FLOP budget, speculative decoding (draft model or prompt lookup)")


def add_arguments(parser) -> None:
    parser.add_argument("--model", default=None,
                        help="model: smollm2-135m (default), a local directory, a .gguf or a Hugging Face id")
    parser.add_argument("--adapter", metavar="RUN_DIR", default=None,
                        help="use the fine-tune of this run directory (its adapter/ or model/); its ledger.json is "
                             "charged with the inference FLOPs")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", help="one prompt (streamed to the terminal)")
    src.add_argument("--file", metavar="PROMPTS.jsonl",
                     help='prompts, one JSON per line: "text", {"prompt": "..."} or {"messages": [...]}')
    parser.add_argument("--max-new-tokens", type=int, default=128, help="tokens to generate at most (default 128)")
    parser.add_argument("--flops-budget", type=float, default=None, metavar="FLOPS",
                        help="FLOPs each request may spend (prefill + decode, draft included); generation is cut "
                             "at the budget")
    parser.add_argument("--speculative", default="none", metavar="none|draft[:PATH]|prompt-lookup",
                        help="speculative decoding via transformers assisted generation: 'draft' uses the embedded "
                             "model's distilled draft (built once, ~3 min), 'draft:PATH' a model sharing the "
                             "tokenizer, 'prompt-lookup' n-grams from the prompt (default none)")
    parser.add_argument("--draft-tokens", type=int, default=3, help="tokens the draft proposes per pass (default 3)")
    parser.add_argument("--early-exit", default=None, metavar="LAYERS",
                        help="adaptive depth: try to leave the model after these decoder layers (e.g. 12,20) when "
                             "the top token's probability reaches --exit-threshold (CALM-style; one prompt at a "
                             "time; default: full depth)")
    parser.add_argument("--exit-threshold", type=float, default=0.9,
                        help="softmax confidence at which --early-exit leaves the model (default 0.9)")
    parser.add_argument("--batch-size", type=int, default=16, help="prompts per batch without speculation")
    parser.add_argument("--dtype", default="float32", help="weight dtype (float32 on CPU)")
    parser.add_argument("--ledger", default=None, metavar="PATH",
                        help="ledger.json to charge (default: RUN_DIR/ledger.json with --adapter, else none); the charge "
                             "is also recorded in charges.json beside it, so a resumed run keeps it")
    parser.add_argument("--json", action="store_true", help="print one JSON object with every request and totals")


def read_prompts(path: str) -> list:
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UserError(f"{path}: no such prompt file; check the path") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text; save the prompts as UTF-8 JSON lines") from None
    prompts = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            raise UserError(f'{path}:{number}: not JSON; write one prompt per line as "text" or '
                            f'{{"prompt": "text"}}') from None
        if isinstance(item, dict):
            item = item.get("messages") or item.get("prompt")
        if not (isinstance(item, str) and item.strip()) and not isinstance(item, list):
            raise UserError(f'{path}:{number}: no prompt text; give "text", {{"prompt": "text"}} or '
                            f'{{"messages": [{{"role": "user", "content": "..."}}]}}')
        prompts.append(item)
    if not prompts:
        raise UserError(f'{path}: no prompts (the file is empty); add one JSON per line, e.g. {{"prompt": "Hi"}}')
    return prompts


def speculation_from(text: str, model, tokenizer, model_name: str, draft_tokens: int):
    from ..infer.generate import Speculation

    kind, _, path = text.partition(":")
    if kind == "draft":
        from ..infer.draft import embedded_draft_path, load_draft
        from ..models import EMBEDDED

        if not path:
            base = model_name.split(" + ")[0]
            if base not in EMBEDDED:
                raise UserError(f"--speculative draft: no built-in draft for {base}; pass --speculative "
                                f"draft:PATH with a model that shares its tokenizer, or prompt-lookup")
            path = str(embedded_draft_path(base, log=lambda m: print(m, file=sys.stderr)))
        return Speculation(kind="draft", draft=load_draft(path, model, tokenizer), draft_tokens=draft_tokens)
    if path:
        raise UserError(f"--speculative {text}: only draft takes a path (draft:PATH)")
    return Speculation(kind=kind)


def _line(r) -> str:
    cut = f"; cut at the FLOP budget ({r.flops:.3g} of {r.flops_budget:.3g})" if r.stop == "flops_budget" else ""
    spec = (f", accepted {r.draft_accepted}/{r.draft_proposed} proposed tokens in {r.target_passes} passes"
            if r.draft_proposed else "")
    return (f"[{r.prompt_tokens} prompt + {r.new_tokens} new tokens, {r.flops:.3g} FLOPs (prefill "
            f"{r.prefill_flops:.3g}{', draft ' + format(r.draft_flops, '.3g') if r.draft_flops else ''}), KV cache "
            f"{r.kv_cache_bytes / 2**20:.2f} MiB, {r.seconds:.1f} s, stop: {r.stop}{spec}{cut}]")


def main(args) -> int:
    check_number(args.max_new_tokens, "--max-new-tokens", minimum=1)
    check_number(args.flops_budget, "--flops-budget", above=0)
    check_number(args.draft_tokens, "--draft-tokens", minimum=1)
    check_number(args.batch_size, "--batch-size", minimum=1)
    prompts = [args.prompt] if args.prompt is not None else read_prompts(args.file)
    if args.prompt is not None and not args.prompt.strip():
        raise UserError("--prompt is empty; give some text")
    if args.speculative.partition(":")[0] not in ("none", "draft", "prompt-lookup"):
        raise UserError(f"--speculative '{args.speculative}' is not known; use none, draft, draft:PATH or "
                        f"prompt-lookup")
    from ..infer.early_exit import parse_early_exit

    early_exit = parse_early_exit(args.early_exit, args.exit_threshold)
    if early_exit is not None and args.speculative != "none":
        raise UserError("--early-exit and --speculative are two ways to decode; choose one")
    from ..budget import Ledger
    from ..charges import charge_outside, check_outside
    from ..infer.generate import generate, summarize
    from ..infer.load import load_for_inference

    ledger_path = args.ledger or (str(Path(args.adapter) / "ledger.json") if args.adapter else None)
    if ledger_path:
        check_outside(ledger_path)
    model_name = args.model or ("smollm2-135m" if args.adapter is None else None)
    model, tokenizer, name = load_for_inference(model_name, args.adapter, dtype=args.dtype)
    spec = None if early_exit else speculation_from(args.speculative, model, tokenizer, name, args.draft_tokens)
    ledger = Ledger()  # this command's own work; added to the ledger at `ledger_path` at the end
    streamer = None
    if len(prompts) == 1 and not args.json:
        from transformers import TextStreamer

        streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    if early_exit is not None:
        from ..infer.early_exit import generate_early_exit

        results = generate_early_exit(model, tokenizer, prompts, early_exit, max_new_tokens=args.max_new_tokens,
                                      flops_budget=args.flops_budget, ledger=ledger)
        streamer = None  # nothing was streamed: print the text below
    else:
        results = generate(model, tokenizer, prompts, max_new_tokens=args.max_new_tokens,
                           flops_budget=args.flops_budget, speculation=spec, batch_size=args.batch_size,
                           ledger=ledger, streamer=streamer)
    if ledger_path:
        ledger = charge_outside(ledger_path, ledger, "generate")
    totals = summarize(results)
    if args.json:
        print(json.dumps({"model": name, "speculative": args.speculative, "summary": totals,
                          "ledger": ledger.to_dict() if ledger_path else None,
                          "results": [r.to_dict() for r in results]}, indent=2))
        return 0
    for i, r in enumerate(results):
        if streamer is None:
            print(f"### {i + 1}: {r.prompt}\n{r.text}")
        print(_line(r))
    if len(results) > 1:
        print(f"total: {totals['new_tokens']} new tokens, {totals['flops']:.3g} FLOPs "
              f"({totals['flops_per_new_token']:.3g} per new token), {totals['tokens_per_second']:.1f} tokens/s"
              + (f", acceptance {totals['acceptance']:.0%}" if totals["acceptance"] is not None else ""))
    if ledger_path:
        print(f"charged to {ledger_path}: inference {ledger.flops['inference']:.3g} FLOPs in all")
    return 0
