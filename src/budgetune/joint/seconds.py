"""Seconds: a --max-seconds budget turned into work before the run starts.

This machine's throughput is measured by a short timed probe (`probe`): a random-init copy of the model with its
first two layers (the real widths, attention and vocabulary head; no weights loaded), one timed no-grad forward
of an evaluation batch and one timed forward+backward of the run's first micro-batch, each after an untimed warm
one. Its seconds go on the run's ledger (Ledger.phase_seconds["plan"], train/timing.charge_probe). `--flops-per-
second` gives the throughput instead (no probe). With it the plan predicts the seconds of every evaluation and
step from the FLOPs compute.py priced, refuses a time budget below the least a run can do, and sizes the governor's
evaluations and the selection on the FLOPs the seconds buy when they are fewer than --max-flops: the binding budget.
The loop then re-measures (train/timing.py).
"""

from __future__ import annotations

import copy
import time

from ..errors import UserError
from ..train.timing import MARGIN
from .choices import CHOSEN, DETECTED, GIVEN

PROBE_LAYERS = 2
# Padded tokens in each timed probe batch: enough for the matrix products to run at speed, few enough that the
# probe costs seconds on a loaded CPU (its forward costs about as much as the model's head and two layers).
PROBE_TOKENS = 128


def _probe_model(cfg):
    """The model's architecture cut to its first PROBE_LAYERS layers, random-init (nothing downloaded or loaded)."""
    import torch
    from transformers import AutoModelForCausalLM

    from ..models import load_config

    config = copy.deepcopy(load_config(cfg.model.model, trust_remote_code=cfg.model.trust_remote_code,
                                       allow_download=cfg.model.allow_download))
    layers = min(PROBE_LAYERS, int(config.num_hidden_layers))
    config.num_hidden_layers = layers
    if isinstance(getattr(config, "layer_types", None), list):
        config.layer_types = config.layer_types[:layers]
    with torch.device("meta"):  # no random initialisation: it costs more than the timed passes on a loaded CPU
        model = AutoModelForCausalLM.from_config(config)
    model = model.to_empty(device="cuda" if torch.cuda.is_available() else "cpu")
    with torch.no_grad():
        for p in model.parameters():  # any finite values time alike; a constant is the cheapest to write
            p.fill_(0.02)
    return model


def _timed(fn, device) -> float:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def probe(cfg, eval_examples: list, train_examples: list, pad_id: int) -> dict:
    """FLOP/s of evaluation (no-grad forward) and of training (forward+backward) on this machine, and the seconds
    the probe took in all (building the model included)."""
    import torch
    import transformers  # noqa: F401  -- imported before the clock starts: the run imports it anyway

    from ..data import collate
    from ..flops import forward_flops, profile_from_model, train_step_flops
    from ..loss import next_token_loss

    start = time.perf_counter()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = _probe_model(cfg)
    profile = profile_from_model(model)
    ev = _batch(collate(_fit(_middle(eval_examples)), pad_id), device)
    tr = _batch(collate(_fit(train_examples), pad_id), device)

    def forward(b):
        with torch.no_grad():
            model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], use_cache=False)

    def step(b):
        logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], use_cache=False).logits
        loss, _ = next_token_loss(logits, b["labels"])
        loss.backward()
        model.zero_grad(set_to_none=True)

    model.eval()
    forward({k: v[:1, :16] for k, v in ev.items()})  # warm: the allocator and the kernels' first calls
    eval_s = _timed(lambda: forward(ev), device)
    model.train()
    step({k: v[:1, :16] for k, v in tr.items()})
    train_s = _timed(lambda: step(tr), device)
    eval_flops = forward_flops(profile, *ev["input_ids"].shape)
    train_flops = train_step_flops(profile, *tr["input_ids"].shape)
    return {"eval": eval_flops / max(eval_s, 1e-9), "train": train_flops / max(train_s, 1e-9),
            "seconds": time.perf_counter() - start, "layers": min(PROBE_LAYERS, _layers(cfg)),
            "eval_batch": list(ev["input_ids"].shape), "train_batch": list(tr["input_ids"].shape),
            "source": DETECTED}


