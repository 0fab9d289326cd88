"""Scaling on 1–8 GPUs: per-rank peak memory of `budgetune`'s training loop against the planner's per-rank estimate,
and training tokens/s as processes are added (weak scaling: a fixed micro-batch per GPU), unsharded and FSDP2
(DeepSpeed ZeRO-2/3 too where the `deepspeed` package is installed). Skipped (exit 0) where CUDA is absent.

Run: `python bench/gpu_scaling.py [--gpus 1,2,4,8] [--steps 12] [--method lora,full]`. For each GPU count it
launches `torchrun --standalone --nproc_per_node N` on this script's worker, which trains the embedded
SmolLM2-135M on chatterbot-corpus through `budgetune.train.loop.train` (the loop `budgetune run` uses), with a
memory budget so the run records the plan check_fits made for its world size and sharding. Peak memory is
torch.cuda.max_memory_allocated per rank over the steady steps (after step 1: optimizer states exist); tokens/s
counts all ranks' tokens over steps 3..N (rank 0's clock). Prints a table, writes bench/out/gpu_scaling.json and
docs/benchmarks/gpu_scaling.md. `--cpu-smoke` runs the same worker on 2 CPU processes with a tiny random model
(gloo), to check the script itself where no GPU is present; its memory columns are empty.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
OUT = ROOT / "bench" / "out" / "gpu_scaling.json"
DOC = ROOT / "docs" / "benchmarks" / "gpu_scaling.md"
GIB = 2**30
TINY = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 49152, "max_position_embeddings": 512,
        "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2}


def worker(args) -> None:
    """One rank of one case: train, record peak memory and timing, rank 0 writes the case's JSON."""
    import torch

    from budgetune import dist
    from budgetune.config import default_run_config
    from budgetune.train.loop import train

    cfg = default_run_config()
    cfg.model.model = args.model
    cfg.out = args.out
    cfg.report = False
    cfg.budget.max_flops = cfg.budget.max_seconds = None
    cfg.budget.max_memory = "1000GiB"  # never binding: the run checks and records its per-rank plan
    cfg.data.max_seq_len = args.seq_len
    t = cfg.train
    t.method, t.sharding, t.max_steps = args.method, args.sharding, args.steps
    t.micro_batch_size, t.eval_batch_size = args.micro_batch, args.micro_batch
    t.eval_every, t.checkpoint_every, t.warmup_steps = 10_000, args.steps, 2  # evaluations outside the steps
    cuda = torch.cuda.is_available()
    marks: dict = {"peak": 0, "clock": []}

    def on_step(step, ledger):
        if cuda:
            torch.cuda.synchronize()
            if step == 1:
                torch.cuda.reset_peak_memory_stats()
            else:
                marks["peak"] = max(marks["peak"], torch.cuda.max_memory_allocated())
        marks["clock"].append((step, time.perf_counter(), ledger.tokens["train"]))

    result = train(cfg, on_step=on_step, progress=False)
    peaks = [None] * dist.world()
    import torch.distributed as tdist

    if dist.world() > 1:
        tdist.all_gather_object(peaks, marks["peak"] if cuda else None)
    else:
        peaks = [marks["peak"] if cuda else None]
    if dist.is_main():
        summary = json.loads((Path(args.out) / "summary.json").read_text())
        steady = [m for m in marks["clock"] if m[0] >= 3]
        rate = ((steady[-1][2] - steady[0][2]) / (steady[-1][1] - steady[0][1])) if len(steady) > 1 else None
        case = {"gpus": dist.world(), "method": args.method, "sharding": summary.get("sharding"),
                "planned_bytes_per_rank": summary["plan"]["bytes"]["total"], "plan": summary["plan"],
                "peak_bytes_per_rank": peaks, "tokens_per_s": rate, "steps": result.ledger.steps,
                "micro_batch": args.micro_batch, "seq_len": args.seq_len,
                "device": torch.cuda.get_device_name(0) if cuda else "cpu"}
        Path(args.result).write_text(json.dumps(case))


