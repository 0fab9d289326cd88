"""`budgetune select`: score a pool, keep the budget's worth, write the subset, its scores and a summary."""

from __future__ import annotations

import json
from pathlib import Path

HELP = ("score a data pool (random, length, dsir, loss, el2n, grand, ifd, rho, s2l, less, greats) and keep a "
        "budgeted subset; writes OUT (JSONL), OUT.scores.jsonl and OUT.summary.json, with the scoring FLOPs")


def add_arguments(parser) -> None:
    parser.add_argument("--data", default="chatterbot",
                        help="the pool: 'chatterbot' or a JSONL/JSON/CSV/Parquet file (default: chatterbot)")
    parser.add_argument("--target", default=None,
                        help="target examples (same formats); unset: the held-out split of --data")
    parser.add_argument("--scorer", required=True, help="scorer name: random, length, dsir, loss, el2n, grand, "
                                                        "ifd, rho, s2l, less, greats")
    parser.add_argument("--budget", required=True, help="5%%, 0.05, 200 (examples) or 20000tok (tokens)")
    parser.add_argument("--strategy", default=None,
                        help="topk, bottomk, offset, stratified or balanced (default: the scorer's own)")
    parser.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                        help="a scorer option, e.g. -o batch_size=8 (repeatable)")
    parser.add_argument("--dedup", type=float, default=None,
                        help="drop near-duplicates above this MinHash Jaccard estimate, e.g. 0.8")
    parser.add_argument("--seed", type=int, default=0, help="seed of tie-breaking and sampling")
    parser.add_argument("--model", default="smollm2-135m",
                        help="model the scorer runs (any --model reference; 'none' for none); loaded only when the "
                             "scorer needs one")
    parser.add_argument("--max-seq-len", type=int, default=256, help="truncate every example to this many tokens")
    parser.add_argument("--prompt-field", default="prompt", help="column holding the prompt")
    parser.add_argument("--response-field", default="response", help="column holding the response")
    parser.add_argument("--out", required=True, help="subset file to write (JSONL)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    from .choices import lazy_epilog

    lazy_epilog(parser, ("scorers", "strategies"))


def _options(pairs: list[str]) -> dict:
    from .options import parse_pairs

    return parse_pairs(pairs, "--option", "-o batch_size=8")


def _check_out(out: Path) -> None:
    """--out names a file to write: not a directory, not under a file, in a writable directory."""
    import os

    from ..errors import UserError

    if out.is_dir():
        raise UserError(f"--out {out} is a directory; name the subset file to write, e.g. {out / 'subset.jsonl'}")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"--out {out} is under {parent}, which is a file; choose another path")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise UserError(f"--out {out}: {parent} is not writable; choose a directory you can write")
            return


def record(example, score: float | None = None) -> dict:
    """An example as a JSONL record that `--data` reads back."""
    row = {"messages": example.messages} if example.messages else {"text": example.text}
    if example.category is not None:
        row["category"] = example.category
    row["uid"] = example.uid
    if score is not None:
        row["score"] = score
    return row


def main(args) -> int:
    from .. import atomic
    from ..config import DataConfig
    from ..data import load_data
    from ..errors import UserError, check_number
    from ..models import load_model, load_tokenizer
    from ..selection import parse, registry, select
    from ..selection.sizing import parse_budget

    check_number(args.max_seq_len, "--max-seq-len", minimum=2)
    check_number(args.seed, "--seed", minimum=0)
    check_number(args.dedup, "--dedup", above=0, maximum=1)
    _check_out(Path(args.out))
    selection = {"scorer": args.scorer, "budget": args.budget, "options": _options(args.option), "seed": args.seed}
    if args.strategy:
        selection["strategy"] = args.strategy
    if args.dedup is not None:
        selection["dedup"] = args.dedup
    parse(selection)
    parse_budget(args.budget)  # a bad budget fails before anything is loaded
    module = registry.get(args.scorer)
    no_model = str(args.model).lower() == "none"
    if module.NEEDS_MODEL and no_model:
        raise UserError(f"scorer '{args.scorer}' needs a model to run; drop --model none or choose random, length "
                        f"or dsir")
    tokenizer = load_tokenizer("smollm2-135m" if no_model else args.model)
    cfg = DataConfig(data=args.data, target=args.target, max_seq_len=args.max_seq_len,
                     prompt_field=args.prompt_field, response_field=args.response_field)
    split = load_data(cfg, tokenizer)
    model = None if no_model or not module.NEEDS_MODEL else load_model(args.model)
    from ..train.progress import stage

    with stage(f"scoring {len(split.train)} examples with {args.scorer}"):
        result = select(selection, model, split.train, split.target)
    out = Path(args.out)
    values = result.scores.values
    chosen = set(int(i) for i in result.indices)
    scores_path = out.with_name(out.name + ".scores.jsonl")
    summary = {**result.summary, "out": str(out), "scores": str(scores_path), "target": len(split.target)}
    atomic.write_texts({  # the three outputs together: all written, then all renamed
        out: "".join(atomic.dumps(record(split.train[i], float(values[i]))) + "\n" for i in result.indices),
        scores_path: "".join(atomic.dumps({"uid": e.uid, "score": float(values[i]), "selected": i in chosen})
                             + "\n" for i, e in enumerate(split.train)),
        out.with_name(out.name + ".summary.json"): atomic.dumps(summary, indent=2, sort_keys=True) + "\n",
    })
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"selected {summary['selected']} of {summary['pool']} examples ({summary['tokens']} tokens) with "
              f"{summary['scorer']}/{summary['strategy']}; scoring cost {summary['flops']:.3g} FLOPs → {out}")
    return 0