def _middle(examples: list) -> list:
    """The examples in length order from the median on: an evaluation batch of typical rows."""
    ordered = sorted(examples, key=lambda e: e.n_tokens)
    return ordered[len(ordered) // 2:] + ordered[: len(ordered) // 2][::-1]


def _fit(examples: list) -> list:
    """The first examples whose padded batch stays within PROBE_TOKENS (at least one)."""
    out: list = []
    for e in examples:
        if out and (len(out) + 1) * max(e.n_tokens, max(x.n_tokens for x in out)) > PROBE_TOKENS:
            break
        out.append(e)
    return out


def _batch(batch: dict, device) -> dict:
    return {k: v.to(device) for k, v in batch.items()}


def _layers(cfg) -> int:
    from ..models import load_config

    return int(load_config(cfg.model.model, trust_remote_code=cfg.model.trust_remote_code,
                           allow_download=cfg.model.allow_download).num_hidden_layers)


def rates(cfg, given: set[str], data, tokenizer, costs: dict, layout: dict) -> dict | None:
    """The throughputs the plan predicts seconds with (given, or probed on this machine); None without a time
    budget."""
    if cfg.budget.max_seconds is None or not {"budget.max_seconds", "budget.flops_per_second"} & given:
        # The default run's seconds limit is a guard, not a plan: sized on a probe taken while the machine was
        # busy, the default plan shrank to no selection and evaluations only (costs5's and time4's plans at load
        # 5-9). Unplanned, the loop still reserves the final evaluation's measured seconds (train/timing.py).
        return None
    fps = cfg.budget.flops_per_second
    if fps:
        return {"eval": float(fps), "train": float(fps), "seconds": 0.0,
                "source": GIVEN if "budget.flops_per_second" in given else CHOSEN}
    from .compute import first_batch

    batch = first_batch(list(data.train), cfg.train.seed, layout["micro"] * layout["accum"])[: layout["micro"]]
    return probe(cfg, list(data.scoring)[: int(cfg.train.eval_batch_size)], batch, tokenizer.pad_token_id)


def minimum_seconds(costs: dict, r: dict) -> float:
    """The least a run can do, in seconds: the probe, the evaluations before training, one optimizer step, and the
    final evaluation with the loop's reserve margin (train/timing.MARGIN)."""
    return (r["seconds"] + costs["before_eval"] / r["eval"] + costs["first_step"] / r["train"]
            + MARGIN * costs["final_reserve"] / r["eval"])


def refuse_if_short(cfg, costs: dict, r: dict | None, given: set[str]) -> None:
    """A time budget below the least a run can do cannot train: refused before any weight is loaded. Only a budget
    the user gave is refused: the default run's seconds limit is a guard, and the probe's estimate on a loaded
    machine was 1.75-2.6x off the whole model's speed, so the default run trains until its guard rather than
    refusing on a guess."""
    if r is None or "budget.max_seconds" not in given:
        return
    need = minimum_seconds(costs, r)
    seconds = cfg.budget.max_seconds
    if seconds >= need:
        return
    from .compute import _ceil

    evals = costs["before_eval"] / r["eval"] + MARGIN * costs["final_reserve"] / r["eval"]
    at = _at(r)
    raise UserError(
        f"budget field 'max_seconds' is {seconds:g} but the least a run can do takes about {need:.3g} s {at} "
        f"(held-out evaluations before and after training {evals:.3g} s + one optimizer step "
        f"{costs['first_step'] / r['train']:.3g} s{_probe_part(r)}); give --max-seconds {_ceil(need)} or more, or a "
        f"smaller --target / --heldout-fraction")


def _at(r: dict) -> str:
    if r["source"] != DETECTED:
        return f"at {r['train']:.3g} FLOP/s (--flops-per-second)"
    return (f"at this machine's measured {r['eval']:.3g} FLOP/s evaluating and {r['train']:.3g} training "
            f"({r['layers']}-layer probe)")


def _probe_part(r: dict) -> str:
    return f" + the probe {r['seconds']:.2g} s" if r["seconds"] else ""


def planning_rate(r: dict) -> float:
    """The single FLOP/s the loop and the evaluation plan turn seconds into FLOPs with: the slower phase's, so
    that neither the share of the evaluations nor the steps are planned on time the run will not have."""
    return min(r["eval"], r["train"])


def planning_config(cfg, r: dict | None):
    """A copy of `cfg` whose FLOP budget is what the seconds buy when that is less: the governor, its evaluation
    plan and the selection are sized on it. The run's own config keeps the user's --max-flops."""
    if r is None:
        return cfg
    work = copy.deepcopy(cfg)
    work.budget.flops_per_second = planning_rate(r)
    bought = max(0.0, cfg.budget.max_seconds - r["seconds"]) * planning_rate(r)
    if cfg.budget.max_flops is None or bought < cfg.budget.max_flops:
        work.budget.max_flops = bought
    return work


def left_flops(cfg, eval_flops: float, r: dict | None) -> float | None:
    """The FLOPs selection and training have once the evaluations are paid for: the smaller of what --max-flops
    leaves and what the seconds left buy at the training rate."""
    known = []
    if cfg.budget.max_flops is not None:
        known.append(cfg.budget.max_flops - eval_flops)
    if r is not None:
        known.append((cfg.budget.max_seconds - r["seconds"] - eval_flops / r["eval"]) * r["train"])
    return min(known) if known else None


def fit_schedule(plan, cfg, r: dict | None, costs: dict, n_dev: int) -> None:
    """A fixed schedule's whole-dev evaluations in between, cut to those that fit `train.eval_share` of the
    seconds when the time budget binds, as the loop will cut them (train/timing.fits); the plan's evaluation FLOPs
    and its row say so. A governed plan is already sized on the FLOPs the seconds buy."""
    if r is None or "eval_plan" in plan.numbers or cfg.train.eval_every:
        return
    seconds = cfg.budget.max_seconds
    if cfg.budget.max_flops is not None and (seconds - r["seconds"]) * r["train"] >= cfg.budget.max_flops:
        return  # the FLOP budget binds
    points = int(cfg.train.eval_points)
    ends = (costs["before_eval"] + costs["fixed_final_reserve"]) / r["eval"]
    if cfg.train.max_steps and r["seconds"] + ends + cfg.train.max_steps * costs["first_step"] / r["train"] < seconds:
        return  # the step limit ends the run first
    each = costs["dev_eval"] / r["eval"]
    room = cfg.train.eval_share * seconds - MARGIN * costs["fixed_final_reserve"] / r["eval"] \
        - costs["before_eval"] / r["eval"]
    keep = max(0, min(points, int(room // each) if each > 0 else points))
    if keep == points:
        return
    plan.flops["eval"] -= (points - keep) * costs["dev_eval"]
    plan.numbers["eval_between"] = keep * costs["dev_eval"]
    row = plan.get("evaluation")
    row.value = f"{keep} of {points} x all {n_dev} dev examples"
    row.reason = (f"the time budget binds: the evaluations before and after take {ends:.0f} s "
                  f"({ends / seconds:.0%} of {seconds:g} s); {keep} whole-dev evaluations of {each:.0f} s each fit "
                  f"the {cfg.train.eval_share:.0%} share of the seconds, the loop drops the rest (train/timing.py)")


def record(plan, cfg, r: dict | None, costs: dict) -> None:
    """The planned seconds per phase, the final evaluation's reserve in seconds and the binding budget's row."""
    if r is None:
        return
    f = plan.flops
    planned = {"plan": r["seconds"], "selection": f.get("selection", 0.0) / r["eval"],
               "train": (f.get("train") or 0.0) / r["train"], "eval": f.get("eval", 0.0) / r["eval"],
               "inference": 0.0}
    plan.seconds = planned
    plan.config["budget.flops_per_second"] = planning_rate(r)
    plan.numbers["probe"] = {k: v for k, v in r.items() if k != "source"}
    plan.numbers["minimum_seconds"] = minimum_seconds(costs, r)
    reserve = (plan.numbers.get("eval_plan") or {}).get("final_flops", costs["fixed_final_reserve"])
    final = plan.get("final eval")
    if final is not None:
        final.value += f", {MARGIN * reserve / r['eval']:.0f} s"
        final.reason += f"; its seconds with a {MARGIN:g}x margin, re-measured as the run goes (train/timing.py)"
    seconds, max_flops = cfg.budget.max_seconds, cfg.budget.max_flops
    total = sum(planned.values())
    step = plan.numbers.get("mean_step") or costs["first_step"]
    bought = (seconds - r["seconds"]) * r["train"]
    tail = (f"; predicted: evaluation {planned['eval']:.0f} s ({planned['eval'] / max(total, 1e-9):.1%} of the "
            f"time), training {planned['train']:.0f} s ({step / r['train']:.2g} s a step)"
            + (f", probe {r['seconds']:.1f} s" if r["seconds"] else ""))
    if max_flops is None or bought < max_flops:
        value = f"seconds: {seconds:g} s"
        why = (f"{seconds:g} s buy about {bought:.3g} training FLOPs {_at(r)}"
               + (f", fewer than --max-flops {max_flops:.3g}" if max_flops is not None else "")
               + "; the governor, evaluation and selection are sized on them")
    else:
        value = f"flops: {max_flops:.3g}"
        why = f"--max-flops {max_flops:.3g} takes about {total:.0f} s {_at(r)}, inside --max-seconds {seconds:g}"
    source = GIVEN if r["source"] == GIVEN else CHOSEN
    plan.add("binding", value, source if source == GIVEN else CHOSEN, why + tail, "--max-seconds, --max-flops")
    plan.numbers["binding"] = value.split(":")[0]