def launch(n: int, method: str, sharding: str, args, tmp: Path) -> dict | None:
    out = tmp / f"{n}-{method}-{sharding}"
    result = tmp / f"{n}-{method}-{sharding}.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n), __file__,
           "--worker", "--model", args.model, "--method", method, "--sharding", sharding, "--steps", str(args.steps),
           "--micro-batch", str(args.micro_batch), "--seq-len", str(args.seq_len), "--out", str(out),
           "--result", str(result)]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"),
               HF_HUB_OFFLINE="1", HF_HUB_DISABLE_PROGRESS_BARS="1")
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=args.timeout)
    if proc.returncode != 0 or not result.exists():
        tail = (proc.stderr or proc.stdout)[-1500:]
        print(f"{n} GPU(s) {method} {sharding}: failed (exit {proc.returncode})\n{tail}", file=sys.stderr)
        return {"gpus": n, "method": method, "sharding": sharding, "error": tail[-400:]}
    return json.loads(result.read_text())


def table(cases: list[dict]) -> str:
    base = {(c["method"], c["sharding"]): c["tokens_per_s"] for c in cases if c.get("gpus") == 1 and "error" not in c}
    lines = [("| GPUs | method | sharding | planned GiB/rank | peak GiB/rank (max) | peak / planned | tokens/s | "
              "scaling efficiency |"), "|---|---|---|---|---|---|---|---|"]
    for c in cases:
        if "error" in c:
            lines.append(f"| {c['gpus']} | {c['method']} | {c['sharding']} | failed | | | | |")
            continue
        peaks = [p for p in c["peak_bytes_per_rank"] if p]
        peak = max(peaks) if peaks else None
        planned = c["planned_bytes_per_rank"]
        one = base.get((c["method"], c["sharding"]))
        eff = c["tokens_per_s"] / (c["gpus"] * one) if one and c["tokens_per_s"] else None
        cells = ["-" if peak is None else f"{peak / GIB:.3f}", "-" if peak is None else f"{peak / planned:.2f}",
                 "-" if not c["tokens_per_s"] else f"{c['tokens_per_s']:.0f}", "-" if eff is None else f"{eff:.2f}"]
        lines.append(f"| {c['gpus']} | {c['method']} | {c['sharding']} | {planned / GIB:.3f} | " + " | ".join(cells)
                     + " |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--sharding", default="none", help=argparse.SUPPRESS)
    p.add_argument("--gpus", default="1,2,4,8", help="GPU counts to try, up to the devices present (default 1,2,4,8)")
    p.add_argument("--method", default="lora,full", help="methods (default lora,full)")
    p.add_argument("--model", default="smollm2-135m", help="model (default: the embedded SmolLM2-135M)")
    p.add_argument("--steps", type=int, default=12, help="optimizer steps per case (default 12)")
    p.add_argument("--micro-batch", type=int, default=8, help="examples per GPU per step (default 8)")
    p.add_argument("--seq-len", type=int, default=256, help="tokens per example at most (default 256)")
    p.add_argument("--timeout", type=int, default=900, help="seconds per case (default 900)")
    p.add_argument("--cpu-smoke", action="store_true", help="2 CPU processes, tiny random model: checks the script")
    args = p.parse_args()
    if args.worker:
        worker(args)
        return 0
    import importlib.util

    import torch

    tmp = Path(tempfile.mkdtemp(prefix="gpu_scaling."))
    if args.cpu_smoke:
        (tmp / "tiny.json").write_text(json.dumps(TINY))
        args.model, args.steps, args.micro_batch, args.seq_len = str(tmp / "tiny.json"), 4, 2, 64
        counts, shardings = [2], ["none", "fsdp"]
    elif not torch.cuda.is_available():
        print("gpu_scaling: skipped (no CUDA device); `--cpu-smoke` checks the script on 2 CPU processes")
        return 0
    else:
        have = torch.cuda.device_count()
        counts = [n for n in (int(x) for x in args.gpus.split(",")) if n <= have]
        shardings = ["none", "fsdp"] + (["zero2", "zero3"] if importlib.util.find_spec("deepspeed") else [])
    cases = []
    for n in counts:
        for method in args.method.split(","):
            for sharding in shardings:
                case = launch(n, method, sharding, args, tmp)
                cases.append(case)
                print(json.dumps({k: v for k, v in case.items() if k != "plan"}), flush=True)
    text = table(cases)
    print(text)
    if not args.cpu_smoke:
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps({"cases": cases}, indent=2))
        DOC.write_text("# GPU scaling (bench/gpu_scaling.py)\n\n" + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
