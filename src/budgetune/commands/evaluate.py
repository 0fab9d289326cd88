"""`budgetune eval RUN_DIR`: answer the run's held-out prompts before and after fine-tuning and score the answers
(token F1, ROUGE-L); writes RUN_DIR/generation_eval.json."""

from __future__ import annotations

import json
from pathlib import Path

HELP = ("score a run's fine-tune by generation: greedy answers to the held-out prompts before and after, token F1 "
        "and ROUGE-L against the references; writes RUN_DIR/generation_eval.json")


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a finished run directory (with adapter/ or model/)")
    parser.add_argument("--limit", type=int, default=32, help="held-out prompts to answer (default 32; 0: all)")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="tokens per answer at most (default 32)")
    parser.add_argument("--batch-size", type=int, default=16, help="prompts per batch (default 16)")
    parser.add_argument("--samples", type=int, default=3, help="side-by-side examples to print (default 3)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run_generation_eval(run_dir: str, *, limit: int | None = 32, max_new_tokens: int = 32,
                        batch_size: int = 16) -> dict:
    """Before/after scores of a run on its own held-out target set, charged to the run's ledger (eval phase)."""
    from ..budget import Ledger
    from ..charges import charge_outside, check_outside
    from ..config import DataConfig, from_dict
    from ..data import load_data
    from ..errors import UserError
    from ..infer.evaluate import generation_eval
    from ..infer.load import apply_run, artefact, base_model_name, run_config
    from ..models import load_model, load_tokenizer

    raw = run_config(run_dir)
    name = base_model_name(run_dir)
    artefact(run_dir)  # fail before any work when the run has not finished
    check_outside(Path(run_dir) / "ledger.json")
    try:
        data_cfg = from_dict({"data": raw.get("data") or {}}, f"{run_dir}/config.json").data
    except UserError:
        data_cfg = DataConfig()
    dtype = raw.get("model", {}).get("dtype") or "float32"
    tokenizer = load_tokenizer(name)
    target = load_data(data_cfg, tokenizer).target
    spent = Ledger()  # this command's own work, added to the run's ledger at the end
    model = load_model(name, dtype=dtype).eval()
    kw = dict(max_new_tokens=max_new_tokens, limit=limit or None, batch_size=batch_size, ledger=spent)
    before = generation_eval(model, tokenizer, target, **kw)
    after = generation_eval(apply_run(model, run_dir), tokenizer, target, **kw)
    charge_outside(Path(run_dir) / "ledger.json", spent, "eval")
    result = {"run_dir": str(run_dir), "model": name, "before": before, "after": after}
    from .. import atomic

    atomic.write_json(Path(run_dir) / "generation_eval.json", result)
    return result


def main(args) -> int:
    from ..errors import check_number
    from ..train.progress import stage

    check_number(args.limit, "--limit", minimum=0)
    check_number(args.max_new_tokens, "--max-new-tokens", minimum=1)
    check_number(args.batch_size, "--batch-size", minimum=1)
    check_number(args.samples, "--samples", minimum=0)
    with stage(f"generating answers to {args.limit or 'all'} held-out prompts, before and after"):
        result = run_generation_eval(args.run_dir, limit=args.limit, max_new_tokens=args.max_new_tokens,
                                     batch_size=args.batch_size)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    b, a = result["before"], result["after"]
    if not b["n"]:
        print(f"{args.run_dir}: {b.get('note', 'nothing to evaluate')}")
        return 0
    print(f"held-out generation, {b['n']} prompts × ≤{b['max_new_tokens']} new tokens ({result['model']})")
    print(f"{'':>10}  {'token F1':>8}  {'ROUGE-L':>8}  {'FLOPs':>9}  {'seconds':>7}")
    for label, r in (("before", b), ("after", a)):
        print(f"{label:>10}  {r['f1']:>8.3f}  {r['rougeL']:>8.3f}  {r['flops']:>9.3g}  {r['seconds']:>7.1f}")
    by_key = {(s["prompt"], s["reference"]): s for s in a["samples"]}
    for s in b["samples"][: args.samples]:
        after = by_key.get((s["prompt"], s["reference"]), {}).get("output", "")
        print(f"\nprompt:    {s['prompt']}\nreference: {s['reference']}\nbefore:    {s['output']}\nafter:     {after}")
    print(f"\nwritten: {Path(args.run_dir) / 'generation_eval.json'}")
    return 0
