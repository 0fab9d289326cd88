"""Memory: how much there is, and the method, precision, micro-batch, accumulation and checkpointing that fit it.

The bytes come from each method's own memory() through the planner (memory/plan.py), for the shape the run will
really train: its micro-batch, the longest example it will see (the data's, capped by max_seq_len), padded batches
and its precision. Under a FLOP budget the fastest plan that fits is the one without recompute (checkpointing adds
a forward of every layer per step, Chen et al. 2016) and with the largest micro-batch; the effective batch
(micro-batch × accumulation) is kept.
"""

from __future__ import annotations

import dataclasses

from ..config import TrainConfig
from ..errors import UserError
from .choices import CHOSEN, DETECTED, GIVEN

GIB = 2**30
# Without a method given, the run's default method (config.TrainConfig.method, LoRA) comes first: under a FLOP
# budget its backward skips the base weights' gradients (≈4N FLOPs per token against full fine-tuning's 6N), so it
# trains about 1.5× more tokens for the same FLOPs. Where it does not fit, the planner's quality order (each
# method's QUALITY_RANK) follows.
FIRST = next(f.default for f in dataclasses.fields(TrainConfig) if f.name == "method")


def cpu_available() -> tuple[int, int]:
    """(available, total) bytes of RAM on this machine.

    Available, not free: the free pages exclude the page cache, which on a machine that has read a few model files
    is most of the RAM and is handed back on demand (a 24 GiB machine reads 0.2 GiB free and 23 GiB available).
    """
    import psutil

    mem = psutil.virtual_memory()
    return int(mem.available), int(mem.total)


