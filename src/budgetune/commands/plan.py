"""`budgetune plan`: what fits on a GPU, for every method, from the model's config alone."""

from __future__ import annotations

HELP = ("which training methods fit in a GPU's memory, with their binding term, FLOPs per token and time per "
        "step, from the model's config alone (--exact traces the real step on fake tensors); with --data or "
        "--max-flops, the whole run's plan that `budgetune run` would make (method, selection, evaluation, governor), "
        "without training")


def add_arguments(parser) -> None:
    parser.add_argument("--model", default="smollm2-135m",
                        help="config.json, model directory, cached Hugging Face id or 'smollm2-135m'")
    parser.add_argument("--gpu-memory", default=None, help="memory of one GPU, e.g. 24GiB or 80GB (required "
                        "without --data/--max-flops; with them: the run's --max-memory, unset: this machine's)")
    parser.add_argument("--seq-len", type=int, default=None, help="tokens per sequence (default: 512; with --data: "
                        "the run's --max-seq-len)")
    parser.add_argument("--batch-size", type=int, default=None, help="micro-batch per GPU (default: 1; with --data: "
                        "the run's --micro-batch-size, chosen by the plan)")
    joint = parser.add_argument_group("the whole run's plan (with --data or --max-flops; see docs/plan.md)")
    joint.add_argument("--data", default=None, help="training data, as `budgetune run --data` (default: chatterbot)")
    joint.add_argument("--target", default=None, help="held-out target data, as `budgetune run --target`")
    joint.add_argument("--max-flops", type=float, default=None, help="the run's FLOP budget, as `budgetune run`")
    joint.add_argument("--max-seconds", type=_seconds, default=None,
                       help="the run's time budget, as `budgetune run` (default: its 600 s; none: no time budget)")
    joint.add_argument("--flops-per-second", type=float, default=None,
                       help="this machine's FLOP/s to plan the seconds with (default: a short timed probe)")
    parser.add_argument("--gpus", type=int, default=1, help="data-parallel GPUs (default: 1)")
    parser.add_argument("--sharding", default="auto", choices=["auto", "none", "zero2", "zero3", "fsdp"],
                        help="how model states are split over GPUs (auto: none on 1 GPU, fsdp on several)")
    parser.add_argument("--precision", default="auto", choices=["auto", "amp_bf16", "bf16", "fp32"],
                        help="the run's --precision: amp_bf16 (fp32 weights, bf16 autocast), bf16 (pure bf16) or "
                             "fp32; auto (default): amp_bf16, what `budgetune run` uses on a CUDA GPU")
    parser.add_argument("--attention", default="sdpa", choices=["sdpa", "eager"],
                        help="sdpa (fused, default) or eager (keeps the s×s attention matrix)")
    parser.add_argument("--method", action="append", default=None,
                        help="only this method (repeatable); default: every registered method")
    parser.add_argument("--overhead", default=None,
                        help="fixed runtime overhead per GPU: CUDA context, cuBLAS workspace (default: 512MiB, "
                             "as a run's --max-memory check)")
    parser.add_argument("--fragmentation", type=float, default=None,
                        help="allocator slack as a share of the tensor bytes (default: 0.05, as a run's check)")
    parser.add_argument("--device", default="a100", help="device for the time estimate: " +
                        "h200, h100, a100, l40s, a10g, l4, rtx4090, rtx3090, v100, t4 (default: a100)")
    parser.add_argument("--tflops", type=float, default=None, help="override the device's peak bf16 TFLOP/s")
    parser.add_argument("--mfu", type=float, default=0.4, help="share of peak FLOP/s reached (default: 0.4)")
    parser.add_argument("--exact", action="store_true",
                        help="also trace the real training step on fake tensors (recommended plan first)")
    parser.add_argument("--inference", action="store_true", help="also plan inference (batch × context) capacity")
    inf = parser.add_argument_group("inference options (with --inference)")
    inf.add_argument("--dtype", default=None, choices=["fp32", "bf16", "fp16", "int8", "nf4"],
                     help="weight format for generation (default: bf16 under amp_bf16/bf16 precision, else fp32)")
    inf.add_argument("--contexts", default=None, type=_contexts, metavar="N,N,...",
                     help="context lengths to plan (default: 256 to 32768 in powers of two, plus --seq-len)")
    inf.add_argument("--draft", default=None, metavar="CONFIG",
                     help="a speculative draft's config.json or model directory (default: the model's first "
                          "--draft-layers layers)")
    inf.add_argument("--draft-layers", type=int, default=None, metavar="N",
                     help="layers of the default layer-skip draft (default: 4)")
    inf.add_argument("--inference-flops-per-token", type=float, default=None, metavar="FLOPS",
                     help="FLOP budget per decoded token (implies --inference): the plan picks full depth or an "
                          "early-exit rule (`generate --early-exit`) whose predicted FLOPs at --seq-len fit, with "
                          "its measured agreement with full-depth output where known")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _seconds(text: str) -> float:
    import argparse

    if text.strip().lower() == "none":
        return 0.0  # no time budget (0 is never a valid one)
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of seconds (or none)") from None


