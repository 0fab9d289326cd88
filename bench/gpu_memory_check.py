"""GPU check of the memory model: every registered method (QLoRA's 4-bit base and 8-bit AdamW included) trains a
few steps on CUDA with its own stepper, on padded, masked batches as the loop collates them, and
torch.cuda.max_memory_allocated is compared with budgetune's analytic estimate (tensor bytes) and, for the methods
the tracer mirrors, the fake-tensor trace. Where CUDA is absent it says so and exits 0, writing nothing.

Run: `python bench/gpu_memory_check.py [--steps 3] [--no-trace] [--quick]`. Prints a table, writes
bench/out/gpu_memory_check.json and docs/benchmarks/gpu_memory.md. Models are built from config shapes with
random weights (no download).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "src"))

# Shapes every method is checked on: (model, precision, micro-batch, seq-len, checkpointing, padding share).
SHAPES = [
    ("SmolLM2-135M (llama)", "amp_bf16", 4, 1024, False, 0.25),
    ("SmolLM2-135M (llama)", "amp_bf16", 4, 1024, False, 0.0),
    ("Qwen2.5-0.5B (qwen2)", "amp_bf16", 4, 1024, True, 0.25),
    ("Llama-3.2-1B (llama)", "bf16", 2, 2048, False, 0.25),
]
OPTIONS = {"lora": {"r": 16}, "qlora": {"r": 16}, "galore": {"rank": 128}, "hift": {"layers_per_group": 4},
           "addax": {"max_fo_len": 512}}


@dataclass(frozen=True)
class Case:
    model: str
    method: str
    precision: str
    batch: int
    seq_len: int
    checkpointing: bool
    padding: float

    @property
    def options(self) -> dict:
        return dict(OPTIONS.get(self.method, {}))


def cases(quick: bool = False) -> list[Case]:
    """Every registered method on every shape whose precision it can run (built from the registry, so a newly
    registered method is checked too)."""
    from budgetune import precision as P
    from budgetune.methods import registry

    out = []
    for model, precision, b, s, ckpt, padding in SHAPES[:1] if quick else SHAPES:
        for name in registry.names():
            if P.supports(registry.get(name), precision):
                out.append(Case(model, name, precision, b, s, ckpt, padding))
    return out


def shape_of(case: Case):
    from budgetune.memory.terms import Shape

    return Shape(micro_batch=case.batch, seq_len=case.seq_len, precision=case.precision,
                 gradient_checkpointing=case.checkpointing, padding=case.padding)


def measure(config, case: Case, steps: int, tmp: Path) -> int:
    """Peak CUDA tensor bytes over `steps` steps of the method's own stepper (model build included), as the
    training loop runs it: accelerate's mixed precision, collated padded batches."""
    import torch
    from transformers import AutoModelForCausalLM

    from budgetune import precision as P
    from budgetune.methods import registry
    from budgetune.methods.base import TrainContext
    from budgetune.planner.trace import padded_batch

    module = registry.get(case.method)
    cfg = registry.make_config(case.method, case.options)
    accelerator = P.make_accelerator(case.precision, cpu=False)
    dtype = {"bfloat16": torch.bfloat16}.get(P.load_dtype(case.precision, module, "float32"), torch.float32)
    quantised = hasattr(module, "load_kwargs")
    if quantised:  # bitsandbytes quantises at load time: save random weights once, load them in 4 bit
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(config).save_pretrained(tmp / case.model, safe_serialization=True)
    batch = {k: v.cuda() for k, v in padded_batch(shape_of(case)).items()}
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    torch.manual_seed(0)
    if quantised:
        model = AutoModelForCausalLM.from_pretrained(tmp / case.model, device_map={"": 0}, **module.load_kwargs(cfg))
    else:
        model = AutoModelForCausalLM.from_config(config, dtype=dtype).cuda()
    model.config.use_cache = False
    stepper = module.prepare(model, cfg, TrainContext(accelerator=accelerator, seed=0, precision=case.precision,
                                                      gradient_checkpointing=case.checkpointing))
    for _ in range(steps):
        stepper.step([batch], 1e-5)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    del stepper, model
    torch.cuda.empty_cache()
    return peak


