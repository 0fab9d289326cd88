"""Jobs that test_distributed.py launches on 2 CPU processes (torchrun): each writes OUT/rank<R>.json.

    dist_job.py resume OUT CONFIG SHARDING   straight, killed and resumed runs of lora and full (exact resume)
    dist_job.py fail OUT CONFIG              a failure on one rank (evaluation, then governor) raised on every rank
    dist_job.py select OUT CONFIG            the loss scorer on shares of the pool vs the whole pool on one rank
"""

import json
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(__file__))

import torch
from helpers import small_split, tiny_run_config

from budgetune.models import load_tokenizer
from budgetune.train import loop
from budgetune.train.rundir import read_jsonl

job, out, config_path = sys.argv[1], sys.argv[2], sys.argv[3]
rank = int(os.environ.get("RANK", "0"))
tokenizer = load_tokenizer("smollm2-135m")
data = small_split(tokenizer, 24, 6)  # 6 held-out examples: an uneven share per rank is fine
report: dict = {"rank": rank, "world": int(os.environ.get("WORLD_SIZE", "1"))}


class Killed(Exception):
    pass


def cfg_for(name, **train):
    cfg = tiny_run_config(config_path, os.path.join(out, name), micro_batch_size=2, **train)
    cfg.train.dist_timeout = 60
    return cfg


def weights(run_dir, method):
    from safetensors.torch import load_file

    name = "adapter/adapter_model.safetensors" if method == "lora" else "model/model.safetensors"
    return load_file(os.path.join(run_dir, name))


def resume_job(sharding):
    for method in ("lora", "full"):
        straight = cfg_for(f"{method}-straight", method=method, max_steps=5, sharding=sharding)
        straight.budget.max_memory = "64GiB"  # makes the run check (and record) its plan
        a = loop.train(straight, tokenizer=tokenizer, data=data, progress=False)

        def die(step, ledger):
            if step == 3:
                raise Killed()

        broken = cfg_for(f"{method}-broken", method=method, max_steps=5, sharding=sharding)
        try:
            loop.train(broken, tokenizer=tokenizer, data=data, on_step=die, progress=False)
        except Killed:
            pass
        again = cfg_for(f"{method}-broken", method=method, max_steps=5, sharding=sharding)
        again.resume = True
        b = loop.train(again, tokenizer=tokenizer, data=data, progress=False)
        sharded = os.path.isdir(os.path.join(out, f"{method}-broken", "checkpoints", "step-00000004", "shards"))
        if rank == 0:
            wa, wb = weights(a.run_dir, method), weights(b.run_dir, method)
            report[method] = {
                "same_keys": sorted(wa) == sorted(wb), "n_keys": len(wa),
                "max_diff": max(float((wa[k] - wb[k]).abs().max()) for k in wa),
                "ledger_a": a.ledger.to_dict(), "ledger_b": b.ledger.to_dict(),
                "after_a": a.after_loss, "after_b": b.after_loss, "sharded_checkpoint": sharded,
                "steps_logged": [r["step"] for r in read_jsonl(b.run_dir / "metrics.jsonl") if r["kind"] == "train"],
                "summary": json.loads((a.run_dir / "summary.json").read_text()),
            }


def attempt(name, fn):
    t0 = time.perf_counter()
    try:
        fn()
        report[name] = {"error": None}
    except Exception as e:  # noqa: BLE001 -- what each rank raised is the test's subject
        report[name] = {"error": type(e).__name__, "message": str(e), "trace": traceback.format_exc()[-800:]}
    report[name]["seconds"] = time.perf_counter() - t0


def fail_job():
    from budgetune.governor.protocol import FixedBudget
    from budgetune.train import evaluate

    real = evaluate.forward_flops  # called once per evaluation batch, inside the rank's own loop
    calls = {"n": 0}

    def flaky(*args, **kwargs):  # rank 1's third evaluation (step 4) dies in its own batches
        calls["n"] += 1
        if rank == 1 and calls["n"] == 3:
            raise RuntimeError("injected evaluation failure")
        return real(*args, **kwargs)

    evaluate.forward_flops = flaky
    attempt("eval", lambda: loop.train(cfg_for("eval-fails", max_steps=6, eval_every=2), tokenizer=tokenizer,
                                       data=data, progress=False))
    evaluate.forward_flops = real
    again = cfg_for("eval-fails", max_steps=6, eval_every=2)
    again.resume = True
    attempt("resume", lambda: report.setdefault("resumed", loop.train(again, tokenizer=tokenizer, data=data,
                                                                      progress=False).ledger.steps))

    class Broken(FixedBudget):
        def decide(self, record, ledger, budget):
            if rank == 0:
                raise ValueError("injected governor failure")
            return super().decide(record, ledger, budget)

    attempt("governor", lambda: loop.train(cfg_for("governor-fails", max_steps=4, eval_every=2),
                                           tokenizer=tokenizer, data=data, governor=Broken(), progress=False))


def select_job():
    import torch.distributed as dist
    from accelerate import PartialState

    from budgetune.budget import Ledger
    from budgetune.models import load_model
    from budgetune.selection import registry, select

    PartialState(cpu=True)
    model = load_model(config_path, seed=0)
    pool = data.train
    ledger = Ledger()
    result = select({"scorer": "loss", "budget": "50%", "options": {"batch_size": 1}}, model, pool, data.target,
                    ledger)
    whole = registry.make("loss", {"batch_size": 1}).score(model, pool, data.target)  # this rank alone
    report["shared"] = {"values": result.scores.values.tolist(), "flops": ledger.flops["selection"],
                        "tokens": ledger.tokens["selection"], "chosen": [int(i) for i in result.indices]}
    report["whole"] = {"values": whole.values.tolist(), "flops": whole.flops, "tokens": whole.tokens}
    dist.barrier()


torch.set_num_threads(1)
{"resume": lambda: resume_job(sys.argv[4]), "fail": fail_job, "select": select_job}[job]()
with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
    json.dump(report, f)
