"""The one training loop. It executes; what to train on, with which method and when to stop are decided elsewhere
(data selection, the method's Stepper, the budget and the governor).

Written on HF accelerate, so the same code runs alone or under `accelerate launch` with several processes: every
number that drives a decision (FLOPs, tokens, losses, seconds) is reduced across processes first, and governor
decisions are made on rank 0 and broadcast, so no process branches on a rank-local value.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from .. import sharding
from ..budget import Budget, Ledger
from ..data import DataSplit, collate
from ..governor.protocol import Decision
from . import (
    best,
    cooldown,
    evalplan,
    governed,
    guard,
    pacing,
    precost,
    ranks,
    timing,
)
from .evaluate import heldout_losses
from .finish import RunResult, finish
from .progress import TrainingBar
from .rundir import read_jsonl
from .schedule import wsd_lr
from .session import Session
from .setup import make_budget, set_up
from .testset import reported_loss, reported_loss_flops

__all__ = ["RunResult", "make_budget", "train"]


def train(cfg, *, model=None, tokenizer=None, data: DataSplit | None = None, governor=None,
          refresher: Callable | None = None, on_step: Callable | None = None, progress: bool = True,
          joint_plan: dict | None = None) -> RunResult:
    """Set up (setup.py), train until a limit or the governor stops the run, finish (finish.py)."""
    s = set_up(cfg, model=model, tokenizer=tokenizer, data=data, governor=governor, joint_plan=joint_plan)

    def evaluate(indices=None) -> dict:
        return _evaluate(s, indices)

    evals, eval_cost = _begin(s, evaluate, refresher, progress)
    train_seconds = _steps(s, evals, evaluate, eval_cost, refresher, on_step, progress)
    return finish(s, evals, evaluate, train_seconds)


def _evaluate(s: Session, indices=None) -> dict:
    """One held-out evaluation on dev (the test split is reported apart), charged to the ledger and logged."""
    t0 = time.perf_counter()
    r = heldout_losses(s.stepper.model, s.data.scoring, pad_id=s.pad_id, batch_size=s.cfg.train.eval_batch_size,
                       accelerator=s.accelerator, indices=indices)
    loss, flops = r["loss"], r["flops"]
    ledger = s.ledger
    ledger.charge("eval", flops, r["tokens"])
    ledger.add_seconds("eval", _global_seconds(s.accelerator, time.perf_counter() - t0))
    record = {"kind": "eval", "step": s.state["step"], "eval_loss": loss, "flops": ledger.total_flops,
              "train_flops": ledger.flops["train"], "tokens": ledger.tokens["train"],
              "seconds": ledger.seconds, "eval_flops": flops, **evalplan.per_example(r, len(s.data.scoring))}
    s.run.append(s.run.metrics, record)
    s.state["evals_done"] += 1
    return record


def _begin(s: Session, evaluate: Callable, refresher, progress: bool) -> tuple[list[dict], float]:
    """The evaluations so far and what the final one costs. A fresh run evaluates before training (the curve's
    origin, handed to the governor) and saves step 0; a resumed run reads its evaluations back."""
    cfg, state, data, run, ledger, budget = s.cfg, s.state, s.data, s.run, s.ledger, s.budget
    resumed = s.resumed is not None
    evals = [r for r in read_jsonl(run.metrics) if r.get("kind") == "eval"] if resumed else []
    if not resumed:
        state["eval_plan"] = governed.start(cfg, s.governor, timing.planning_budget(budget, ledger),
                                            model=s.accelerator.unwrap_model(s.stepper.model), data=data,
                                            announce=progress and s.accelerator.is_main_process)
        first = evaluate(governed.origin_sample(state["eval_plan"]))
        evals.append(first)
        state["before_loss"] = first["eval_loss"]
        if data.apart:
            state["before_loss"] = reported_loss(s.stepper.model, data, ledger, s.pad_id, cfg, s.accelerator,
                                                 state.setdefault("token_accuracy", {}), "before")
    eval_cost = evals[0]["eval_flops"] if evals else 0.0
    eval_cost = governed.final_reserve(state["eval_plan"], eval_cost, reported_loss_flops(state, data, eval_cost),
                                       data.apart)
    if not resumed:
        from ..governor import (
            check_inputs,  # a budget smaller than one evaluation: one clear line
        )

        check_inputs(budget, eval_flops=eval_cost, heldout_examples=len(data.scoring))
        if state["eval_plan"] is not None:
            run.append(run.decisions, {"step": 0, "flops": ledger.total_flops, "action": "plan",
                                       "reason": state["eval_plan"]["line"], **state["eval_plan"]})
            origin = _decide(s.accelerator, s.governor, first, ledger, budget)  # the curve's origin: before training
            run.append(run.decisions, {"step": 0, "flops": ledger.total_flops, "action": origin.action,
                                       "reason": origin.reason, **origin.inputs})
        if cfg.train.restore_best:
            best.is_new_best(state, first)  # the weights before training are the first best (step 0's checkpoint)
        s.save()  # step 0: a good state to roll back or resume to
        governed.prepare_refresher(refresher, s.stepper.model, ledger)
    return evals, eval_cost


def _steps(s: Session, evals: list[dict], evaluate: Callable, eval_cost: float, refresher, on_step,
           progress: bool) -> float:
    """Optimizer steps until a limit or the governor stops the run; the seconds they took this session."""
    cfg, state, run, ledger, budget, stepper, accelerator = (s.cfg, s.state, s.run, s.ledger, s.budget, s.stepper,
                                                             s.accelerator)
    world, per_step = s.world, s.per_step

    def order(epoch: int) -> np.ndarray:
        return np.random.default_rng([cfg.train.seed, epoch]).permutation(len(s.pool))

    bar = TrainingBar(progress and accelerator.is_main_process, budget, ledger, cfg.train.max_steps, state["step"])
    last_step, train_seconds = state.get("last_step"), 0.0  # a resumed run pre-costs its first step too
    order_cache = (state["epoch"], order(state["epoch"]))
    while state["stop_reason"] is None:
        cool = state["cooldown"]
        if cool is not None and cooldown.finished(cool, ledger):
            run.append(run.decisions, cooldown.record(cool, state["step"], ledger, done=True))
            state["stop_reason"] = f"governor: {cool['reason']} (after a learning-rate cooldown)"
            break
        reason = (pacing.should_stop(budget, ledger, cfg.train.max_steps, state["step"], 0.0, eval_cost)
                  or timing.should_stop(budget, ledger, 0.0, eval_cost, state))
        if reason:
            state["stop_reason"] = reason
            break
        # The next optimizer step: each process takes its share of the global batch, in a seeded order.
        position = (state["epoch"], state["cursor"])
        indices = []
        while len(indices) < per_step:
            if order_cache[0] != state["epoch"]:
                order_cache = (state["epoch"], order(state["epoch"]))
            take = order_cache[1][state["cursor"]: state["cursor"] + per_step - len(indices)]
            indices += take.tolist()
            state["cursor"] += len(take)
            if state["cursor"] >= len(s.pool):
                state["epoch"], state["cursor"] = state["epoch"] + 1, 0
        mine = indices[accelerator.process_index::world]
        mbs = cfg.train.micro_batch_size
        micro = [collate([s.pool[i] for i in mine[j: j + mbs]], s.pad_id) for j in range(0, len(mine), mbs)]
        micro = [{k: v.to(accelerator.device) for k, v in mb.items()} for mb in micro]
        # Cost this batch before running it, so a long batch cannot overrun the FLOP budget.
        shape = _global_shape(accelerator, micro)
        next_cost = precost.next_step_flops(stepper, micro, accelerator, last_step, shape)
        reason = (pacing.should_stop(budget, ledger, None, state["step"], next_cost, eval_cost)
                  or timing.should_stop(budget, ledger, next_cost, eval_cost, state))
        if reason:
            state["epoch"], state["cursor"] = position  # the batch was not trained on
            state["stop_reason"] = reason
            break
        lr = cooldown.lr(cool, ledger) if cool is not None else wsd_lr(
            s.peak_lr, state["step"], warmup_steps=cfg.train.warmup_steps,
            progress=pacing.progress_fraction(budget, ledger, cfg.train.max_steps, state["step"]),
            decay_fraction=cfg.train.decay_fraction, min_ratio=cfg.train.min_lr_ratio)
        lr *= guard.lr_scale(state)
        t0 = time.perf_counter()
        result = stepper.step(micro, lr)
        totals = accelerator.reduce(torch.tensor([result.flops, float(result.tokens), result.loss * result.tokens],
                                                 dtype=torch.float64, device=accelerator.device), reduction="sum")
        step_flops, step_tokens, loss_tokens = totals.tolist()
        elapsed = _global_seconds(accelerator, time.perf_counter() - t0)
        ledger.charge("train", step_flops, int(step_tokens))
        ledger.steps += 1
        ledger.add_seconds("train", elapsed)
        train_seconds += elapsed
        last_step = state["last_step"] = (step_flops, shape)
        state["step"] += 1
        train_loss = loss_tokens / max(1.0, step_tokens)
        if not guard.step_finite(train_loss, stepper.model, accelerator):
            guard.rollback(run, stepper, state, ledger, s.governor, evals, loss=train_loss, lr=lr,
                           retries=cfg.train.nonfinite_retries)
            continue
        run.append(run.metrics, {"kind": "train", "step": state["step"], "train_loss": train_loss, "lr": lr,
                                 "flops": ledger.total_flops, "tokens": ledger.tokens["train"]})
        bar.update(ledger, train_loss, state["step"])
        sample = governed.sample(state["eval_plan"])
        if (cool is None and governed.due(cfg, state["eval_plan"], budget, ledger, state)  # cooldown: final only
                and governed.fits_flops(budget, ledger, evals, sample, len(s.data.scoring), eval_cost)
                and timing.fits(budget, ledger, evals, sample, len(s.data.scoring), eval_cost, cfg.train)):
            record = evaluate(sample)
            record["train_loss"] = train_loss
            record["lr"] = lr
            evals.append(record)
            _govern(s, record, lr, eval_cost, refresher)
        if on_step is not None:
            on_step(state["step"], ledger)
        every = cfg.train.checkpoint_every
        if every and state["step"] % every == 0 and state["stop_reason"] is None:
            s.save()
    bar.close()
    return train_seconds


def _govern(s: Session, record: dict, lr: float, eval_cost: float, refresher) -> None:
    """The governor's decision on an evaluation, logged and carried out: stop (after a cooldown when one is asked
    for and affordable) or refresh the data selection."""
    cfg, state, run, ledger, budget = s.cfg, s.state, s.run, s.ledger, s.budget
    if refresher is not None and getattr(refresher, "history", None):
        record["drift"] = refresher.history[-1]  # what a refresh would buy, for the governor
    decision = _decide(s.accelerator, s.governor, record, ledger, budget)
    run.append(run.decisions, {"step": state["step"], "flops": ledger.total_flops,
                               "action": decision.action, "reason": decision.reason, **decision.inputs})
    governed.grant_sample(run, state, decision, ledger, budget, len(s.data.scoring), cfg.train.seed)
    if decision.action == "stop":
        back = best.restore(run, s.stepper, state, record, ledger, sharding.is_sharded(s.stepper.model)) \
            if cfg.train.restore_best else None
        if back is not None:
            run.append(run.decisions, back)
            record["restored_after"] = back["restored"]  # the weights it read are gone: the final one is new
        state["cooldown"] = cooldown.begin(
            fraction=cfg.train.cooldown_fraction, lr=lr, ledger=ledger, budget=budget, eval_cost=eval_cost,
            progress=pacing.progress_fraction(budget, ledger, cfg.train.max_steps, state["step"]),
            reason=decision.reason)
        if state["cooldown"] is None:
            state["stop_reason"] = f"governor: {decision.reason}"
        else:
            run.append(run.decisions, cooldown.record(state["cooldown"], state["step"], ledger, done=False))
    elif decision.action == "refresh" and refresher is not None:
        new_pool = governed.refresh(run, state["step"], ledger, refresher, s.stepper.model)
        if new_pool:
            s.pool = list(new_pool)
            state["pool_uids"] = [e.uid for e in s.pool]
            state["epoch"], state["cursor"] = state["epoch"] + 1, 0
    if decision.action != "stop" and cfg.train.restore_best and best.is_new_best(state, record):
        s.save()  # the best evaluation's weights, kept for a later stop to restore


def _global_shape(accelerator, micro: list[dict]) -> tuple[float, float]:
    """(padded tokens over all processes, longest sequence) of the next step."""
    tokens = float(sum(mb["input_ids"].numel() for mb in micro))
    longest = float(max(mb["input_ids"].shape[1] for mb in micro))
    if accelerator.num_processes > 1:
        t = accelerator.reduce(torch.tensor([tokens], dtype=torch.float64, device=accelerator.device), "sum")
        m = accelerator.reduce(torch.tensor([longest], dtype=torch.float64, device=accelerator.device), "max")
        tokens, longest = float(t[0]), float(m[0])
    return tokens, longest


def _decide(accelerator, governor, record: dict, ledger: Ledger, budget: Budget) -> Decision:
    return ranks.decide(accelerator, governor, record, ledger, budget)


def _global_seconds(accelerator, seconds: float) -> float:
    """Rank 0's elapsed time, so every process counts the same seconds."""
    if accelerator.num_processes == 1:
        return seconds
    from accelerate.utils import broadcast

    return float(broadcast(torch.tensor([seconds], dtype=torch.float64, device=accelerator.device))[0])
