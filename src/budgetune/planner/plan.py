"""The planner: every registered method and option set, its memory on one device (each method's own memory()),
whether it fits, its binding term, FLOPs per token and time per step, and the best plan that fits.

`check_fits(run_cfg)` is the same computation for one configured run; the training loop calls it before any
weight is loaded and it raises Infeasible (exit 1) with the binding term and what to change.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

from ..errors import Infeasible, UserError
from ..memory.spec import ModelSpec
from ..memory.terms import MemoryBreakdown, Shape

GIB = 2**30
# The runtime overhead on one device, one definition for `plan` and a run's check_fits: the CUDA context and
# cuBLAS/cuDNN workspaces (≈ 0.3–0.5 GiB), and the caching allocator's slack as a share of the tensor bytes.
OVERHEAD = "512MiB"
FRAGMENTATION = 0.05

# Which methods the planner recommends first, the option sets it tries and the FLOPs it plans are the method
# modules' own declarations (QUALITY_RANK, PLAN_OPTIONS, flop_kinds; see methods/base.py): no method names here.
# A method without QUALITY_RANK ranks last; without PLAN_OPTIONS it is tried with its defaults.
UNRANKED = 1_000

# Dense bf16 tensor-core peak TFLOP/s (vendor data sheets); time per step assumes `mfu` of it.
DEVICE_TFLOPS = {"h200": 989.0, "h100": 989.0, "a100": 312.0, "l40s": 362.0, "a10g": 125.0, "l4": 121.0,
                 "rtx4090": 165.0, "rtx3090": 71.0, "v100": 125.0, "t4": 65.0}


@dataclass
class Plan:
    method: str
    options: dict
    gradient_checkpointing: bool
    breakdown: MemoryBreakdown
    fits: bool = False
    traced_total: int | None = None
    flops_per_token: float = 0.0
    seconds_per_step: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.traced_total if self.traced_total is not None else self.breakdown.total

    @property
    def binding_term(self) -> str:
        return binding_term(self.breakdown)

    def to_json(self) -> dict:
        return {"method": self.method, "options": self.options, "gradient_checkpointing": self.gradient_checkpointing,
                "bytes": self.breakdown.to_dict(), "traced_total": self.traced_total, "fits": self.fits,
                "binding_term": self.binding_term, "flops_per_token": self.flops_per_token}


ACTIONABLE = ("weights", "gradients", "optimizer", "activations")  # "other" is fixed runtime overhead


def binding_term(breakdown: MemoryBreakdown) -> str:
    """The largest term a user can act on (a method, quantisation, sharding, batch or sequence length); the fixed
    overhead ("other": CUDA context, workspace) is never the one to cut."""
    return max(ACTIONABLE, key=lambda t: getattr(breakdown, t))


def sort_plans(plans: list[Plan]) -> list[Plan]:
    """Plans that fit first, then the fastest per step, then the smallest."""
    return sorted(plans, key=lambda p: (not p.fits, p.seconds_per_step, p.total))


def resolve_options(name: str, options: dict, spec: ModelSpec | None) -> dict:
    """Replace planner shorthands ("all" LoRA targets) by the model's own names."""
    out = dict(options)
    if out.get("target_modules") == "all" and spec is not None:
        out["target_modules"] = spec.linear_names
    return out


def flops_per_token(spec: ModelSpec, method: str, cfg, shape: Shape) -> float:
    """Training FLOPs per token from the profile the run's ledger charges (budgetune.flop_plan: the model's products
    laid out from the config, with the trainable set the method's own flop_kinds() declares: all matrices, adapters,
    the mean over a cycle of blocks, or two forward passes per direction for a FORWARD_ONLY method)."""
    from ..flop_plan import planned_flops_per_token
    from ..methods import registry

    own = getattr(registry.get(method), "planned_flops_per_token", None)  # a method that prices itself (CoLM)
    if own is not None:
        return own(spec, cfg, shape.seq_len, shape.gradient_checkpointing)
    return planned_flops_per_token(spec, registry.get(method), cfg, shape.seq_len, shape.gradient_checkpointing)


def method_memory(spec: ModelSpec, shape: Shape, name: str, options: dict):
    """(Config, MemoryBreakdown) of one method from its own module's memory(), or (cfg, None) when it has none."""
    from ..methods import registry

    module = registry.get(name)
    cfg = registry.make_config(name, resolve_options(name, options, spec))
    memory = getattr(module, "memory", None)
    if memory is None:
        return cfg, None
    return cfg, memory(spec, shape, cfg)