def _contexts(text: str) -> list[int]:
    import argparse

    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of token counts, e.g. "
                                         f"1024,8192") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"'{text}': give positive token counts, e.g. 1024,8192")
    return values


def main(args) -> int:
    import json
    import sys

    if args.data is not None or args.max_flops is not None or args.max_seconds is not None:
        from .plan_joint import joint_main

        return joint_main(args)
    if args.gpu_memory is None:
        from ..errors import UserError

        raise UserError("plan needs --gpu-memory (e.g. 24GiB) for the memory table, or --data/--max-flops for the "
                        "whole run's plan")
    args.seq_len = 512 if args.seq_len is None else args.seq_len
    args.batch_size = 1 if args.batch_size is None else args.batch_size

    from ..config import parse_bytes
    from ..errors import UserError, check_number
    from ..memory.spec import UnsupportedArchitecture, spec_from_model_name
    from ..memory.terms import Shape
    from ..planner import plan as P

    for flag, value, low in (("--seq-len", args.seq_len, 1), ("--batch-size", args.batch_size, 1),
                             ("--gpus", args.gpus, 1), ("--fragmentation", args.fragmentation, 0)):
        check_number(value, flag, minimum=low)
    check_number(args.fragmentation, "--fragmentation", maximum=0.9)
    check_number(args.tflops, "--tflops", above=0)
    check_number(args.mfu, "--mfu", above=0, maximum=1)
    check_number(args.inference_flops_per_token, "--inference-flops-per-token", above=0)
    args.inference = args.inference or args.inference_flops_per_token is not None
    budget = parse_bytes(args.gpu_memory, "--gpu-memory")
    if budget <= 0:
        raise UserError(f"--gpu-memory {args.gpu_memory} must be positive")
    device = args.device.lower()
    if args.tflops is None and device not in P.DEVICE_TFLOPS:
        raise UserError(f"--device {args.device} is not in the table ({', '.join(P.DEVICE_TFLOPS)}); "
                        f"give its peak with --tflops")
    tflops = args.tflops or P.DEVICE_TFLOPS[device]
    if not 0 < args.mfu <= 1:
        raise UserError(f"--mfu {args.mfu} must be in (0, 1]")
    sharding = args.sharding if args.sharding != "auto" else ("fsdp" if args.gpus > 1 else "none")
    from .. import precision as precision_mod

    precision = precision_mod.resolve(args.precision, cuda=True)  # a plan is for a GPU: auto is what run uses there
    args.precision = precision
    shape = Shape(micro_batch=args.batch_size, seq_len=args.seq_len, precision=precision,
                  attention=args.attention, ranks=args.gpus, sharding=sharding,
                  overhead_bytes=parse_bytes(args.overhead or P.OVERHEAD, "--overhead"),
                  fragmentation=P.FRAGMENTATION if args.fragmentation is None else args.fragmentation)
    notes: list[str] = []
    try:
        spec = spec_from_model_name(args.model)
    except UnsupportedArchitecture as e:
        spec = None
        print(f"budgetune: {e}; falling back to the tracer", file=sys.stderr)
    if spec is not None:
        plans = P.enumerate_plans(spec, shape, budget, methods=args.method, tflops=tflops, mfu=args.mfu,
                                  notes=notes)
        params = spec.n_params
    else:
        plans, params = _traced_only(args.model, shape, budget, notes)
    if not plans:
        raise UserError("no method could be planned; " + "; ".join(notes))
    plans = P.sort_plans(plans)
    recommended = P.recommend(plans)
    if args.exact and spec is not None:
        from ..train.progress import stage

        with stage("tracing the recommended and borderline plans on fake tensors"):
            notes += P.trace_plans(args.model, plans, shape, budget, spec=spec, recommended=recommended)
        plans = P.sort_plans(plans)
        recommended = P.recommend(plans)
    inference = _inference(spec, budget, args, notes) if args.inference else None

    if args.json:
        out = {"model": {"name": args.model, "params": params}, "plans": [p.to_json() for p in plans],
               "recommended": recommended}
        if inference is not None:
            out["inference"] = inference[1]
        print(json.dumps(out, indent=2))
    else:
        _print_table(args, spec, params, plans, recommended, budget, shape, tflops, notes, inference)
    if recommended is None:
        print(f"budgetune: {P.advice(plans, shape, budget)}", file=sys.stderr)
        return 1
    return 0


