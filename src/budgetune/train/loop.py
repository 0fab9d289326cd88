"""The one training loop. It executes; what to train on, with which method and when to stop are decided elsewhere
(data selection, the method's Stepper, the budget and the governor).

Written on HF accelerate, so the same code runs alone or under `accelerate launch` with several processes: every
number that drives a decision (FLOPs, tokens, losses, seconds) is reduced across processes first, and governor
decisions are made on rank 0 and broadcast, so no process branches on a rank-local value.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import config as config_mod
from .. import precision as precision_mod
from .. import scaling, trackers
from ..budget import CHARGES, Budget, Ledger, fold_outside, read_charges
from ..data import DataSplit, collate
from ..errors import UserError
from ..governor.protocol import Decision, FixedBudget
from ..methods import registry
from ..methods.base import TrainContext
from . import (
    checkpoint,
    cooldown,
    evalplan,
    governed,
    guard,
    pacing,
    precost,
    ranks,
    rundir,
)
from .evaluate import heldout_losses
from .progress import TrainingBar
from .rundir import RunDir, read_jsonl
from .schedule import wsd_lr
from .testset import reported_loss, reported_loss_flops, split_summary


@dataclass
class RunResult:
    run_dir: Path
    ledger: Ledger
    evals: list[dict]
    stop_reason: str
    artefact: Path | None
    before_loss: float | None
    after_loss: float | None
    extra: dict = field(default_factory=dict)

    @property
    def train_tokens_per_second(self) -> float | None:
        seconds = self.extra.get("train_seconds")
        return self.ledger.tokens["train"] / seconds if seconds else None


def make_budget(cfg) -> Budget:
    b = cfg.budget
    memory = config_mod.parse_bytes(b.max_memory, "budget field 'max_memory'") if b.max_memory else None
    return Budget(max_flops=b.max_flops, max_tokens=b.max_tokens, max_seconds=b.max_seconds, max_memory_bytes=memory)


def _validate(cfg) -> None:
    config_mod.check(cfg)
    t = cfg.train
    for name in ("micro_batch_size", "grad_accum", "eval_batch_size", "eval_points"):
        if getattr(t, name) < 1:
            raise UserError(f"train field '{name}' is {getattr(t, name)}; it must be at least 1")
    for name in ("decay_fraction", "cooldown_fraction", "eval_share"):
        if not 0 <= getattr(t, name) <= 1:
            raise UserError(f"train field '{name}' is {getattr(t, name)}; give a share between 0 and 1")
    if t.lr is not None and t.lr <= 0:
        raise UserError(f"train field 'lr' is {t.lr}; give a positive learning rate")
    if cfg.budget.max_flops is None and cfg.budget.max_tokens is None and cfg.budget.max_seconds is None \
            and t.max_steps is None:
        raise UserError("no budget: set at least one of --max-flops, --max-tokens, --max-seconds or --max-steps")


def train(cfg, *, model=None, tokenizer=None, data: DataSplit | None = None, governor=None,
          refresher: Callable | None = None, on_step: Callable | None = None, progress: bool = True,
          joint_plan: dict | None = None) -> RunResult:
    from .. import models

    _validate(cfg)
    budget = make_budget(cfg)
    layout = ranks.layout(cfg)  # processes and sharding this run really uses (the planner plans with them)
    if budget.max_memory_bytes is not None:
        from ..planner.plan import check_fits  # refuses before any weight is loaded

        plan = check_fits(cfg, **layout)
        if cfg.train.method == "auto":  # the planner's recommendation for this memory budget
            cfg.train.method = plan["method"]
            cfg.train.method_options = dict(plan.get("options") or {})
            cfg.train.gradient_checkpointing = bool(plan.get("gradient_checkpointing"))
    elif cfg.train.method == "auto":
        raise UserError("method 'auto' needs a memory budget to plan against; add --max-memory (e.g. 24GiB)")
    method = registry.get(cfg.train.method)
    method_cfg = registry.make_config(cfg.train.method, cfg.train.method_options)
    precision = cfg.train.precision = precision_mod.for_run(cfg)  # the one check_fits planned; recorded for resume
    precision_mod.check_method(cfg.train.method, method, precision)
    accelerator = precision_mod.make_accelerator(precision, **ranks.accelerator_kwargs(cfg, layout))
    run = rundir.prepare(cfg, writer=accelerator.is_main_process, accelerator=accelerator)  # checks; writes nothing
    cfg.out = str(run.path)
    resumed = checkpoint.load_latest(run.path) if cfg.resume and run.path.is_dir() else None
    if cfg.resume and resumed is None and (run.path / "ledger.json").exists():
        raise UserError(f"{run.path}: has no checkpoint to resume from; delete it or drop --resume")

    torch.manual_seed(cfg.train.seed)
    if tokenizer is None:
        tokenizer = models.load_tokenizer(cfg.model.model, trust_remote_code=cfg.model.trust_remote_code,
                                          allow_download=cfg.model.allow_download)
    if data is None:
        from ..data import load_data

        data = load_data(cfg.data, tokenizer)
    if not data.target:
        raise UserError("the held-out target set is empty; give --target or a larger --heldout-fraction")
    if model is None:
        load_kwargs = method.load_kwargs(method_cfg, precision) if hasattr(method, "load_kwargs") else {}
        model = models.load_model(cfg.model.model, dtype=precision_mod.load_dtype(precision, method, cfg.model.dtype),
                                  trust_remote_code=cfg.model.trust_remote_code,
                                  allow_download=cfg.model.allow_download, seed=cfg.train.seed, **load_kwargs)
    model = precision_mod.cast_model(model, precision, method, cfg.model.dtype)
    ledger = Ledger()
    pool = list(data.train)
    if cfg.selection and resumed is None:
        from ..selection import plan_inputs
        from .selection_record import apply_and_record

        t0 = time.perf_counter()
        run.open(config_mod.to_dict(cfg))  # model and data are checked: the scores below go into the run directory
        # selection.apply, with the pool's scores kept in the run directory for the report; scorers see dev only
        pool = apply_and_record(cfg.selection, model, tokenizer, DataSplit(pool, data.scoring, data.source), ledger,
                                run, **plan_inputs(cfg))
        ledger.seconds += time.perf_counter() - t0  # the time budget covers selection too
    ctx = TrainContext(accelerator=accelerator, weight_decay=cfg.train.weight_decay,
                       gradient_checkpointing=cfg.train.gradient_checkpointing, seed=cfg.train.seed,
                       precision=precision, extra={"sharding": layout["sharding"]})
    torch.manual_seed(cfg.train.seed)
    stepper = method.prepare(model, method_cfg, ctx)
    governor = governor or FixedBudget()
    peak_lr = cfg.train.lr if cfg.train.lr is not None else method.DEFAULT_LR
    pad_id = tokenizer.pad_token_id

    state = {"step": 0, "epoch": 0, "cursor": 0, "stop_reason": None, "before_loss": None, "evals_done": 0,
             "pool_uids": None, "cooldown": None, "eval_plan": None}
    if resumed is not None:
        weights, method_state, saved = resumed
        if ranks.restore_sharded(run.path, stepper) is False:
            stepper.load_trainable_state_dict(weights)
            stepper.load_state_dict(method_state["method"])
        torch.set_rng_state(method_state["rng"])
        state.update(saved["loop"])
        ledger = Ledger.from_dict(saved["ledger"])
        fold_outside(ledger, read_charges(run.path))  # eval/generate work done on the run since its checkpoint
        governor.load_state_dict(saved.get("governor", {}))
        if state["pool_uids"] is not None:
            by_uid = {e.uid: e for e in data.train}
            pool = [by_uid[u] for u in state["pool_uids"] if u in by_uid]
        if state["stop_reason"] and not state["stop_reason"].startswith("governor"):
            state["stop_reason"] = None  # a limit raised since: train on (an unchanged one stops again at once)

    world = accelerator.num_processes
    per_step = cfg.train.micro_batch_size * cfg.train.grad_accum * world
    if len(pool) < per_step:
        raise UserError(f"the training pool has {len(pool)} examples, fewer than one optimizer step needs "
                        f"({per_step}); lower --micro-batch-size/--grad-accum or give more data")
    run.open(config_mod.to_dict(cfg))  # the first write to the run directory: every input is valid by now
    if joint_plan is not None and resumed is None:
        run.write_json("plan.json", joint_plan)  # budgetune.joint's plan, made before any weight was loaded
    tracker = trackers.attach(cfg, accelerator, run)  # every metric and decision record goes to it as well
    if resumed is not None:
        run.truncate_after(state["step"])
    elif run.writer:
        for f in (run.metrics, run.decisions, run.path / CHARGES):
            f.unlink(missing_ok=True)

    def order(epoch: int) -> np.ndarray:
        return np.random.default_rng([cfg.train.seed, epoch]).permutation(len(pool))

    def do_eval(indices=None) -> dict:
        t0 = time.perf_counter()
        r = heldout_losses(stepper.model, data.scoring, pad_id=pad_id, batch_size=cfg.train.eval_batch_size,
                           accelerator=accelerator, indices=indices)  # dev only: the test split is reported apart
        loss, flops = r["loss"], r["flops"]
        ledger.charge("eval", flops, r["tokens"])
        ledger.seconds += _global_seconds(accelerator, time.perf_counter() - t0)
        record = {"kind": "eval", "step": state["step"], "eval_loss": loss, "flops": ledger.total_flops,
                  "train_flops": ledger.flops["train"], "tokens": ledger.tokens["train"],
                  "seconds": ledger.seconds, "eval_flops": flops, **evalplan.per_example(r, len(data.scoring))}
        run.append(run.metrics, record)
        state["evals_done"] += 1
        return record

    evals = [r for r in read_jsonl(run.metrics) if r.get("kind") == "eval"] if resumed is not None else []
    if resumed is None:
        state["eval_plan"] = governed.start(cfg, governor, budget, model=accelerator.unwrap_model(stepper.model),
                                            data=data, announce=progress and accelerator.is_main_process)
        first = do_eval(governed.origin_sample(state["eval_plan"]))
        evals.append(first)
        state["before_loss"] = first["eval_loss"]
        if data.apart:
            state["before_loss"] = reported_loss(stepper.model, data, ledger, pad_id, cfg, accelerator,
                                                 state.setdefault("token_accuracy", {}), "before")
    eval_cost = evals[0]["eval_flops"] if evals else 0.0
    eval_cost = governed.final_reserve(state["eval_plan"], eval_cost, reported_loss_flops(state, data, eval_cost))
    if resumed is None:
        from ..governor import (
            check_inputs,  # a budget smaller than one evaluation: one clear line
        )

        check_inputs(budget, eval_flops=eval_cost, heldout_examples=len(data.scoring))
        if state["eval_plan"] is not None:
            run.append(run.decisions, {"step": 0, "flops": ledger.total_flops, "action": "plan",
                                       "reason": state["eval_plan"]["line"], **state["eval_plan"]})
            origin = _decide(accelerator, governor, first, ledger, budget)  # the curve's origin: before training
            run.append(run.decisions, {"step": 0, "flops": ledger.total_flops, "action": origin.action,
                                       "reason": origin.reason, **origin.inputs})
        _save(run, stepper, state, ledger, governor, cfg)  # step 0: a good state to roll back or resume to

    if resumed is None:
        governed.prepare_refresher(refresher, stepper.model, ledger)
    bar = TrainingBar(progress and accelerator.is_main_process, budget, ledger, cfg.train.max_steps, state["step"])
    last_step, train_seconds = state.get("last_step"), 0.0  # a resumed run pre-costs its first step too
    order_cache = (state["epoch"], order(state["epoch"]))
    while state["stop_reason"] is None:
        cool = state["cooldown"]
        if cool is not None and cooldown.finished(cool, ledger):
            run.append(run.decisions, cooldown.record(cool, state["step"], ledger, done=True))
            state["stop_reason"] = f"governor: {cool['reason']} (after a learning-rate cooldown)"
            break
        reason = pacing.should_stop(budget, ledger, cfg.train.max_steps, state["step"], 0.0, eval_cost)
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
            if state["cursor"] >= len(pool):
                state["epoch"], state["cursor"] = state["epoch"] + 1, 0
        mine = indices[accelerator.process_index::world]
        mbs = cfg.train.micro_batch_size
        micro = [collate([pool[i] for i in mine[j: j + mbs]], pad_id) for j in range(0, len(mine), mbs)]
        micro = [{k: v.to(accelerator.device) for k, v in mb.items()} for mb in micro]
        # Cost this batch before running it, so a long batch cannot overrun the FLOP budget.
        shape = _global_shape(accelerator, micro)
        next_cost = precost.next_step_flops(stepper, micro, accelerator, last_step, shape)
        reason = pacing.should_stop(budget, ledger, None, state["step"], next_cost, eval_cost)
        if reason:
            state["epoch"], state["cursor"] = position  # the batch was not trained on
            state["stop_reason"] = reason
            break
        lr = cooldown.lr(cool, ledger) if cool is not None else wsd_lr(
            peak_lr, state["step"], warmup_steps=cfg.train.warmup_steps,
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
        ledger.seconds += elapsed
        train_seconds += elapsed
        last_step = state["last_step"] = (step_flops, shape)
        state["step"] += 1
        train_loss = loss_tokens / max(1.0, step_tokens)
        if not guard.step_finite(train_loss, stepper.model, accelerator):
            guard.rollback(run, stepper, state, ledger, governor, evals, loss=train_loss, lr=lr,
                           retries=cfg.train.nonfinite_retries)
            continue
        run.append(run.metrics, {"kind": "train", "step": state["step"], "train_loss": train_loss, "lr": lr,
                                 "flops": ledger.total_flops, "tokens": ledger.tokens["train"]})
        bar.update(ledger, train_loss, state["step"])
        if cool is None and governed.due(cfg, state["eval_plan"], budget, ledger, state):  # cooldown: final eval only
            record = do_eval(governed.sample(state["eval_plan"]))
            record["train_loss"] = train_loss
            record["lr"] = lr
            evals.append(record)
            if refresher is not None and getattr(refresher, "history", None):
                record["drift"] = refresher.history[-1]  # what a refresh would buy, for the governor
            decision = _decide(accelerator, governor, record, ledger, budget)
            run.append(run.decisions, {"step": state["step"], "flops": ledger.total_flops,
                                       "action": decision.action, "reason": decision.reason, **decision.inputs})
            governed.grant_sample(run, state, decision, ledger, budget, len(data.scoring), cfg.train.seed)
            if decision.action == "stop":
                state["cooldown"] = cooldown.begin(
                    fraction=cfg.train.cooldown_fraction, lr=lr, ledger=ledger, budget=budget, eval_cost=eval_cost,
                    progress=pacing.progress_fraction(budget, ledger, cfg.train.max_steps, state["step"]),
                    reason=decision.reason)
                if state["cooldown"] is None:
                    state["stop_reason"] = f"governor: {decision.reason}"
                else:
                    run.append(run.decisions, cooldown.record(state["cooldown"], state["step"], ledger, done=False))
            elif decision.action == "refresh" and refresher is not None:
                new_pool = governed.refresh(run, state["step"], ledger, refresher, stepper.model)
                if new_pool:
                    pool = list(new_pool)
                    state["pool_uids"] = [e.uid for e in pool]
                    state["epoch"], state["cursor"] = state["epoch"] + 1, 0
        if on_step is not None:
            on_step(state["step"], ledger)
        every = cfg.train.checkpoint_every
        if every and state["step"] % every == 0 and state["stop_reason"] is None:
            _save(run, stepper, state, ledger, governor, cfg)
    bar.close()
    if governed.final_dev_eval(state["eval_plan"], evals[-1], state["step"]):  # the final loss: the whole set
        evals.append(do_eval())
    evals[-1]["final"] = True
    after_loss = reported_loss(stepper.model, data, ledger, pad_id, cfg, accelerator,
                               state.setdefault("token_accuracy", {}), "after") if data.apart \
        else evals[-1]["eval_loss"]
    _save(run, stepper, state, ledger, governor, cfg)
    artefact = None
    result_source = ranks.result_source(stepper)  # a sharded model is gathered whole first (every rank)
    if accelerator.is_main_process:
        artefact = _save_result(run.path, result_source, tokenizer)
    accelerator.wait_for_everyone()
    ledger_dict = ledger.to_dict()
    run.write_json("ledger.json", ledger_dict)
    summary = {"before_loss": state["before_loss"], "after_loss": after_loss, **split_summary(data),
               "stop_reason": state["stop_reason"], "steps": ledger.steps, "ledger": ledger_dict,
               "artefact": str(artefact) if artefact else None, "method": cfg.train.method,
               "model": cfg.model.model, "processes": world, "train_seconds_this_session": train_seconds,
               "pool_size": len(pool), "target_size": len(data.target), "cooldown": state["cooldown"],
               "divergence": guard.divergence(evals, state["before_loss"]), "rollbacks": state.get("rollbacks", 0)}
    summary.update(ranks.summary_fields(layout, plan if budget.max_memory_bytes is not None else None))
    summary["n_params"] = scaling.base_params(stepper.model)  # the N of `budgetune scaling fit`
    run.write_json("summary.json", summary)
    tracker.ledger(ledger_dict, state["step"])
    return RunResult(run.path, ledger, evals, state["stop_reason"], artefact, state["before_loss"],
                     after_loss, {"train_seconds": train_seconds, "model": stepper.model,
                                  "tokenizer": tokenizer, "data": data,
                                  "token_accuracy": state.get("token_accuracy"),
                                  "sharded": layout["sharding"] != "none"})


def _save_result(run_dir: Path, stepper, tokenizer) -> Path:
    """The method's result ('adapter' or 'model') written to a temporary directory, then renamed into place."""
    import shutil
    import tempfile

    from ..atomic import replace_dir

    tmp = Path(tempfile.mkdtemp(dir=run_dir, prefix=".result.", suffix=".tmp"))
    try:
        kind = stepper.save_pretrained(tmp, tokenizer)
        final = run_dir / kind
        replace_dir(tmp, final)  # the new result in place before the old one is removed
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


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


def _save(run: RunDir, stepper, state: dict, ledger: Ledger, governor, cfg) -> None:
    if ranks.save_sharded(run, stepper, state, ledger, governor, cfg):  # every rank writes its own shard
        return
    weights = stepper.trainable_state_dict()
    method_state = {"method": stepper.state_dict(), "rng": torch.get_rng_state()}
    saved = {"loop": dict(state), "ledger": ledger.to_dict(), "governor": governor.state_dict()}
    if run.writer:
        checkpoint.save(run.path, state["step"], weights, method_state, saved, keep=cfg.train.keep_checkpoints)
        run.write_json("ledger.json", ledger.to_dict())

