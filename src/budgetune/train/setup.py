"""A run's set-up: every input checked, the method chosen and its memory checked, the run directory decided (fresh or
resumed), the model, data and selection, the method's Stepper and the loop state restored from a checkpoint.

Nothing is written to the run directory until every input is valid (`RunDir.open`), so a refused run leaves
nothing behind.
"""

from __future__ import annotations

import time

import torch

from .. import config as config_mod
from .. import precision as precision_mod
from .. import trackers
from ..budget import Budget, Ledger, fold_outside, read_charges
from ..data import DataSplit
from ..errors import UserError
from ..governor.protocol import FixedBudget
from ..methods import registry
from ..methods.base import TrainContext
from . import ranks, rundir, timing
from .session import Session


def make_budget(cfg) -> Budget:
    b = cfg.budget
    memory = config_mod.parse_bytes(b.max_memory, "budget field 'max_memory'") if b.max_memory else None
    return Budget(max_flops=b.max_flops, max_tokens=b.max_tokens, max_seconds=b.max_seconds, max_memory_bytes=memory,
                  flops_per_second=b.flops_per_second)


def validate(cfg) -> None:
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


def set_up(cfg, *, model=None, tokenizer=None, data: DataSplit | None = None, governor=None,
           joint_plan: dict | None = None) -> Session:
    from .. import models

    validate(cfg)
    budget = make_budget(cfg)
    layout = ranks.layout(cfg)  # processes and sharding this run really uses (the planner plans with them)
    plan = None
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
    resumed = run.resume_point(cfg.resume)

    torch.manual_seed(cfg.train.seed)
    from ..inputs import load_inputs

    tokenizer, data = load_inputs(cfg, tokenizer, data)
    if model is None:
        load_kwargs = method.load_kwargs(method_cfg, precision) if hasattr(method, "load_kwargs") else {}
        model = models.load_model(cfg.model.model, dtype=precision_mod.load_dtype(precision, method, cfg.model.dtype),
                                  trust_remote_code=cfg.model.trust_remote_code,
                                  allow_download=cfg.model.allow_download, seed=cfg.train.seed, **load_kwargs)
    model = precision_mod.cast_model(model, precision, method, cfg.model.dtype)
    ledger = Ledger()
    timing.charge_probe(ledger, joint_plan)  # the plan's timed throughput probe is work of this run
    pool = list(data.train)
    if cfg.selection and resumed is None:
        from ..selection import plan_inputs
        from .selection_record import apply_and_record

        t0 = time.perf_counter()
        run.open(config_mod.to_dict(cfg))  # model and data are checked: the scores below go into the run directory
        # selection.apply, with the pool's scores kept in the run directory for the report; scorers see dev only
        pool = apply_and_record(cfg.selection, model, tokenizer, DataSplit(pool, data.scoring, data.source), ledger,
                                run, **plan_inputs(cfg))
        ledger.add_seconds("selection", time.perf_counter() - t0)  # the time budget covers selection too
    ctx = TrainContext(accelerator=accelerator, weight_decay=cfg.train.weight_decay,
                       gradient_checkpointing=cfg.train.gradient_checkpointing, seed=cfg.train.seed,
                       precision=precision, extra={"sharding": layout["sharding"]})
    torch.manual_seed(cfg.train.seed)
    stepper = method.prepare(model, method_cfg, ctx)
    s = Session(cfg=cfg, budget=budget, layout=layout, plan=plan, accelerator=accelerator, run=run, resumed=resumed,
                tokenizer=tokenizer, data=data, ledger=ledger, pool=pool, stepper=stepper,
                governor=governor or FixedBudget(),
                peak_lr=cfg.train.lr if cfg.train.lr is not None else method.DEFAULT_LR,
                state={"step": 0, "epoch": 0, "cursor": 0, "stop_reason": None, "before_loss": None,
                       "evals_done": 0, "pool_uids": None, "cooldown": None, "eval_plan": None})
    if resumed is not None:
        _restore(s, resumed)

    if len(s.pool) < s.per_step:
        raise UserError(f"the training pool has {len(s.pool)} examples, fewer than one optimizer step needs "
                        f"({s.per_step}); lower --micro-batch-size/--grad-accum or give more data")
    run.open(config_mod.to_dict(cfg))  # the first write to the run directory: every input is valid by now
    if joint_plan is not None and resumed is None:
        run.write_json("plan.json", joint_plan)  # budgetune.joint's plan, made before any weight was loaded
    s.tracker = trackers.attach(cfg, accelerator, run)  # every metric and decision record goes to it as well
    run.start_logs(s.state["step"] if resumed is not None else None)
    return s


def _restore(s: Session, resumed: tuple) -> None:
    """The checkpoint's weights, method state, RNG, loop state, ledger (with the charges made outside the loop
    since) and governor; the pool a refresh chose."""
    weights, method_state, saved = resumed
    if ranks.restore_sharded(s.run.path, s.stepper) is False:
        s.stepper.load_trainable_state_dict(weights)
        s.stepper.load_state_dict(method_state["method"])
    torch.set_rng_state(method_state["rng"])
    s.state.update(saved["loop"])
    s.ledger = Ledger.from_dict(saved["ledger"])
    fold_outside(s.ledger, read_charges(s.run.path))  # eval/generate work done on the run since its checkpoint
    s.governor.load_state_dict(saved.get("governor", {}))
    if s.state["pool_uids"] is not None:
        by_uid = {e.uid: e for e in s.data.train}
        s.pool = [by_uid[u] for u in s.state["pool_uids"] if u in by_uid]
    s.state["stop_reason"] = rundir.stop_reason_on_resume(s.state["stop_reason"])
