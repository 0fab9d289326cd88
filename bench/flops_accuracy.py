"""The FLOP ledger against torch's FlopCounterMode, step by step, on the path the trainer runs.

For each architecture (tiny random-init configs of the real transformers classes) × method, the method's own
`prepare()` builds the stepper exactly as the loop does, and each `stepper.step()` runs on padded, masked batches
from budgetune.data.collate inside FlopCounterMode (with the CPU attention kernel and grouped MoE products
registered, budgetune.flops_reference). The ledger's figure is the StepResult.flops the loop charges. Vocabulary is
small and sequences long, so attention is a large share of every step and a wrong attention term shows.

    nice -n 10 python bench/flops_accuracy.py            # prints the table, writes bench/out/flops_accuracy.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import zlib
from pathlib import Path

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

VOCAB = 256
_COMMON = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3, "num_attention_heads": 4,
               "num_key_value_heads": 2, "vocab_size": VOCAB, "max_position_embeddings": 1024, "pad_token_id": 0,
               "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": False}
ARCHS = {
    "llama-gqa": ("llama", dict(_COMMON)),
    "qwen2": ("qwen2", dict(_COMMON)),
    "qwen3": ("qwen3", dict(_COMMON, head_dim=32)),
    "gemma2": ("gemma2", dict(_COMMON, head_dim=16, tie_word_embeddings=True)),
    "phi3": ("phi3", dict(_COMMON, num_key_value_heads=4)),
    "gpt2": ("gpt2", {"n_embd": 64, "n_layer": 3, "n_head": 4, "vocab_size": VOCAB, "n_positions": 1024, "bos_token_id": 1,
                          "eos_token_id": 2}),
    "mixtral-moe": ("mixtral", dict(_COMMON, num_local_experts=4, num_experts_per_tok=2)),
    "qwen2-moe": ("qwen2_moe", dict(_COMMON, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                                    shared_expert_intermediate_size=64, decoder_sparse_step=1)),
    "olmoe": ("olmoe", dict(_COMMON, num_experts=4, num_experts_per_tok=2)),
    "mistral": ("mistral", dict(_COMMON, sliding_window=None)),
}
# Per family, the module names of attention and MLP projections (LoRA on subsets).
_ATTN = {"gpt2": ["c_attn"], "phi3": ["qkv_proj"]}
_MLP = {"gpt2": ["c_fc", "c_proj"], "phi3": ["gate_up_proj", "down_proj"], "mixtral": ["o_proj", "k_proj"],
        "qwen2_moe": ["gate_proj", "up_proj", "down_proj"], "olmoe": ["o_proj", "k_proj"]}
# (label, method, options, gradient checkpointing, steps)
METHODS = [
    ("full", "full", {}, False, 1),
    ("lora q,v", "lora", {"r": 8, "target_modules": "qv"}, False, 1),
    ("lora mlp", "lora", {"r": 8, "target_modules": "mlp"}, False, 1),
    ("badam top block", "badam", {"layers_per_block": 1, "order": "descending"}, False, 1),
    ("badam bottom block", "badam", {"layers_per_block": 1, "order": "ascending"}, False, 1),
    ("hift cycle", "hift", {"layers_per_group": 1, "order": "top2down"}, False, 5),
    ("full + ckpt", "full", {}, True, 1),
    ("lora q,v + ckpt", "lora", {"r": 8, "target_modules": "qv"}, True, 1),
    ("mezo", "mezo", {}, False, 1),
]


def build(arch: str, seed: int = 0):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    family, kw = ARCHS[arch]
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(AutoConfig.for_model(family, **kw))


def targets(family: str, which: str) -> list[str]:
    if which == "qv":
        return _ATTN.get(family, ["q_proj", "v_proj"])
    return _MLP.get(family, ["gate_proj", "up_proj", "down_proj"])


def batches(seed: int, n: int, micro: int, lengths: tuple[int, int]) -> list[list[dict]]:
    """Padded, masked micro-batches as the loop collates them: prompt tokens masked from the loss."""
    import random

    from budgetune.data import collate
    from budgetune.data.examples import IGNORE, Example

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        examples = []
        for _ in range(micro):
            length = rng.randint(*lengths)
            ids = [rng.randrange(3, VOCAB) for _ in range(length)]
            prompt = length // 3
            examples.append(Example(ids, [IGNORE] * prompt + ids[prompt:]))
        out.append([collate(examples, pad_id=0)])
    return out


def measure(arch: str, label: str, method: str, options: dict, ckpt: bool, steps: int, *, seq: tuple[int, int],
            micro: int) -> dict:
    from accelerate import Accelerator

    from budgetune.flops_reference import counted
    from budgetune.methods import registry
    from budgetune.methods.base import TrainContext

    family = ARCHS[arch][0]
    opts = dict(options)
    if "target_modules" in opts:
        opts["target_modules"] = targets(family, opts["target_modules"])
    model = build(arch)
    ctx = TrainContext(accelerator=Accelerator(cpu=True), gradient_checkpointing=ckpt, seed=0)
    stepper = registry.get(method).prepare(model, registry.make_config(method, opts), ctx)
    errors, ledger_total, counted_total = [], 0.0, 0
    for mbs in batches(zlib.crc32(f"{arch}/{label}".encode()), steps, micro, seq):
        box = {}
        flops = counted(lambda box=box, mbs=mbs: box.setdefault("r", stepper.step(mbs, 1e-4)))
        errors.append(box["r"].flops / flops - 1)
        ledger_total += box["r"].flops
        counted_total += flops
    worst = max(errors, key=abs)
    return {"arch": arch, "method": label, "steps": steps, "ledger_flops": ledger_total,
            "counted_flops": counted_total, "worst_step_error": worst, "total_error": ledger_total / counted_total - 1}


def table(rows: list[dict]) -> str:
    methods = list(dict.fromkeys(r["method"] for r in rows))
    archs = list(dict.fromkeys(r["arch"] for r in rows))
    cell = {(r["arch"], r["method"]): r["worst_step_error"] for r in rows}
    lines = ["| architecture | " + " | ".join(methods) + " | worst |", "|---" * (len(methods) + 2) + "|"]
    for a in archs:
        errs = [cell.get((a, m)) for m in methods]
        worst = max((abs(e) for e in errs if e is not None), default=0.0)
        lines.append(f"| {a} | " + " | ".join("—" if e is None else f"{e:+.2%}" for e in errs)
                     + f" | {worst:.2%} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", nargs="*", default=list(ARCHS))
    ap.add_argument("--methods", nargs="*", default=[m[0] for m in METHODS])
    ap.add_argument("--seq", type=int, nargs=2, default=(160, 256), help="example lengths drawn per row")
    ap.add_argument("--micro", type=int, default=3, help="examples per micro-batch")
    ap.add_argument("--out", default=str(Path(__file__).parent / "out" / "flops_accuracy.json"))
    args = ap.parse_args(argv)
    import transformers

    transformers.logging.set_verbosity_error()
    rows, t0 = [], time.time()
    for arch in args.archs:
        for label, method, options, ckpt, steps in METHODS:
            if label not in args.methods:
                continue
            r = measure(arch, label, method, options, ckpt, steps, seq=tuple(args.seq), micro=args.micro)
            rows.append(r)
            print(f"{arch:12} {label:20} ledger {r['ledger_flops']:.4e} counted {r['counted_flops']:.4e} "
                  f"worst step {r['worst_step_error']:+.3%}", flush=True)
    errs = [abs(r["worst_step_error"]) for r in rows]
    summary = {"cases": len(rows), "worst_abs_error": max(errs), "median_abs_error": statistics.median(errs),
               "within_2pct": sum(e <= 0.02 for e in errs), "seconds": time.time() - t0,
               "seq_lengths": list(args.seq), "micro_batch": args.micro,
               "torch": __import__("torch").__version__, "transformers": transformers.__version__}
    print()
    print(table(rows))
    print(f"\n{summary['within_2pct']}/{summary['cases']} cases within 2%; worst |error| "
          f"{summary['worst_abs_error']:.3%}, median {summary['median_abs_error']:.3%}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"summary": summary, "rows": rows}, indent=2))
    tmp.replace(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
