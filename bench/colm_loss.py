"""CoLM's "about 2× less memory at equal loss", judged at equal FLOPs on SmolLM2-135M (fp32, CPU).

Three arms, from the same pretrained start, the same seeded stream of chatterbot-corpus rows and the same learning
rate, each stepping until its next step would overrun the same FLOP budget (every FLOP from the method's own
ledger, CoLM's scoring forward and coreset picks included):
- lora-m: LoRA on every sampled batch of m rows (the large batch CoLM stands in for; ~2× CoLM's activations);
- colm:   CoLM's coreset of ⌈m/2⌉ of each m-row batch (its memory: see bench/colm_memory.py);
- lora-c: LoRA on ⌈m/2⌉ rows per step, the next rows of the same stream (the same activation memory as colm, and
          about twice its steps at equal FLOPs): the baseline that CoLM's coreset has to beat at its memory.
The held-out loss is on the test split (nothing here reads it while training); seeds change the row order and the
adapters' initialisation.

    OMP_NUM_THREADS=1 nice -n 15 python bench/colm_loss.py --batch 8 --max-seq-len 48 --budget-steps 6 --seeds 0 1
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
ARMS = ("lora-m", "colm", "lora-c")


def run_arm(arm: str, rows, test, m: int, budget, budget_steps: int, lr: float, seed: int, pad_id: int) -> dict:
    from accelerate import Accelerator

    from budgetune.data import collate
    from budgetune.methods import registry
    from budgetune.methods.base import TrainContext
    from budgetune.models import load_model
    from budgetune.train.evaluate import heldout_loss

    name = "colm" if arm == "colm" else "lora"
    per_step = m if arm != "lora-c" else registry.get("colm").coreset_rows(m, 0.5)
    acc = Accelerator(cpu=True)
    stepper = registry.get(name).prepare(load_model("smollm2-135m"), registry.make_config(name, {}),
                                         TrainContext(accelerator=acc, seed=seed))
    if budget is None:  # lora-m's own ledger price of budget_steps m-row batches of this stream
        budget = sum(stepper.cost([collate(rows[i * m:(i + 1) * m], pad_id)]) for i in range(budget_steps))
    flops, steps, at, start = 0.0, 0, 0, time.time()
    while True:
        chunk = [rows[(at + i) % len(rows)] for i in range(per_step)]
        batch = collate(chunk, pad_id)
        cost = stepper.cost([batch])
        if flops + cost > budget:
            break
        flops += stepper.step([batch], lr).flops
        steps, at = steps + 1, at + per_step
    loss, _, _ = heldout_loss(stepper.model, test, pad_id=pad_id, batch_size=16, accelerator=acc)
    out = {"arm": arm, "seed": seed, "loss": loss, "flops": flops, "steps": steps, "rows_per_step": per_step,
           "rows_read": at, "budget": budget, "wall_s": round(time.time() - start, 1)}
    print(json.dumps(out), flush=True)
    del stepper
    gc.collect()
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=8, help="m: rows CoLM samples per step (lora-m trains on all)")
    p.add_argument("--max-seq-len", type=int, default=48)
    p.add_argument("--budget-steps", type=int, default=6,
                   help="FLOP budget = this many lora-m steps on the stream's first batches")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--test", type=int, default=16, help="held-out test examples for the loss")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import torch

    torch.set_num_threads(1)
    from accelerate import Accelerator

    from budgetune import atomic
    from budgetune.config import DataConfig
    from budgetune.data import load_data
    from budgetune.models import load_model, load_tokenizer
    from budgetune.train.evaluate import heldout_loss

    tokenizer = load_tokenizer("smollm2-135m")
    split = load_data(DataConfig(max_seq_len=args.max_seq_len), tokenizer)
    test, pad = split.test[: args.test], tokenizer.pad_token_id
    base = load_model("smollm2-135m")
    start_loss, _, _ = heldout_loss(base, test, pad_id=pad, batch_size=16, accelerator=Accelerator(cpu=True))
    print(f"start: held-out {start_loss:.4f}", flush=True)
    del base
    path = OUT / "colm_loss.json"
    done = json.loads(path.read_text())["runs"] if path.exists() else []
    key = {"batch": args.batch, "max_seq_len": args.max_seq_len, "budget_steps": args.budget_steps, "lr": args.lr,
           "test": args.test}
    runs = [r for r in done if r.get("setting") == key]
    for seed in args.seeds:
        rows = list(split.train)
        random.Random(seed).shuffle(rows)
        budget = next((r["budget"] for r in runs if r["seed"] == seed), None)
        for arm in ARMS:
            if any(r["seed"] == seed and r["arm"] == arm for r in runs):
                continue
            r = run_arm(arm, rows, test, args.batch, budget, args.budget_steps, args.lr, seed, pad)
            budget = r["budget"]
            runs.append({**r, "setting": key})
            OUT.mkdir(parents=True, exist_ok=True)
            others = [x for x in done if x.get("setting") != key]
            atomic.write_json(path, {"start_loss": start_loss, "runs": others + runs})
    lines = [(f"SmolLM2-135M fp32, m = {args.batch} rows ≤ {args.max_seq_len} tokens, lr {args.lr}, "
             f"budget = {args.budget_steps} lora-m steps; held-out test loss from {start_loss:.4f} "
             f"({len(test)} examples); seeds {sorted({r['seed'] for r in runs})}."), "",
             "| arm | rows per step | steps | FLOPs spent | held-out loss (mean ± sd) | per seed |", "|---|---|---|---|---|---|"]
    for arm in ARMS:
        mine = [r for r in runs if r["arm"] == arm]
        if not mine:
            continue
        losses = [r["loss"] for r in mine]
        sd = statistics.stdev(losses) if len(losses) > 1 else 0.0
        lines.append(f"| {arm} | {mine[0]['rows_per_step']} | {'/'.join(str(r['steps']) for r in mine)} | "
                     f"{statistics.mean(r['flops'] for r in mine):.3g} | {statistics.mean(losses):.4f} ± {sd:.4f} | "
                     f"{', '.join(f'{x:.4f}' for x in losses)} |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