def _traced_only(model: str, shape, budget: int, notes: list[str]):
    """Plans for an architecture without an analytic model: the tracer measures directly each method whose module
    declares TRACED_PLAN_OPTIONS (full fine-tuning and LoRA), in registry order."""
    from ..memory.terms import runtime_overhead
    from ..methods import registry
    from ..models import load_config
    from ..planner import plan as P
    from ..planner.trace import trace_step

    config = load_config(model)
    plans = []
    params = None
    for method in registry.names():
        options = getattr(registry.get(method), "TRACED_PLAN_OPTIONS", None)
        if options is None:
            continue
        r = trace_step(config, shape, method, None)
        total = r.peak + runtime_overhead(shape, r.peak)
        plans.append(P.Plan(method, dict(options), False, r.breakdown, fits=total <= budget, traced_total=total))
        # the base model's size: a method that adds adapters traces more parameters than the base has
        params = r.n_params if params is None else min(params, r.n_params)
    notes.append("traced only (no analytic model): FLOPs per token not estimated")
    return plans, params


def _inference(spec, budget: int, args, notes: list[str]):
    """(text, JSON) of inference capacity from budgetune.infer.capacity, or None where it is not installed."""
    try:
        from ..infer.capacity import plan_inference
    except ImportError:
        notes.append("inference planning is not available in this installation (budgetune.infer.capacity)")
        return None
    if spec is None:
        notes.append("inference planning needs an analytic model spec")
        return None
    text, obj = plan_inference(spec, budget, args)
    if args.inference_flops_per_token is not None:
        from ..infer.depth_plan import plan_depth

        lines, obj["depth"] = plan_depth(spec, args.inference_flops_per_token, args.seq_len)
        text = "\n".join([text, *lines])
    return text, obj


def _options_text(p, spec) -> str:
    """A plan's options as the user would pass them with -o (the model's full list of linears shown as 'all')."""
    def value(k, v):
        if k == "target_modules" and spec is not None and list(v) == list(spec.linear_names):
            return "all"
        return ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)

    return " ".join(f"{k}={value(k, v)}" for k, v in p.options.items()) or "defaults"


def _gib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**30:.2f}"


def _print_table(args, spec, params, plans, recommended, budget, shape, tflops, notes, inference) -> None:
    name = spec.name if spec is not None else args.model
    print(f"model {name}: {params / 1e9:.3f}B parameters; GPU memory {budget / 2**30:.1f} GiB × {args.gpus}; "
          f"batch {shape.micro_batch} × seq {shape.seq_len}; {shape.precision}, {shape.attention}"
          + (f", {shape.sharding}" if shape.sharding != "none" else ""))
    options = [_options_text(p, spec) for p in plans]
    width = max([len("options")] + [len(o) for o in options]) + 2  # options printed whole, never cut
    head = (f"{'':2}{'method':10}{'options':{width}}{'ckpt':>5}{'weights':>9}{'grads':>8}{'optim':>8}{'activ':>8}"
            f"{'other':>8}{'total':>9}{'traced':>9}  {'fits':5}{'binding':12}{'GFLOP/tok':>10}{'s/step':>8}")
    print(head)
    for i, p in enumerate(plans):
        b = p.breakdown
        opts = options[i]
        mark = "* " if i == recommended else "  "
        print(f"{mark}{p.method:10}{opts:{width}}{'yes' if p.gradient_checkpointing else 'no':>5}"
              f"{_gib(b.weights):>9}{_gib(b.gradients):>8}{_gib(b.optimizer):>8}{_gib(b.activations):>8}"
              f"{_gib(b.other):>8}{_gib(b.total):>9}{_gib(p.traced_total):>9}  {'yes' if p.fits else 'no':5}"
              f"{p.binding_term:12}{p.flops_per_token / 1e9:>10.2f}{p.seconds_per_step:>8.3f}")
    print(f"(GiB; plans that fit first, then the fastest; time per step at {tflops:.0f} TFLOP/s × {args.mfu:.0%} "
          f"MFU; binding: the largest term you can act on; * = recommended: the most quality-preserving plan that "
          f"fits, then the fastest)")
    if recommended is not None:
        p = plans[recommended]
        print(f"recommended: {p.method}" + (" with gradient checkpointing" if p.gradient_checkpointing else ""))
    for n in notes:
        print(f"note: {n}")
    if inference is not None:
        print()
        print(inference[0])