def row_of(case: Case, cuda: int, estimate: int, traced: int | None, seconds: float) -> dict:
    return {"model": case.model, "method": case.method, "precision": case.precision, "batch": case.batch,
            "seq_len": case.seq_len, "checkpointing": case.checkpointing, "padding": case.padding,
            "cuda_max_allocated": cuda, "estimate": estimate, "traced": traced, "seconds": round(seconds, 1)}


def _err(value: int | None, ref: int) -> str:
    return "-" if value is None else f"{value / 2**30:.2f} ({(value - ref) / ref:+.1%})"


def markdown(rows: list[dict], device: str, steps: int) -> str:
    """The doc this check writes: one row per case, errors relative to CUDA's peak, and a summary."""
    errors = [(r["estimate"] - r["cuda_max_allocated"]) / r["cuda_max_allocated"] for r in rows]
    lines = ["# gpu_memory", "",
             (f"Generated by `bench/gpu_memory_check.py` on {device}: torch.cuda.max_memory_allocated over "
              f"{steps} steps of each method's own stepper (model build included), on padded batches as the "
              "training loop collates them, against budgetune's analytic estimate and, where the tracer mirrors "
              "the method, the fake-tensor trace (GiB; tensor bytes: no CUDA context or allocator slack)."), ""]
    if errors:
        under = sum(1 for e in errors if e < -0.02)
        lines += [(f"Estimate vs CUDA over {len(rows)} cases: median abs. error "
                   f"{sorted(abs(e) for e in errors)[len(errors) // 2]:.1%}, worst {max(abs(e) for e in errors):.1%}, "
                   f"{under} under by more than 2%."), ""]
    lines += ["| model | method | precision | batch × seq | padding | ckpt | CUDA | estimate | trace |",
              "|---|---|---|---|---:|---|---:|---:|---:|"]
    for r in rows:
        c = r["cuda_max_allocated"]
        lines.append(f"| {r['model']} | {r['method']} | {r['precision']} | {r['batch']} × {r['seq_len']} | "
                     f"{r['padding']:.2f} | {'yes' if r['checkpointing'] else 'no'} | {c / 2**30:.2f} | "
                     f"{_err(r['estimate'], c)} | {_err(r['traced'], c)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--no-trace", action="store_true", help="skip the fake-tensor trace column")
    parser.add_argument("--quick", action="store_true", help="the first shape only")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("gpu_memory_check: skipped: no CUDA device here (torch.cuda.is_available() is False); run it on a "
              "machine with an NVIDIA GPU to measure torch.cuda.max_memory_allocated. Nothing was written.")
        return 0
    from memory_accuracy import MODELS
    from transformers import AutoConfig

    from budgetune.memory.spec import spec_from_dict
    from budgetune.methods.registry import get, make_config
    from budgetune.planner.trace import trace_step, traceable

    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="gpumem."))
    for case in cases(args.quick):
        d = MODELS[case.model]
        spec = spec_from_dict(d, case.model)
        config = AutoConfig.for_model(d["model_type"], **{k: v for k, v in d.items() if k != "model_type"})
        cfg = make_config(case.method, case.options)
        estimate = get(case.method).memory(spec, shape_of(case), cfg).total
        t0 = time.perf_counter()
        try:
            cuda = measure(config, case, args.steps, tmp)
        except torch.cuda.OutOfMemoryError:
            print(f"{case.model} {case.method}: out of memory, skipped")
            torch.cuda.empty_cache()
            continue
        traced = None
        if not args.no_trace and case.method in traceable():
            traced = trace_step(config, shape_of(case), case.method, cfg).peak
        row = row_of(case, cuda, estimate, traced, time.perf_counter() - t0)
        rows.append(row)
        print(f"{case.model:22} {case.method:9} {case.precision:8} b{case.batch} s{case.seq_len} "
              f"pad {case.padding:.2f} ckpt={int(case.checkpointing)} cuda {cuda / 2**30:6.2f} GiB  "
              f"estimate {_err(estimate, cuda)}  trace {_err(traced, cuda)}", flush=True)
    device = torch.cuda.get_device_name()
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_memory_check.json").write_text(json.dumps({"device": device, "steps": args.steps, "rows": rows},
                                                          indent=2))
    (ROOT / "docs" / "benchmarks" / "gpu_memory.md").write_text(markdown(rows, device, args.steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
