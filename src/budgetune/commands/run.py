"""`budgetune run`: the main job. With no flags: LoRA fine-tuning of the embedded SmolLM2-135M-Instruct on the
embedded chatterbot-corpus conversations under a default FLOP budget, then a summary and report.html."""

from __future__ import annotations

import sys

from .options import add_config_flags, apply_flags, resume_base

HELP = ("fine-tune under a budget (default: LoRA on the embedded SmolLM2-135M and chatterbot-corpus, "
        "4e13 FLOPs, at most 600 s of work), then print a summary and write report.html")


def add_arguments(parser) -> None:
    from .. import config as config_mod
    from .choices import lazy_epilog

    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    add_config_flags(parser, config_mod.default_run_config())  # --generation-eval too: stored with the run
    lazy_epilog(parser)


def main(args) -> int:
    from .. import config as config_mod
    from ..joint.runner import given_of

    cfg = resume_base(args, config_mod.default_run_config())
    return execute(apply_flags(cfg, args), as_json=getattr(args, "json", False), given=given_of(args))


def execute(cfg, *, generation_eval: int | None = None, as_json: bool = False, given: set | None = None) -> int:
    """Run `cfg`. With `given` (the fields the user set), the joint plan (budgetune.joint) decides the others
    first, prints them and refuses an impossible budget before any weight is loaded."""
    import time

    from .. import trackers
    from ..governor_hook import governor_from_config
    from ..report import summary as facts
    from ..report.html import write_report
    from ..train import run_files
    from ..train.loop import make_budget, train

    started = time.perf_counter()
    trackers.check(cfg.report_to)  # a missing tracker package fails before any work
    inputs = {}
    if given is not None:
        from ..joint.runner import prepare

        inputs = prepare(cfg, given, as_json=as_json)  # the plan, set on cfg; nothing is loaded but the data
    budget = make_budget(cfg)
    gov = governor_from_config(cfg, budget)
    before_gen = after_gen = None
    generation_eval = cfg.generation_eval if generation_eval is None else generation_eval
    inputs.update(_refresh_inputs(cfg, budget, inputs.get("tokenizer"), inputs.get("data")))
    result = train(cfg, governor=gov, **inputs)
    from ..dist import is_main

    if not is_main():  # under a launcher rank 0 alone evaluates by generation, writes the report and prints
        return 0
    if generation_eval and result.extra.get("sharded"):
        print(f"budgetune: generation eval skipped for a sharded run; score it with `budgetune eval "
              f"{result.run_dir}`", file=sys.stderr)
        generation_eval = 0
    if generation_eval:
        from ..train.progress import stage

        with stage(f"generating answers to {generation_eval} held-out prompts, before and after"):
            before_gen, after_gen = _generation_eval(result, generation_eval)
        run_files.save_generation_eval(result, before_gen, after_gen)  # the report is rebuilt from this file
    run_files.save_memory(result, cfg)  # planned (and, on a GPU, measured) bytes, for the report
    from ..joint import outcome

    planned = outcome.record(result.run_dir)  # the plan beside the ledger, into summary.json for the report
    tracker = trackers.live(result.run_dir)
    tracker.ledger(result.ledger.to_dict(), result.ledger.steps)
    tracker.end()
    report = write_report(result.run_dir) if cfg.report else None
    if as_json:
        import json

        print(json.dumps(facts.json_summary(result, report, before_gen, after_gen, time.perf_counter() - started)))
    else:
        from ..governor.summary import governor_lines

        _print_summary(result, report, before_gen, after_gen, time.perf_counter() - started)
        print("\n".join(governor_lines(result.run_dir, result.ledger, budget.max_flops, gov)))
        print("\n".join(outcome.lines(planned)))
        print("\n".join(facts.explain_lines(result, before_gen, after_gen)))
    return 0


def _refresh_inputs(cfg, budget, tokenizer=None, data=None) -> dict:
    """With both a governor and data selection, the governor's refresh action re-selects the training data; the
    refresher re-scores the whole training pool, so the data is loaded here and handed to the loop."""
    from ..governor_hook import FIXED_NAMES

    if not cfg.selection or (cfg.governor or {}).get("name") in FIXED_NAMES:
        return {}  # the default governor is on: a selecting run gets a refresher unless the budget is fixed
    from ..data import load_data
    from ..models import load_tokenizer
    from ..selection.refresh import make_refresher

    tokenizer = tokenizer or load_tokenizer(cfg.model.model, trust_remote_code=cfg.model.trust_remote_code,
                                            allow_download=cfg.model.allow_download)
    data = data or load_data(cfg.data, tokenizer)
    refresher = make_refresher(cfg.selection, list(data.train), tokenizer, target=list(data.scoring), budget=budget)
    return {"tokenizer": tokenizer, "data": data, "refresher": refresher}