def enumerate_plans(spec: ModelSpec, shape: Shape, budget: int, *, methods: list[str] | None = None,
                    tflops: float = 312.0, mfu: float = 0.4, notes: list[str] | None = None) -> list[Plan]:
    from ..methods import registry

    plans: list[Plan] = []
    names = methods or registry.names()
    for name in names:
        from ..precision import supports

        if not supports(registry.get(name), shape.precision):
            if notes is not None:
                notes.append(f"{name}: skipped (it cannot train in {shape.precision})")
            continue
        for options in getattr(registry.get(name), "PLAN_OPTIONS", [{}]):
            for ckpt in (False, True):
                s = shape.with_(gradient_checkpointing=ckpt)
                rank = int(options.get("r", 0))
                smallest = min(min(l.in_features, l.out_features) for l in spec.layer_linears)
                if rank > smallest:
                    break  # a rank above the layers' width is not a low-rank adapter
                try:
                    cfg, breakdown = method_memory(spec, s, name, options)
                except UserError as e:
                    if notes is not None:
                        notes.append(f"{name} {options}: skipped ({e})")
                    break
                if breakdown is None:
                    if notes is not None:
                        notes.append(f"{name}: skipped (its module has no memory() model yet)")
                    break
                try:
                    fpt = flops_per_token(spec, name, cfg, s)
                except UserError as e:  # a method that declares no FLOP profile yet is skipped, not fatal
                    if notes is not None:
                        notes.append(f"{name}: skipped ({e})")
                    break
                seconds = fpt * s.tokens / (tflops * 1e12 * mfu)
                plans.append(Plan(name, resolve_options(name, options, spec), ckpt, breakdown,
                                  fits=breakdown.total <= budget, flops_per_token=fpt, seconds_per_step=seconds))
    return plans


def recommend(plans: list[Plan]) -> int | None:
    """Index of the most quality-preserving plan that fits; among equals the fastest."""
    from ..methods import registry

    def rank(i: int):
        p = plans[i]
        return (getattr(registry.get(p.method), "QUALITY_RANK", UNRANKED), p.seconds_per_step, p.total)

    feasible = [i for i, p in enumerate(plans) if p.fits]
    return min(feasible, key=rank) if feasible else None


def advice(plans: list[Plan], shape: Shape, budget: int) -> str:
    """What to change when nothing fits: the smallest footprint, its binding term and the levers."""
    smallest = min(plans, key=lambda p: p.total)
    b = smallest.breakdown
    term = binding_term(b)
    over = smallest.total - budget
    levers = []
    if term == "activations" or b.activations > over:
        levers.append(f"shorter sequences or a smaller micro-batch (activations {b.activations / GIB:.1f} GiB "
                      f"at seq-len {shape.seq_len} × batch {shape.micro_batch})")
    if term in ("weights", "optimizer", "gradients"):
        levers.append(f"more GPUs with sharding (model states {(b.weights + b.gradients + b.optimizer) / GIB:.1f}"
                      f" GiB divide over ranks under ZeRO-3/FSDP)")
    levers.append("a GPU with more memory")
    ck = " with gradient checkpointing" if smallest.gradient_checkpointing else ""
    return (f"nothing fits in {budget / GIB:.1f} GiB; the smallest footprint is {smallest.method}{ck} at "
            f"{smallest.total / GIB:.1f} GiB (binding term: {term}); try " + "; or ".join(levers))


def trace_plans(model: str, plans: list[Plan], shape: Shape, budget: int, *, time_budget: float = 60.0,
                margin: float = 0.25, spec: ModelSpec | None = None, recommended: int | None = None) -> list[str]:
    """Fill traced_total for the recommended plan first, then for borderline ones (analytic total within `margin`
    of the budget: the ones a few percent could flip) while `time_budget` seconds last."""
    from ..memory.terms import runtime_overhead
    from ..models import load_config
    from .trace import trace_step, traceable

    config = load_config(model)
    notes = []
    borderline = [i for i in range(len(plans))
                  if i != recommended and abs(plans[i].breakdown.total - budget) <= margin * budget]
    order = ([recommended] if recommended is not None else []) + sorted(
        borderline, key=lambda i: abs(plans[i].breakdown.total - budget))
    start = time.perf_counter()
    traced = 0
    can = traceable()
    for i in order:
        p = plans[i]
        if p.method not in can:
            continue
        if time.perf_counter() - start > time_budget:
            notes.append("tracing stopped at its time limit; untraced plans keep traced_total null")
            break
        from ..methods.registry import make_config

        cfg = make_config(p.method, p.options) if p.options.get("target_modules") != "all" else None
        try:
            r = trace_step(config, shape.with_(gradient_checkpointing=p.gradient_checkpointing), p.method, cfg)
        except UserError as e:
            notes.append(f"{p.method} {p.options}: not traced ({e})")
            continue
        p.traced_total = r.peak + runtime_overhead(shape, r.peak)
        traced += 1
        p.fits = p.traced_total <= budget
        if spec is None:
            p.breakdown = r.breakdown
    notes.append(f"traced {traced} plan(s): the recommended one and those within {margin:.0%} of the budget that "
                 f"the tracer reproduces ({', '.join(can)}); traced totals include the runtime overhead")
    return notes


