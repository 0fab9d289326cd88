"""Benchmark `methods`: every registered training method on the embedded SmolLM2-135M and chatterbot-corpus, under
the same FLOP budget, on this machine's CPU.

Per method:
- memory: the method's memory model (memory(spec, shape, cfg)); the peak of all live tensors during one real
  training step, tracked tensor by tensor with the planner's dispatch-mode tracker (planner/trace.py) on real
  tensors; and the process's peak RSS growth over the whole run (VmHWM reset before the model is loaded, minus
  the RSS at that moment: weights, training, evaluation, allocator slack);
- speed: training tokens per second (one run, side by side with the others in the same process);
- FLOPs per training token, as the ledger charged them;
- held-out loss before and after the same total FLOP budget (training + evaluation), through the one training loop.

    nice -n 5 python bench/methods.py                  # all methods (≈ 15 min on 2 shared CPU cores)
    nice -n 5 python bench/methods.py --methods mezo,lozo --budget 2e12
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
DOC = ROOT / "docs" / "benchmarks" / "methods.md"

# Per method: options, peak learning rate, micro-batch. Learning rates are each method's usual range, taken to the
# high end for a run of 5-15 steps. Trials on this budget: MeZO at 1e-4 raised the held-out loss (1.270 -> 1.283 on
# 24 prompts, 15 steps), Addax's plain SGD diverged at 5e-3 (1.156 -> 20.1) and still rose at 1e-3 (-> 1.190), hence
# 1e-5 and 2e-4. Zeroth-order methods take micro-batches of 2: their progress depends on the number of steps.
SETTINGS = {
    "full": ({}, 5e-5, 4),
    "lora": ({}, 1e-3, 4),
    "adamw8bit": ({}, 5e-5, 4),
    "qlora": ({}, 1e-3, 4),
    "galore": ({"rank": 64, "update_proj_gap": 50}, 2e-4, 4),
    "badam": ({"layers_per_block": 3, "switch_every": 2}, 2e-4, 4),
    "hift": ({"layers_per_group": 6}, 2e-4, 4),
    "mezo": ({}, 1e-5, 2),
    "lozo": ({}, 1e-5, 2),
    "addax": ({}, 2e-4, 4),
    "subzero": ({}, 1e-5, 2),
    "peqa": ({}, 2e-4, 4),  # Adam on the scales: PEQA's 1e-5 … 6e-5 (LLaMA, 3 epochs) taken up for 5-15 steps
    "dqt": ({}, 1e-4, 4),
    "colm": ({}, 1e-3, 8),  # LoRA's rate; samples 8 rows and trains on its coreset of 4 (fraction 0.5)
}


def rss_kib() -> tuple[int, int]:
    text = Path("/proc/self/status").read_text()
    return (int(re.search(r"VmRSS:\s+(\d+)", text).group(1)), int(re.search(r"VmHWM:\s+(\d+)", text).group(1)))


def reset_peak_rss() -> bool:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap back, so the baseline RSS is the live set
    except OSError:
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux ≥ 4.0)
        return True
    except OSError:
        return False


def tracked_step_peak(name: str, options: dict, batch: dict, lr: float) -> dict:
    """Peak live-tensor bytes of one step (after a warm-up step, so optimizer states exist), next to the memory
    model's prediction for the same shape; for zeroth-order methods also an inference forward's peak."""
    import torch
    from accelerate import Accelerator

    from budgetune.memory.peak import PeakTracker as _PeakTracker
    from budgetune.memory.spec import spec_from_model_name
    from budgetune.memory.terms import Shape
    from budgetune.methods import registry
    from budgetune.methods.base import TrainContext, token_loss
    from budgetune.models import load_model

    module = registry.get(name)
    cfg = registry.make_config(name, options)
    model = load_model("smollm2-135m", **(module.load_kwargs(cfg) if hasattr(module, "load_kwargs") else {}))
    out = {}
    if name in ("mezo", "lozo", "subzero"):
        tracker = _PeakTracker()
        for t in list(model.parameters()) + list(model.buffers()) + list(batch.values()):
            tracker.register(t)
        model.eval()
        with tracker.mode, torch.no_grad():
            token_loss(model, batch)
        out["inference_peak"] = tracker.peak
    stepper = module.prepare(model, cfg, TrainContext(accelerator=Accelerator(cpu=True), seed=0))
    stepper.step([batch], lr)
    tracker = _PeakTracker()
    unwrapped = getattr(stepper, "unwrapped", stepper.model)
    for t in list(unwrapped.parameters()) + list(unwrapped.buffers()) + list(batch.values()):
        tracker.register(t)
    optimizers = [getattr(stepper, "optimizer", None)] + list(getattr(stepper, "optimizers", {}).values())
    for opt in optimizers:
        for state in getattr(getattr(opt, "optimizer", opt), "state", {}).values():
            for v in state.values():
                if torch.is_tensor(v):
                    tracker.register(v)
    perturbation = getattr(getattr(stepper, "spsa", None), "perturbation", None)
    for t in getattr(perturbation, "tensors", list)():  # SubZero's factors of the current window
        tracker.register(t)
    with tracker.mode:
        stepper.step([batch], lr)
    spec = spec_from_model_name("smollm2-135m")
    shape = Shape(micro_batch=batch["input_ids"].shape[0], seq_len=batch["input_ids"].shape[1], precision="fp32")
    predicted = module.memory(spec, shape, cfg)
    host = module.host_bytes(spec, shape, cfg) if hasattr(module, "host_bytes") else 0
    out.update(tracked_peak=tracker.peak, model_total=predicted.total + host, model=predicted.to_dict(),
               binding_term=predicted.binding_term)
    del stepper, model, tracker
    gc.collect()
    return out


def run_one(name: str, args, tokenizer, data, probe_batch) -> dict:
    from budgetune.config import RunConfig
    from budgetune.train.loop import train

    options, lr, micro = SETTINGS.get(name, ({}, None, 8))
    cfg = RunConfig()
    cfg.train.method, cfg.train.method_options = name, dict(options)
    cfg.train.lr, cfg.train.micro_batch_size = lr, micro
    cfg.train.warmup_steps, cfg.train.eval_points, cfg.train.checkpoint_every = 1, 1, 0
    cfg.train.eval_batch_size = 16
    cfg.train.seed = args.seed
    cfg.budget.max_flops = args.budget
    cfg.out = str(OUT / "methods-runs" / name)
    cfg.overwrite = True  # the benchmark's own run directory from an earlier invocation
    cfg.report = False
    gc.collect()
    reset_peak_rss()
    rss0, _ = rss_kib()
    t0 = time.perf_counter()
    result = train(cfg, tokenizer=tokenizer, data=data, progress=False)
    wall = time.perf_counter() - t0
    _, hwm = rss_kib()
    ledger = result.ledger
    row = {"method": name, "options": options, "lr": lr, "micro_batch": micro, "steps": ledger.steps,
           "train_tokens": ledger.tokens["train"], "train_flops": ledger.flops["train"],
           "total_flops": ledger.total_flops, "flops_per_token": ledger.flops["train"] / max(1, ledger.tokens["train"]),
           "tokens_per_s": result.train_tokens_per_second, "before_loss": result.before_loss,
           "after_loss": result.after_loss, "rss_peak_delta": (hwm - rss0) * 1024, "wall_s": wall,
           "stop_reason": result.stop_reason}
    del result
    gc.collect()
    row.update(tracked_step_peak(name, options, probe_batch, lr))
    return row


def table(rows: list[dict], budget: float, n_target: int) -> str:
    mib = 2 ** 20
    lines = [(f"Same budget for every method: {budget:.2g} FLOPs (training + evaluation), SmolLM2-135M fp32 on this CPU, "
             f"held-out loss on {n_target} chatterbot prompts. Memory: one step on a fixed batch "
             f"(4 × {rows[0]['probe_seq'] if rows else '?'} tokens); model = the method's memory(); tracked = peak of "
             f"all live tensors in a real step; RSS = peak process growth over the whole run."),
             "",
             ("| method | model MiB | tracked MiB | tracked/model | RSS Δ MiB | tokens/s | FLOPs/token | steps | "
             "held-out before → after | Δ loss |"),
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        delta = r["after_loss"] - r["before_loss"]
        lines.append(
            f"| {r['method']} | {r['model_total'] / mib:.0f} | {r['tracked_peak'] / mib:.0f} | "
            f"{r['tracked_peak'] / r['model_total']:.2f} | {r['rss_peak_delta'] / mib:.0f} | "
            f"{r['tokens_per_s']:.0f} | {r['flops_per_token']:.3g} | {r['steps']} | "
            f"{r['before_loss']:.4f} → {r['after_loss']:.4f} | {delta:+.4f} |")
    zo = [r for r in rows if "inference_peak" in r]
    if zo:
        lines += ["", "Zeroth-order peak against an inference forward on the same batch (tracked live tensors):", ""]
        lines += [f"- {r['method']}: {r['tracked_peak'] / mib:.1f} MiB vs {r['inference_peak'] / mib:.1f} MiB "
                  f"({r['tracked_peak'] / r['inference_peak']:.3f}×)" for r in zo]
    return "\n".join(lines) + "\n"


def memory_only(names: list[str], probe: dict) -> int:
    """Memory model against the tracked peak of one real step (after a warm-up step), per method."""
    mib = 2 ** 20
    rows = []
    for name in names:
        options, lr, _ = SETTINGS.get(name, ({}, None, 8))
        row = {"method": name, "options": options, **tracked_step_peak(name, options, probe, lr)}
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "model"}), flush=True)
    lines = [(f"One step on a fixed batch (4 × {probe['input_ids'].shape[1]} tokens), SmolLM2-135M fp32; model = the "
              "method's memory(), tracked = peak of all live tensors in the real step."), "",
             "| method | model MiB | tracked MiB | tracked/model | weights MiB (model) | binding term |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['model_total'] / mib:.0f} | {r['tracked_peak'] / mib:.0f} | "
                     f"{r['tracked_peak'] / r['model_total']:.2f} | {r['model']['weights'] / mib:.0f} | "
                     f"{r['binding_term']} |")
    text = "\n".join(lines) + "\n"
    print(text)
    (OUT / "methods_memory.json").write_text(json.dumps(rows, indent=1))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default="", help="comma-separated subset (default: every registered method)")
    parser.add_argument("--budget", type=float, default=4e12, help="FLOPs per method, training + evaluation")
    parser.add_argument("--target", type=int, default=16, help="held-out prompts evaluated")
    parser.add_argument("--memory-only", action="store_true",
                        help="only the memory columns (model vs one tracked step), no training run; rows go to "
                             "bench/out/methods_memory.json")
    parser.add_argument("--seed", type=int, default=0,
                        help="training seed (initialisation, data order, perturbations); seeds other than 0 go to "
                             "bench/out/methods_seed<N>.json and leave the doc alone")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; on 2 cores shared with other work, 1 thread ran ~5x faster than 2")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.path.insert(0, str(ROOT / "src"))
    import torch

    torch.set_num_threads(args.threads)
    from budgetune.config import DataConfig
    from budgetune.data import DataSplit, collate, load_data
    from budgetune.methods import registry
    from budgetune.models import load_tokenizer

    tokenizer = load_tokenizer("smollm2-135m")
    full = load_data(DataConfig(), tokenizer)
    data = DataSplit(full.train, full.target[: args.target], full.source)
    probe = collate(full.train[:4], tokenizer.pad_token_id)
    names = [n for n in args.methods.split(",") if n] or registry.names()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.memory_only:
        return memory_only(names, probe)
    rows = []
    for name in names:
        print(f"== {name}", flush=True)
        row = run_one(name, args, tokenizer, data, probe)
        row["probe_seq"] = int(probe["input_ids"].shape[1])
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "model"}), flush=True)
    # A run of some methods replaces their rows in an earlier run's results with the same budget.
    saved = OUT / ("methods.json" if args.seed == 0 else f"methods_seed{args.seed}.json")
    if args.methods and saved.exists():
        earlier = json.loads(saved.read_text())
        if earlier.get("budget") == args.budget and earlier.get("target") == len(data.target):
            redone = {r["method"] for r in rows}
            rows = [r for r in earlier["rows"] if r["method"] not in redone] + rows
            order = registry.names()
            rows.sort(key=lambda r: order.index(r["method"]) if r["method"] in order else len(order))
    text = table(rows, args.budget, len(data.target))
    print(text)
    saved.write_text(json.dumps({"budget": args.budget, "target": len(data.target), "rows": rows}, indent=1))
    if args.seed == 0 and {r["method"] for r in rows} >= set(registry.names()):
        DOC.parent.mkdir(parents=True, exist_ok=True)
        DOC.write_text("# Benchmark: methods\n\nProduced by `nice -n 5 python bench/methods.py`.\n\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
