"""GPU check of the memory model: train a few steps per case on CUDA and compare torch.cuda.max_memory_allocated
with budgetune's analytic estimate and with the fake-tensor trace. Skipped (exit 0) where CUDA is absent.

Run: `python bench/gpu_memory_check.py [--steps 3]`. Prints a table, writes bench/out/gpu_memory_check.json and
docs/benchmarks/gpu_memory_check.md. Models are built from config shapes with random weights (no download); the
loss, optimizer (AdamW, PyTorch's default foreach on CUDA) and the packed (mask-free) batch are the tracer's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "src"))

CASES = [  # (model, method, precision, micro-batch, seq-len, checkpointing, attention)
    ("SmolLM2-135M (llama)", "full", "amp_bf16", 4, 1024, False, "sdpa"),
    ("SmolLM2-135M (llama)", "full", "bf16", 8, 2048, True, "sdpa"),
    ("SmolLM2-135M (llama)", "lora", "amp_bf16", 8, 2048, False, "sdpa"),
    ("SmolLM2-135M (llama)", "lora", "bf16", 4, 1024, False, "eager"),
    ("Qwen2.5-0.5B (qwen2)", "full", "amp_bf16", 2, 1024, False, "sdpa"),
    ("Qwen2.5-0.5B (qwen2)", "lora", "amp_bf16", 4, 2048, True, "sdpa"),
    ("Qwen3-0.6B (qwen3)", "lora", "bf16", 4, 2048, False, "sdpa"),
    ("Llama-3.2-1B (llama)", "full", "bf16", 2, 2048, False, "sdpa"),
    ("Llama-3.2-1B (llama)", "lora", "amp_bf16", 4, 2048, False, "sdpa"),
    ("Gemma-2B (gemma)", "lora", "amp_bf16", 2, 1024, False, "sdpa"),
    ("Phi-3-mini (phi3)", "lora", "bf16", 2, 1024, True, "sdpa"),
    ("Pythia-410M (gpt_neox)", "lora", "amp_bf16", 4, 1024, False, "sdpa"),
]


def measure(config, spec, method: str, mcfg, shape, steps: int) -> int:
    """Peak CUDA tensor bytes over `steps` training steps, as budgetune trains (steady state included)."""
    import torch
    from transformers import AutoModelForCausalLM

    from budgetune.memory.trace import _loss
    from budgetune.methods.base import enable_checkpointing

    low = shape.precision == "bf16" or (shape.precision == "amp_bf16" and method != "full")
    torch.cuda.empty_cache()
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16 if low else torch.float32,
                                             attn_implementation=shape.attention).cuda()
    if method == "lora":
        from peft import get_peft_model

        from budgetune.methods.lora import lora_config

        model = get_peft_model(model, lora_config(mcfg, model))
    if shape.gradient_checkpointing:
        enable_checkpointing(model)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    ids = torch.randint(0, spec.vocab, (shape.micro_batch, shape.seq_len), device="cuda")
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=shape.precision == "amp_bf16")
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    for _ in range(steps):
        with autocast:
            loss = _loss(model, batch)
        loss.backward()
        del loss
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    del model, optimizer, batch
    return peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--no-trace", action="store_true", help="skip the fake-tensor trace column")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("gpu_memory_check: skipped (no CUDA device)")
        return 0
    from memory_accuracy import MODELS
    from transformers import AutoConfig

    from budgetune.memory.spec import spec_from_dict
    from budgetune.memory.terms import Shape
    from budgetune.memory.trace import trace_step
    from budgetune.methods import full, lora

    rows = []
    for name, method, precision, b, s, ckpt, attn in CASES:
        d = MODELS[name]
        spec = spec_from_dict(d, name)
        config = AutoConfig.for_model(d["model_type"], **{k: v for k, v in d.items() if k != "model_type"})
        shape = Shape(micro_batch=b, seq_len=s, precision=precision, gradient_checkpointing=ckpt, attention=attn)
        mcfg = full.Config() if method == "full" else lora.Config(r=16, target_modules=spec.linear_names)
        est = (full if method == "full" else lora).memory(spec, shape, mcfg).total
        t0 = time.perf_counter()
        try:
            cuda = measure(config, spec, method, mcfg, shape, args.steps)
        except torch.cuda.OutOfMemoryError:
            print(f"{name} {method}: out of memory, skipped")
            continue
        traced = None if args.no_trace else trace_step(config, shape, method, mcfg).peak
        row = {"model": name, "method": method, "precision": precision, "batch": b, "seq_len": s,
               "checkpointing": ckpt, "attention": attn, "cuda_max_allocated": cuda, "estimate": est,
               "traced": traced, "seconds": round(time.perf_counter() - t0, 1)}
        rows.append(row)
        print(f"{name:22} {method:5} {precision:8} b{b} s{s} ckpt={int(ckpt)} {attn:5} cuda {cuda / 2**30:6.2f} GiB"
              f"  estimate {est / 2**30:6.2f} ({(est - cuda) / cuda:+.1%})"
              + (f"  trace {traced / 2**30:6.2f} ({(traced - cuda) / cuda:+.1%})" if traced else ""), flush=True)
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_memory_check.json").write_text(json.dumps({"device": torch.cuda.get_device_name(), "rows": rows},
                                                          indent=2))
    lines = ["# gpu_memory_check", "", (f"Device: {torch.cuda.get_device_name()}; torch.cuda.max_memory_allocated "
             f"over {args.steps} steps against the analytic estimate and the fake-tensor trace (GiB)."), "",
             "| model | method | precision | batch × seq | ckpt | attn | CUDA | estimate | trace |",
             "|---|---|---|---|---|---|---:|---:|---:|"]
    for r in rows:
        c = r["cuda_max_allocated"]
        tr = f"{r['traced'] / 2**30:.2f} ({(r['traced'] - c) / c:+.1%})" if r["traced"] else "-"
        lines.append(f"| {r['model']} | {r['method']} | {r['precision']} | {r['batch']} × {r['seq_len']} | "
                     f"{'yes' if r['checkpointing'] else 'no'} | {r['attention']} | {c / 2**30:.2f} | "
                     f"{r['estimate'] / 2**30:.2f} ({(r['estimate'] - c) / c:+.1%}) | {tr} |")
    docs = ROOT / "docs" / "benchmarks"
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "gpu_memory_check.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
