"""`budgetune select`: score a pool, keep the budget's worth, write the subset, its scores and a summary."""

from __future__ import annotations

import json
from pathlib import Path

# The registry's names only: no scorer module is imported for the help.
from ..selection.registry import listing

HELP = (f"score a data pool ({listing()}) and keep a budgeted subset; writes OUT (JSONL), OUT.scores.jsonl and "
        f"OUT.summary.json, with the scoring FLOPs")


def add_arguments(parser) -> None:
    parser.add_argument("--data", default="chatterbot",
                        help="the pool: 'chatterbot' or a JSONL/JSON/CSV/Parquet file (default: chatterbot)")
    parser.add_argument("--target", default=None,
                        help="target examples (same formats); unset: the held-out split of --data")
    parser.add_argument("--scorer", required=True, help=f"scorer name: {listing()}, or auto")
    parser.add_argument("--budget", default=None,
                        help="5%%, 0.05, 200 (examples) or 20000tok (tokens); with --scorer auto, planned")
    parser.add_argument("--strategy", default=None,
                        help="topk, bottomk, offset, stratified or balanced (default: the scorer's own)")
    parser.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                        help="a scorer option, e.g. -o batch_size=8 (repeatable)")
    parser.add_argument("--dedup", type=float, default=None,
                        help="drop near-duplicates above this MinHash Jaccard estimate, e.g. 0.8")
    parser.add_argument("--seed", type=int, default=0, help="seed of tie-breaking and sampling")
    parser.add_argument("--proxy", default=None,
                        help="score with a cheaper model: K (the model's first K layers and its head) or a model")
    parser.add_argument("--sample", type=float, default=None,
                        help="score this share (or count) of the pool and predict the rest from hashed n-grams")
    parser.add_argument("--denoise", type=float, default=None, metavar="MARGIN",
                        help="drop answers whose own prompt lowers their loss by no more than MARGIN (e.g. 0) "
                             "against another prompt's, before any strategy")
    parser.add_argument("--max-flops", type=float, default=None,
                        help="with --scorer auto: the FLOPs that scoring and the training after it may spend")
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


def subset_lines(examples: list, source: str) -> list[str]:
    """The selected examples as the input had them: a JSONL input's own lines, byte for byte; any other input's
    records as JSON objects with their fields in their order. Scores go to the scores file, never in here."""
    lines = None
    path = Path(source)
    if path.suffix.lower() == ".jsonl" and path.is_file():
        lines = path.read_text(encoding="utf-8").splitlines()
    out = []
    for e in examples:
        number = e.meta.get("record_number")
        if lines is not None and number is not None:
            out.append(lines[number - 1])
        elif "record" in e.meta:
            out.append(json.dumps(e.meta["record"], ensure_ascii=False, default=str))
        else:  # a block of a plain-text corpus has no record of its own
            out.append(json.dumps(record(e), ensure_ascii=False))
    return out


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
    for key in ("proxy", "sample", "denoise"):
        if getattr(args, key) is not None:
            selection[key] = getattr(args, key)
    if args.scorer == "auto":
        selection.pop("budget")
    parse(selection)
    auto = args.scorer == "auto"
    if auto and not args.max_flops:
        raise UserError("--scorer auto plans against a FLOP budget; add --max-flops (scoring + training)")
    if not auto:
        parse_budget(args.budget)  # a bad budget fails before anything is loaded
    module = None if auto else registry.get(args.scorer)
    no_model = str(args.model).lower() == "none"
    if auto and no_model:
        raise UserError("--scorer auto prices training with the model; drop --model none")
    if module is not None and module.NEEDS_MODEL and no_model:
        raise UserError(f"scorer '{args.scorer}' needs a model to run; drop --model none or choose "
                        f"{registry.model_free()}")
    tokenizer = load_tokenizer("smollm2-135m" if no_model else args.model)
    cfg = DataConfig(data=args.data, target=args.target, max_seq_len=args.max_seq_len,
                     prompt_field=args.prompt_field, response_field=args.response_field)
    split = load_data(cfg, tokenizer)
    needs_model = auto or module.NEEDS_MODEL or args.denoise is not None
    model = None if no_model or not needs_model else load_model(args.model)
    from ..dist import is_main, start
    from ..train.progress import stage

    start()  # under a launcher: ranks score shares of the pool (scorers that allow it), rank 0 writes
    with stage(f"scoring {len(split.train)} examples with {args.scorer}"):
        result = select(selection, model, split.train, split.scoring, total_flops=args.max_flops)
    if not is_main():
        return 0
    out = Path(args.out)
    values = result.scores.values
    chosen = {int(i) for i in result.indices}
    scores_path = out.with_name(out.name + ".scores.jsonl")
    summary = {**result.summary, "out": str(out), "scores": str(scores_path), "target": len(split.target)}
    atomic.write_texts({  # the three outputs together: all written, then all renamed
        out: "".join(line + "\n" for line in subset_lines([split.train[i] for i in result.indices], args.data)),
        scores_path: "".join(atomic.dumps({"uid": e.uid, "record": e.meta.get("record_number"),
                                           "score": float(values[i]), "selected": i in chosen})
                             + "\n" for i, e in enumerate(split.train)),
        out.with_name(out.name + ".summary.json"): atomic.dumps(summary, indent=2, sort_keys=True) + "\n",
    })
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"selected {summary['selected']} of {summary['pool']} examples ({summary['tokens']} tokens) with "
              f"{summary['scorer']}/{summary['strategy']}; scoring cost {summary['flops']:.3g} FLOPs → {out}")
    return 0