def available(cfg, given: set[str]) -> tuple[int, str, str]:
    """(bytes, source, reason) of the memory the plan fits into."""
    from ..config import parse_bytes

    if cfg.budget.max_memory:
        return parse_bytes(cfg.budget.max_memory, "budget field 'max_memory'"), GIVEN, "--max-memory"
    import torch

    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        name = torch.cuda.get_device_name()
        return int(total), DETECTED, f"{name}: {total / GIB:.1f} GiB ({free / GIB:.1f} GiB free now)"
    free, total = cpu_available()
    free = (free // (GIB // 100)) * (GIB // 100)  # whole hundredths of a GiB: the value is written as --max-memory
    return int(free), DETECTED, f"no GPU: this machine's available RAM ({free / GIB:.2f} of {total / GIB:.1f} GiB)"


def seq_len(cfg, pool) -> int:
    """The longest row a micro-batch can hold: the data's longest example, capped by max_seq_len."""
    longest = max((e.n_tokens for e in pool), default=cfg.data.max_seq_len)
    return max(2, min(int(cfg.data.max_seq_len), int(longest)))


def candidates(cfg, given: set[str]) -> list[str]:
    from ..methods import registry
    from ..planner.plan import UNRANKED

    if "train.method" in given and cfg.train.method != "auto":
        return [cfg.train.method]
    names = registry.names()
    rest = sorted((m for m in names if m != FIRST), key=lambda m: getattr(registry.get(m), "QUALITY_RANK", UNRANKED))
    return ([FIRST] if FIRST in names else []) + rest


def _shape(cfg, precision: str, seq: int, micro: int, ckpt: bool):
    from ..planner.plan import run_shape

    return run_shape(cfg, precision).with_(micro_batch=micro, seq_len=seq, gradient_checkpointing=ckpt)


def layouts(cfg, given: set[str]) -> list[tuple[int, int, bool]]:
    """(micro-batch, accumulation, checkpointing) to try, fastest first."""
    micro, accum = int(cfg.train.micro_batch_size), int(cfg.train.grad_accum)
    effective = micro * accum
    if "train.micro_batch_size" in given:
        micros = [micro]
    else:
        micros = [m for m in range(effective, 0, -1) if effective % m == 0] if "train.grad_accum" not in given \
            else list(range(micro, 0, -1))
    ckpts = [bool(cfg.train.gradient_checkpointing)] if "train.gradient_checkpointing" in given else [False, True]
    out = []
    for ckpt in ckpts:
        for m in micros:
            a = accum if "train.grad_accum" in given or "train.micro_batch_size" in given else effective // m
            out.append((m, a, ckpt))
    return out


def fit(cfg, given: set[str], spec, budget: int, precision: str, seq: int) -> dict:
    """The first (method, layout) that fits, with the bytes it needs; UserError with the smallest budget else."""
    from .. import precision as precision_mod
    from ..methods import registry
    from ..planner.plan import method_memory

    options = dict(cfg.train.method_options or {})
    if (options or "train.method" in given) and cfg.train.method != "auto":
        registry.make_config(cfg.train.method, options)  # the user's method and options: a bad one is an error
    tried, smallest, skipped = 0, None, []
    for name in candidates(cfg, given):
        module = registry.get(name)
        if not precision_mod.supports(module, precision):
            skipped.append(f"{name} cannot train in {precision}")
            continue
        opts = options if name == cfg.train.method or "train.method" not in given else {}
        for micro, accum, ckpt in layouts(cfg, given):
            try:
                _, b = method_memory(spec, _shape(cfg, precision, seq, micro, ckpt), name, opts)
            except UserError as e:
                skipped.append(f"{name}: {e}")
                break
            if b is None:
                break
            tried += 1
            if smallest is None or b.total < smallest[1].total:
                smallest = (name, b, micro, ckpt)
            if b.total <= budget:
                return {"method": name, "options": opts, "micro": micro, "accum": accum, "ckpt": ckpt,
                        "breakdown": b, "tried": tried}
    if smallest is None:
        raise UserError("no method could be planned for this model: " + "; ".join(skipped[:3]))
    name, b, micro, ckpt = smallest
    need = -(-b.total // (GIB // 100)) * (GIB // 100)  # rounded up to a hundredth of a GiB
    what = "method '" + name + "'" if "train.method" in given else f"any method (the smallest is {name}"
    what += "" if "train.method" in given else ")"
    raise UserError(
        f"budget field 'max_memory' is {budget / GIB:.2f} GiB but {what} needs at least {need / GIB:.2f} GiB "
        f"(micro-batch {micro}{', gradient checkpointing' if ckpt else ''}, {seq}-token rows, {precision}; "
        f"binding term: {b.binding_term}); give --max-memory {need / GIB:.2f}GiB or more, or shorter rows "
        f"(--max-seq-len)")


def choose(plan, cfg, given: set[str], spec, pool, precision: str) -> dict:
    """Fill the plan's memory choices; returns the fitted layout (method, options, micro, accum, ckpt, breakdown)."""
    budget, source, why = available(cfg, given)
    plan.add("memory", f"{budget / GIB:.2f} GiB", source, why, "--max-memory")
    seq = seq_len(cfg, pool)
    got = fit(cfg, given, spec, budget, precision, seq)
    b = got["breakdown"]
    method_source = GIVEN if "train.method" in given and cfg.train.method != "auto" else CHOSEN
    opts = " ".join(f"{k}={v}" for k, v in got["options"].items()) or "defaults"
    if method_source == GIVEN:
        why_method = f"--method; needs {b.total / GIB:.2f} GiB of {budget / GIB:.2f}"
    elif got["method"] == FIRST:
        why_method = (f"fits ({b.total / GIB:.2f} of {budget / GIB:.2f} GiB); a frozen base skips the weight "
                      f"gradients, so a FLOP budget trains ~1.5x the tokens of full fine-tuning")
    else:
        why_method = (f"{FIRST} does not fit {budget / GIB:.2f} GiB; {got['method']} is the most quality-preserving "
                      f"method that does ({b.total / GIB:.2f} GiB)")
    plan.add("method", f"{got['method']} ({opts})", method_source, why_method, "--method, -o")
    p_source = GIVEN if "train.precision" in given and cfg.train.precision != "auto" else CHOSEN
    plan.add("precision", precision, p_source,
             "--precision" if p_source == GIVEN else
             "auto: bf16 autocast on a CUDA GPU, fp32 on CPU" + (" (--dtype bfloat16: bf16)"
                                                                 if precision == "bf16" else ""), "--precision")
    layout_given = {"train.micro_batch_size", "train.grad_accum"} & given
    plan.add("micro-batch", f"{got['micro']} x {got['accum']} accumulation", GIVEN if layout_given else CHOSEN,
             ("--micro-batch-size / --grad-accum" if layout_given else
              f"the largest micro-batch of the {got['micro'] * got['accum']}-example step that fits") +
             f"; rows up to {seq} tokens (the data's longest, max_seq_len {cfg.data.max_seq_len})",
             "--micro-batch-size, --grad-accum")
    c_source = GIVEN if "train.gradient_checkpointing" in given else CHOSEN
    plan.add("checkpointing", "on" if got["ckpt"] else "off", c_source,
             "--gradient-checkpointing" if c_source == GIVEN else
             ("needed to fit: it recomputes every layer's forward in backward (more FLOPs per token)" if got["ckpt"]
              else "not needed to fit, so no recompute FLOPs"), "--gradient-checkpointing")
    plan.memory = {"budget": budget, "planned_total": int(b.total), "by_term": b.to_dict(), "seq_len": seq,
                   "binding_term": b.binding_term}
    plan.config.update({"budget.max_memory": f"{budget}B" if source == GIVEN else f"{budget / GIB:.2f}GiB",
                        "train.method": got["method"], "train.method_options": got["options"],
                        "train.micro_batch_size": got["micro"], "train.grad_accum": got["accum"],
                        "train.gradient_checkpointing": got["ckpt"], "train.precision": precision})
    if source == GIVEN:
        plan.config["budget.max_memory"] = cfg.budget.max_memory
    return got
