"""CoLM's memory claim on SmolLM2-135M (fp32, CPU): a coreset of half of each batch should need about half the
activation memory of training on the whole batch ("reduces the memory requirement of fine-tuning by 2×").

At the same sampled batch (B rows of chatterbot-corpus), per method: the memory model (memory()), the fake-tensor
tracer (memory/trace.py; CoLM traced as LoRA on its coreset rows), and one real training step tracked tensor by
tensor (the planner's dispatch-mode tracker on real tensors, after a warm-up step so optimizer states exist). The
step's transient = tracked peak − what was live before it (weights, buffers, optimizer states, the batch): the
activation (+ gradient) memory the claim is about. Optionally (--steps N) the held-out loss after N steps of LoRA on
the whole batch and of CoLM on its coreset, from the same start, with the FLOPs each spent.

    OMP_NUM_THREADS=1 nice -n 15 python bench/colm_memory.py --batch 8
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"


def tracked(name: str, options: dict, batch: dict, lr: float) -> dict:
    import torch
    from accelerate import Accelerator

    from budgetune.memory.peak import PeakTracker as _PeakTracker
    from budgetune.methods import registry
    from budgetune.methods.base import TrainContext
    from budgetune.models import load_model

    module = registry.get(name)
    cfg = registry.make_config(name, options)
    stepper = module.prepare(load_model("smollm2-135m"), cfg, TrainContext(accelerator=Accelerator(cpu=True), seed=0))
    stepper.step([batch], lr)
    tracker = _PeakTracker()
    model = stepper.unwrapped
    live = list(model.parameters()) + list(model.buffers()) + list(batch.values())
    for state in stepper.optimizer.state.values():
        live += [v for v in state.values() if torch.is_tensor(v)]
    for t in live:
        tracker.register(t)
    before = sum(t.untyped_storage().nbytes() for t in {id(t.untyped_storage()): t for t in live}.values())
    with tracker.mode:
        result = stepper.step([batch], lr)
    out = {"tracked_peak": tracker.peak, "before_step": before, "transient": tracker.peak - before,
           "step_flops": result.flops}
    del stepper, model, tracker
    gc.collect()
    return out


def train_losses(batches, test, steps: int, lr: float) -> dict:
    """Held-out loss after `steps` steps on the same sampled batches, LoRA on all rows vs CoLM on its coreset."""
    from accelerate import Accelerator

    from budgetune.methods import registry
    from budgetune.methods.base import TrainContext
    from budgetune.models import load_model
    from budgetune.train.evaluate import heldout_loss

    out = {}
    for name in ("lora", "colm"):
        acc = Accelerator(cpu=True)
        stepper = registry.get(name).prepare(load_model("smollm2-135m"), registry.make_config(name, {}),
                                             TrainContext(accelerator=acc, seed=0))
        flops = 0.0
        for i in range(steps):
            flops += stepper.step([batches[i % len(batches)]], lr).flops
        loss, _, _ = heldout_loss(stepper.model, test, pad_id=2, batch_size=16, accelerator=acc)
        out[name] = {"loss": loss, "flops": flops, "steps": steps}
        print(f"  {name}: held-out {loss:.4f} after {steps} steps, {flops:.3g} FLOPs", flush=True)
        del stepper
        gc.collect()
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=8, help="sampled rows per step (one micro-batch)")
    p.add_argument("--max-seq-len", type=int, default=64)
    p.add_argument("--steps", type=int, default=0, help="also train this many steps each (0: memory only)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--methods", default="lora,colm,full")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import torch

    torch.set_num_threads(1)
    from budgetune.config import DataConfig
    from budgetune.data import collate, load_data
    from budgetune.memory.spec import spec_from_model_name
    from budgetune.memory.terms import Shape
    from budgetune.methods import registry
    from budgetune.models import load_tokenizer
    from budgetune.planner.trace import trace_model

    tokenizer = load_tokenizer("smollm2-135m")
    full = load_data(DataConfig(max_seq_len=args.max_seq_len), tokenizer)
    # Rows of one length, so the model's and tracer's unpadded shape is the real step's.
    by_len = sorted(full.train, key=lambda e: -e.n_tokens)
    rows = [e for e in by_len if e.n_tokens == by_len[0].n_tokens][: args.batch]
    if len(rows) < args.batch:
        rows = by_len[: args.batch]
        rows = [type(e)(e.input_ids[: rows[-1].n_tokens], e.labels[: rows[-1].n_tokens], e.category) for e in rows]
    batch = collate(rows, tokenizer.pad_token_id)
    s = batch["input_ids"].shape[1]
    spec = spec_from_model_name("smollm2-135m")
    shape = Shape(micro_batch=args.batch, seq_len=s, precision="fp32", padding=0.0)
    results = []
    for name in [n for n in args.methods.split(",") if n]:
        cfg = registry.make_config(name, {})
        model = registry.get(name).memory(spec, shape, cfg)
        trace = trace_model("smollm2-135m", shape, name, {})
        real = tracked(name, {}, batch, 1e-4)
        row = {"method": name, "model": model.to_dict(), "binding_term": model.binding_term,
               "traced_peak": trace.peak, "traced": trace.breakdown.to_dict(), **real}
        results.append(row)
        print(json.dumps({k: v for k, v in row.items() if k not in ("model", "traced")}), flush=True)
    losses = {}
    if args.steps:
        batches = [collate(full.train[i * args.batch:(i + 1) * args.batch], tokenizer.pad_token_id)
                   for i in range(args.steps)]
        losses = train_losses(batches, full.target[:16], args.steps, args.lr)
    OUT.mkdir(parents=True, exist_ok=True)
    from budgetune import atomic

    atomic.write_json(OUT / "colm_memory.json", {"batch": args.batch, "seq_len": s, "rows": results,
                                                 "losses": losses})
    mib = 2 ** 20
    lines = [f"SmolLM2-135M fp32, one micro-batch of {args.batch} × {s} tokens (no padding), CPU.", "",
             ("| method | trains on | model total MiB | model activations MiB | traced peak MiB | tracked peak MiB | "
              "tracked / model | step transient MiB (tracked) | binding term |"), "|" + "---|" * 9]
    for r in results:
        on = f"{registry.get('colm').coreset_rows(args.batch, 0.5)} of {args.batch} rows" if r["method"] == "colm" \
            else f"{args.batch} rows"
        lines.append(f"| {r['method']} | {on} | {r['model']['total'] / mib:.0f} | {r['model']['activations'] / mib:.0f}"
                     f" | {r['traced_peak'] / mib:.0f} | {r['tracked_peak'] / mib:.0f} | "
                     f"{r['tracked_peak'] / r['model']['total']:.2f} | {r['transient'] / mib:.0f} | "
                     f"{r['binding_term']} |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
