"""Benchmark `zo_variance`: how close the zeroth-order gradient estimates of MeZO, LOZO and SubZero are to the true
(backpropagation) gradient, and what loss each reaches per FLOP.

Part 1 (variance): at fixed weights and batch, each method's real stepper draws N directions through its own
perturbation and SPSA probes (spsa.estimate, the finite difference the method trains with). For estimate ĝ = g_fd·z:
- cos(ĝ, g): mean ± sd over the N seeds (MeZO's expected value is about √(2/(π·d)) for d parameters);
- noise-to-signal V = E‖ĝ‖²·‖g‖² / (E[ĝ·g])²: the number of directions that average to one unit of signal;
  for MeZO ≈ d + 2, and it is the quantity SGD with a tuned step pays for (lower is better);
- cos(mean of the N estimates, g): what averaging N steps' directions recovers.
Directions are drawn with step index = seed index, so LOZO and SubZero keep a subspace for `lazy` draws as they do
in training.

Part 2 (loss per FLOP): the same tiny model trained on the learnable toy batch of the method contract test, each
method for the same ledger FLOPs, 3 seeds; loss before → after (mean ± sd).

Models: the contract test's 2-layer, 64-dim random-init Llama (vocabulary 512), and with --real the embedded
SmolLM2-135M on 4 chatterbot examples (fewer seeds: each costs two forwards of the 135M model).

    nice -n 10 python bench/zo_variance.py            # tiny model, ≈ 1 min
    nice -n 10 python bench/zo_variance.py --real 48  # plus SmolLM2-135M with 48 directions
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
DOC = ROOT / "docs" / "benchmarks" / "zo_variance.md"

METHODS = {"mezo": {}, "lozo": {"rank": 2, "lazy": 50}, "subzero": {"rank": 8, "lazy": 50}}
TINY_OPTIONS = {"mezo": {}, "lozo": {"rank": 2, "lazy": 50}, "subzero": {"rank": 4, "lazy": 50}}
# The paper's own, unscaled direction (‖Z_i‖_F ≈ r for every matrix), measured on the tiny model only.
PAPER = ("subzero", {"rank": 4, "lazy": 50, "scaled": False})


def direction_of(perturbation, params, seed: int, step: int):
    import torch

    zeros = [torch.zeros_like(p) for p in params]
    perturbation.apply(zeros, seed, 1.0, step)
    return torch.cat([z.reshape(-1) for z in zeros])


def true_gradient(model, batch):
    import torch

    from budgetune.methods.base import token_loss

    params = [p for _, p in dict(model.named_parameters()).items()]
    for p in params:
        p.requires_grad_(True)
    loss, n = token_loss(model, batch)
    grads = torch.autograd.grad(loss / n, params)
    for p in params:
        p.requires_grad_(False)
    return torch.cat([g.reshape(-1) for g in grads]).double()


def variance_rows(model_fn, batch, options, n: int) -> list[dict]:
    import torch
    from accelerate import Accelerator

    from budgetune.methods import registry
    from budgetune.methods.base import TrainContext

    rows = []
    g = None
    for name, opts in (options.items() if isinstance(options, dict) else options):
        module = registry.get(name)
        stepper = module.prepare(model_fn(), registry.make_config(name, opts),
                                 TrainContext(accelerator=Accelerator(cpu=True), seed=0))
        stepper.model.eval()
        if g is None:
            g = true_gradient(stepper.model, batch)
        params = stepper.spsa.params
        cosines, dots, norms2 = [], [], []
        total = torch.zeros_like(g)
        t0 = time.perf_counter()
        for i in range(n):
            fd, _, seed = stepper.spsa.estimate([batch], i, 0)
            z = direction_of(stepper.spsa.perturbation, params, seed, i).double()
            est = fd * z
            total += est
            dot = float(est @ g)
            cosines.append(dot / (float(est.norm()) * float(g.norm()) + 1e-300))
            dots.append(dot)
            norms2.append(float(est @ est))
        d = g.numel()
        signal = statistics.fmean(dots)
        rows.append({"method": name, "options": opts, "d": d, "n": n,
                     "cos_mean": statistics.fmean(cosines), "cos_sd": statistics.stdev(cosines),
                     "cos_sem": statistics.stdev(cosines) / math.sqrt(n),
                     "nsr": statistics.fmean(norms2) * float(g @ g) / signal ** 2 if signal > 0 else float("inf"),
                     "cos_of_mean": float(total @ g) / (float(total.norm()) * float(g.norm())),
                     "mezo_expected_cos": math.sqrt(2 / (math.pi * d)), "seconds": time.perf_counter() - t0})
        print(json.dumps(rows[-1]), flush=True)
        del stepper
    return rows


def loss_per_flop_rows(model_fn, batch, budget: float, lr: float, seeds: int) -> list[dict]:
    import torch
    from accelerate import Accelerator

    from budgetune.methods import registry
    from budgetune.methods.base import TrainContext, token_loss

    def loss_of(model) -> float:
        with torch.no_grad():
            total, count = token_loss(model, batch)
        return float(total) / count

    rows = []
    for name, opts in TINY_OPTIONS.items():
        before, after, steps = [], [], []
        for seed in range(seeds):
            module = registry.get(name)
            stepper = module.prepare(model_fn(), registry.make_config(name, opts),
                                     TrainContext(accelerator=Accelerator(cpu=True), seed=seed))
            before.append(loss_of(stepper.model))
            spent, k = 0.0, 0
            while spent < budget:
                spent += stepper.step([batch], lr).flops
                k += 1
            after.append(loss_of(stepper.model))
            steps.append(k)
        rows.append({"method": name, "options": opts, "budget": budget, "lr": lr, "steps": steps,
                     "before": statistics.fmean(before), "after_mean": statistics.fmean(after),
                     "after_sd": statistics.stdev(after) if seeds > 1 else 0.0})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def table(var: dict, lpf: list[dict]) -> str:
    lines = []
    for label, rows in var.items():
        lines += [(f"**{label}** (d = {rows[0]['d']:,} parameters, {rows[0]['n']} directions per method; MeZO's "
                   f"expected cos √(2/(πd)) = {rows[0]['mezo_expected_cos']:.2e})"), "",
                  ("| method | options | cos(ĝ, g) mean ± sd (± s.e.) | noise-to-signal V | V / d | "
                   "cos(mean of N, g) |"), "|---|---|---|---|---|---|"]
        for r in rows:
            opts = ",".join(f"{k}={v}" for k, v in r["options"].items()) or "-"
            lines.append(f"| {r['method']} | {opts} | {r['cos_mean']:.2e} ± {r['cos_sd']:.1e} (± {r['cos_sem']:.1e}) | "
                         f"{r['nsr']:.3g} | {r['nsr'] / r['d']:.2f} | {r['cos_of_mean']:.3f} |")
        lines.append("")
    if lpf:
        lines += [(f"**Loss per FLOP** (tiny model, toy copy batch, {lpf[0]['budget']:.2g} ledger FLOPs each, "
                   f"lr {lpf[0]['lr']}, {len(lpf[0]['steps'])} seeds)"), "",
                  "| method | steps | loss before | after (mean ± sd) |", "|---|---|---|---|"]
        for r in lpf:
            lines.append(f"| {r['method']} | {r['steps'][0]} | {r['before']:.4f} | "
                         f"{r['after_mean']:.4f} ± {r['after_sd']:.4f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=400, help="directions per method on the tiny model")
    parser.add_argument("--real", type=int, default=0, help="directions per method on SmolLM2-135M (0: skip)")
    parser.add_argument("--budget", type=float, default=4e9, help="ledger FLOPs per loss-per-FLOP run (tiny)")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--paper-only", action="store_true",
                        help="only add the paper's unscaled SubZero row to an earlier run's results")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    sys.path.insert(0, str(ROOT / "src"))
    sys.path.insert(0, str(ROOT / "tests"))
    import torch

    torch.set_num_threads(1)
    from conftest import TINY_LLAMA
    from test_methods_contract import toy_batch

    from budgetune.models import load_model

    tiny = dict(TINY_LLAMA, vocab_size=512)
    OUT.mkdir(parents=True, exist_ok=True)
    tiny_path = OUT / "zo_variance_tiny.json"
    tiny_path.write_text(json.dumps(tiny))
    batch = toy_batch()
    label = "tiny random-init Llama, toy copy batch"
    paper = variance_rows(lambda: load_model(str(tiny_path), seed=0), batch, [PAPER], args.n)
    if args.paper_only:
        saved = json.loads((OUT / "zo_variance.json").read_text())
        var = {label: saved["variance"][label] + paper}
        text = table(var, saved["loss_per_flop"])
        print(text)
        (OUT / "zo_variance.json").write_text(json.dumps({"variance": var, "loss_per_flop": saved["loss_per_flop"]},
                                                        indent=1))
        DOC.write_text(DOC.read_text().split("**tiny")[0] + text)
        return 0
    var = {label: variance_rows(lambda: load_model(str(tiny_path), seed=0), batch, TINY_OPTIONS, args.n) + paper}
    lpf = loss_per_flop_rows(lambda: load_model(str(tiny_path), seed=0), batch, args.budget, args.lr, args.seeds)
    if args.real:
        from budgetune.config import DataConfig
        from budgetune.data import collate, load_data
        from budgetune.models import load_tokenizer

        tokenizer = load_tokenizer("smollm2-135m")
        real = collate(load_data(DataConfig(), tokenizer).train[:4], tokenizer.pad_token_id)
        var["SmolLM2-135M, 4 chatterbot examples"] = variance_rows(lambda: load_model("smollm2-135m"), real,
                                                                   METHODS, args.real)
    text = table(var, lpf)
    print(text)
    (OUT / "zo_variance.json").write_text(json.dumps({"variance": var, "loss_per_flop": lpf}, indent=1))
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text("# Benchmark: zeroth-order gradient estimates\n\nProduced by `nice -n 10 python "
                   f"bench/zo_variance.py{' --real ' + str(args.real) if args.real else ''}`.\n\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
