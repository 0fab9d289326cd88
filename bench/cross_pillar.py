"""Benchmark `cross_pillar`: what the survey only asserts about how one pillar moves another's bottleneck, from the
memory model (budgetune.memory, every method's own memory(); a computation, no training).

(i)   which memory term binds as the sequence grows, per method: SmolLM2-135M and Llama-3-8B, micro-batch 1,
      amp_bf16 (what a run uses on a GPU), no checkpointing, sequence 128 … 32768 tokens;
(iii) on this machine (CPU, fp32, its RAM): what fits at the default run's shape and at micro-batch 1.
(ii)  MeZO on a 4-bit base is not computed here; docs/benchmarks/cross_pillar.md says why.

The model's accuracy against real tensors is bench/memory_accuracy.py's (docs/benchmarks/memory_accuracy.md).
Writes bench/out/cross_pillar.json and docs/benchmarks/cross_pillar.md (between its markers).

    nice -n 15 python bench/cross_pillar.py        # a few seconds
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from budgetune.config import parse_bytes
from budgetune.memory import plan as P
from budgetune.memory.spec import spec_from_model_name
from budgetune.memory.terms import Shape

GIB = 2**30
METHODS = ["full", "adamw8bit", "galore", "lora", "qlora", "badam", "mezo"]
MODELS = {"SmolLM2-135M": "smollm2-135m", "Llama-3-8B": str(ROOT / "examples/llama-3-8b/config.json")}
SEQS = [128, 512, 2048, 8192, 32768]
TERMS = P.ACTIONABLE
DOC = ROOT / "docs/benchmarks/cross_pillar.md"
BEGIN, END = "<!-- cross_pillar:generated -->", "<!-- /cross_pillar:generated -->"


def breakdown(spec, method: str, shape: Shape):
    options = P.OPTION_SETS.get(method, [{}])[0]
    _, b = P.method_memory(spec, shape, method, options)
    return b


def binding_table() -> tuple[list[dict], str]:
    rows, lines = [], []
    for label, ref in MODELS.items():
        spec = spec_from_model_name(ref)
        lines += [(f"\n**{label}** (micro-batch 1, amp_bf16, no checkpointing; binding term and its share of the "
                   f"tensor bytes; GiB in brackets)\n"),
                  "| method | " + " | ".join(f"s = {s}" for s in SEQS) + " | binding term changes |",
                  "|---|" + "---|" * len(SEQS) + "---|"]
        for m in METHODS:
            cells, seen = [], []
            for s in SEQS:
                shape = Shape(micro_batch=1, seq_len=s, precision="amp_bf16",
                              overhead_bytes=parse_bytes(P.OVERHEAD), fragmentation=P.FRAGMENTATION)
                b = breakdown(spec, m, shape)
                term = P.binding_term(b)
                tensors = sum(getattr(b, t) for t in TERMS)
                rows.append({"model": label, "method": m, "seq_len": s, "binding": term,
                             **{t: getattr(b, t) for t in TERMS}, "total": b.total})
                cells.append(f"{term} {getattr(b, term) / tensors:.0%} ({b.total / GIB:.2f})")
                if not seen or seen[-1][1] != term:
                    seen.append((s, term))
            moves = " → ".join(f"{t} (from {s})" if i else t for i, (s, t) in enumerate(seen))
            lines.append(f"| {m} | " + " | ".join(cells) + f" | {moves} |")
    return rows, "\n".join(lines)


def machine_table() -> tuple[list[dict], str]:
    page = os.sysconf("SC_PAGE_SIZE")
    total, free = page * os.sysconf("SC_PHYS_PAGES"), page * os.sysconf("SC_AVPHYS_PAGES")
    rows = []
    lines = [(f"\nThis machine: {os.cpu_count()} CPU cores, {total / GIB:.1f} GiB RAM ({free / GIB:.1f} GiB available "
              f"when measured); fp32 (what `budgetune run` uses on CPU), 256-token rows; GiB planned (fits = within "
              f"the available RAM).\n"),
             "| model | method | micro-batch 8 | micro-batch 1 | micro-batch 1 + checkpointing |", "|---|---|---|---|---|"]
    for label, ref in MODELS.items():
        spec = spec_from_model_name(ref)
        for m in METHODS:
            cells = []
            for micro, ckpt in ((8, False), (1, False), (1, True)):
                shape = Shape(micro_batch=micro, seq_len=256, precision="fp32", gradient_checkpointing=ckpt,
                              overhead_bytes=parse_bytes(P.OVERHEAD), fragmentation=P.FRAGMENTATION)
                b = breakdown(spec, m, shape)
                fits = b.total <= free
                rows.append({"model": label, "method": m, "micro_batch": micro, "checkpointing": ckpt,
                             "total": b.total, "fits": fits, "available": free})
                cells.append(f"{b.total / GIB:.2f} {'fits' if fits else '**no**'}")
            lines.append(f"| {label} | {m} | " + " | ".join(cells) + " |")
    return rows, "\n".join(lines)


def main() -> int:
    binding, text_i = binding_table()
    machine, text_iii = machine_table()
    out = ROOT / "bench/out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "cross_pillar.json").write_text(json.dumps({"binding": binding, "machine": machine}, indent=1))
    block = f"{BEGIN}\n### (i) The binding memory term as the sequence grows\n{text_i}\n\n" \
            f"### (iii) What fits on this machine\n{text_iii}\n{END}"
    doc = DOC.read_text(encoding="utf-8") if DOC.exists() else f"# cross_pillar\n\n{BEGIN}\n{END}\n"
    head, _, rest = doc.partition(BEGIN)
    _, _, tail = rest.partition(END)
    tmp = DOC.with_suffix(".md.tmp")
    tmp.write_text(head + block + tail, encoding="utf-8")
    os.replace(tmp, DOC)
    print(text_i)
    print(text_iii)
    return 0


if __name__ == "__main__":
    sys.exit(main())