def _generation_eval(result, n: int):
    """Held-out answers generated by the base model and by the fine-tune (adapters switched off for 'before')."""
    try:
        from ..infer.evaluate import generation_eval
    except ImportError:
        return None, None
    from ..train.outside import charge_generation_eval, done_generation_eval

    done = done_generation_eval(result)
    if done is not None:  # a resumed run whose generation evaluation was done and charged before the kill
        return done
    model, tokenizer, data = result.extra["model"], result.extra["tokenizer"], result.extra["data"]
    from ..train.token_accuracy import response_token_accuracy

    model = getattr(model, "module", model)
    examples = data.target[:n]
    # The loop's test evaluations before and after measured the accuracy already (adapters start as the identity,
    # so the model before training is the base with adapters off); only what they did not cover is run here.
    measured = result.extra.get("token_accuracy") or {}
    after = generation_eval(model, tokenizer, examples, limit=n)
    accuracy = {"after": measured.get("after") or response_token_accuracy(model, data.target,
                                                                          pad_id=tokenizer.pad_token_id)}
    if hasattr(model, "disable_adapter"):
        with model.disable_adapter():
            before = generation_eval(model, tokenizer, examples, limit=n)
            accuracy["before"] = measured.get("before") or response_token_accuracy(
                model, data.target, pad_id=tokenizer.pad_token_id)
    else:
        before = None
    for g, key in ((before, "before"), (after, "after")):
        if g and key in accuracy:  # over the whole held-out set; its forward passes are charged with the rest
            g["token_accuracy"] = accuracy[key]["accuracy"]
            g["flops"] = g.get("flops", 0.0) + accuracy[key]["flops"]
            g["tokens"] = g.get("tokens", 0) + accuracy[key]["read"]
    charge_generation_eval(result, before, after)
    return before, after


def _divergence_line(result) -> str:
    from ..train.guard import divergence

    d = divergence(result.evals, result.before_loss)
    return f"warning      held-out loss ended {d['factor'] or float('nan'):.1f}x its start: {d['advice']}" if d else ""


def _loss_on(result) -> str:
    from ..train.testset import split_summary

    return split_summary(result.extra["data"])["loss_on"]


def _print_summary(result, report, before_gen, after_gen, wall: float) -> None:
    ledger = result.ledger
    out = sys.stdout
    rate = result.train_tokens_per_second
    lines = [
        "",
        f"run          {result.run_dir}",
        (f"held-out loss {result.before_loss:.4f} → {result.after_loss:.4f} "
        f"({(result.after_loss - result.before_loss) / result.before_loss:+.1%})"),
        f"measured on  {_loss_on(result).removeprefix('loss on ')}",
    ]
    if before_gen and after_gen:
        if after_gen.get("token_accuracy") is not None and before_gen.get("token_accuracy") is not None:
            lines.append(f"token acc.    {before_gen['token_accuracy']:.3f} → {after_gen['token_accuracy']:.3f}   "
                         f"(held-out reference tokens predicted exactly)")
        lines.append(f"held-out F1   {before_gen['f1']:.3f} → {after_gen['f1']:.3f}   "
                     f"ROUGE-L {before_gen['rougeL']:.3f} → {after_gen['rougeL']:.3f}   "
                     f"({after_gen['n']} prompts, generated)")
    flops = "  ".join(f"{p} {v:.3g}" for p, v in ledger.flops.items() if v)
    lines += [
        f"FLOPs        {ledger.total_flops:.3g} total   ({flops})",
        f"tokens       {ledger.tokens['train']} trained in {ledger.steps} steps"
        + (f" ({rate:.0f} tokens/s)" if rate else ""),
        f"stopped      {result.stop_reason}",
        _divergence_line(result),
        f"result       {result.artefact}",
        f"report       {report}" if report else "",
        f"wall time    {wall:.0f} s",
    ]
    print("\n".join(line for line in lines if line), file=out)