def run_shape(run_cfg, precision: str | None = None) -> Shape:
    """The Shape a configured run trains with, as `plan` builds it: its micro-batch and longest sequence, padded
    batches as the loop collates them, the precision the run resolves to, and the shared runtime overhead."""
    from .. import precision as precision_mod
    from ..config import parse_bytes

    return Shape(micro_batch=int(run_cfg.train.micro_batch_size), seq_len=int(run_cfg.data.max_seq_len),
                 precision=precision or precision_mod.for_run(run_cfg),
                 gradient_checkpointing=bool(run_cfg.train.gradient_checkpointing),
                 overhead_bytes=parse_bytes(OVERHEAD), fragmentation=FRAGMENTATION)


def check_fits(run_cfg, *, world: int = 1, sharding: str = "none") -> dict:
    """Refuse a run whose method cannot fit cfg.budget.max_memory (before any weight is loaded).

    Returns the plan as JSON (method, options, gradient_checkpointing, bytes, fits, ...); with train.method "auto"
    it is the planner's recommendation, which the caller applies. Raises Infeasible naming the binding term and
    what to change."""
    from ..config import parse_bytes
    from ..memory.spec import spec_from_model_name

    budget = parse_bytes(run_cfg.budget.max_memory, "budget field 'max_memory'")
    spec = spec_from_model_name(run_cfg.model.model)
    shape = run_shape(run_cfg)
    shape = shape.with_(ranks=max(1, int(world)), sharding=sharding)  # per-rank memory of the layout the run uses
    name = run_cfg.train.method
    if name == "auto":  # the planner picks: the most quality-preserving method that fits, then the fastest
        shardable = shardable_methods() if sharding != "none" else None
        plans = enumerate_plans(spec, shape, budget, methods=shardable)  # with and without checkpointing
        best = recommend(plans)
        if best is None:
            raise Infeasible(f"budget max_memory {run_cfg.budget.max_memory}: {advice(plans, shape, budget)}")
        out = plans[best].to_json()
        out["budget"] = budget
        out["shape"] = dataclasses.asdict(shape)
        return out
    cfg, breakdown = method_memory(spec, shape, name, dict(run_cfg.train.method_options or {}))
    if breakdown is None:
        return {"method": name, "checked": False, "note": f"method '{name}' has no memory model; not checked"}
    plan = Plan(name, dict(run_cfg.train.method_options or {}), shape.gradient_checkpointing, breakdown,
                fits=breakdown.total <= budget)
    if not plan.fits:
        b = breakdown
        relief = ", ".join(relieving(b.binding_term))
        fixes = {"activations": "lower micro_batch_size or max_seq_len, or turn on gradient_checkpointing",
                 "weights": f"a method with smaller weights ({relief}) or a smaller model",
                 "optimizer": f"a method with less optimizer state ({relief})",
                 "gradients": f"a method with fewer gradients ({relief})",
                 "other": "a smaller batch or fewer trainable tensors"}
        raise Infeasible(
            f"method '{name}' needs {b.total / GIB:.2f} GiB but budget max_memory is {budget / GIB:.2f} GiB; "
            f"binding term: {b.binding_term} ({getattr(b, b.binding_term) / GIB:.2f} GiB); try "
            f"{fixes[b.binding_term]} (`budgetune plan --model {run_cfg.model.model} --gpu-memory "
            f"{run_cfg.budget.max_memory}` lists what fits)")
    out = plan.to_json()
    out["budget"] = budget
    out["shape"] = dataclasses.asdict(shape)
    return out


def shardable_methods() -> list[str]:
    """The registered methods whose module declares SHARDABLE = True (they run under FSDP2 / ZeRO)."""
    from ..methods import registry

    return [n for n in registry.names() if getattr(registry.get(n), "SHARDABLE", False)]


def relieving(term: str) -> list[str]:
    """The registered methods whose module declares that it cuts `term` against full fine-tuning (RELIEVES)."""
    from ..methods import registry

    return [n for n in registry.names() if term in getattr(registry.get(n), "RELIEVES", ())]
