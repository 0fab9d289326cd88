"""What the training loop does differently on several processes, in one place: the layout it plans with (world size
and sharding), the accelerate plugins, the governor's one decision for all ranks, and sharded checkpoints/results.
Every function here is called on every rank at the same point of the loop."""

from __future__ import annotations

from pathlib import Path

from .. import dist, sharding
from ..errors import UserError


def layout(cfg) -> dict:
    """{"world", "sharding"} of this run, before any weight is loaded (check_fits plans with them)."""
    return {"world": dist.world(), "sharding": sharding.resolve(getattr(cfg.train, "sharding", "auto"))}


def accelerator_kwargs(cfg, lay: dict) -> dict:
    from ..methods import registry
    from ..planner.plan import shardable_methods

    sharding.check(registry.get(cfg.train.method), lay["sharding"], cfg.train.grad_accum,
                   shardable=shardable_methods())  # after method 'auto' has been resolved by the planner
    kwargs = sharding.accelerator_kwargs(lay["sharding"], grad_accum=cfg.train.grad_accum)
    timeout = getattr(cfg.train, "dist_timeout", None)
    if timeout and lay["world"] > 1:
        from datetime import timedelta

        from accelerate.utils import InitProcessGroupKwargs

        kwargs["kwargs_handlers"] = [InitProcessGroupKwargs(timeout=timedelta(seconds=float(timeout)))]
    return kwargs


def decide(accelerator, governor, record: dict, ledger, budget):
    """Rank 0's decision on all-reduced inputs, broadcast once with rank 0's governor state (so every rank holds
    the same state without deciding again). A failure on rank 0 is broadcast too, and raised everywhere."""
    if accelerator.num_processes == 1:
        return governor.decide(record, ledger, budget)
    payload, error = None, None
    if accelerator.is_main_process:
        try:
            decision = governor.decide(record, ledger, budget)
            payload = (decision, governor.state_dict(), None)
        except Exception as e:  # noqa: BLE001 -- broadcast below: the others must not wait for a decision
            error = e
            payload = (None, None, f"{type(e).__name__}: {e}")
    decision, state, message = dist.broadcast_object(payload)
    if message is not None:
        if error is not None:
            raise error
        raise dist.RankFailed(f"the governor's decision failed on rank 0 ({message})")
    if not accelerator.is_main_process:
        governor.load_state_dict(state)
    return decision


def save_sharded(run, stepper, state: dict, ledger, governor, cfg) -> bool:
    """Write a sharded checkpoint (every rank) when the model is sharded; False when it is not."""
    if not sharding.is_sharded(stepper.model):
        return False
    from . import sharded_checkpoint

    sharded_checkpoint.save(run, stepper, state, ledger, governor, cfg)
    return True


def restore_sharded(run_dir: Path, stepper) -> bool:
    """Load a sharded checkpoint into a sharded model (every rank); False for an unsharded run. A checkpoint and a
    run that disagree on sharding are refused: resume with the sharding the run was started with."""
    from . import sharded_checkpoint

    model_sharded = sharding.is_sharded(stepper.model)
    ckpt_sharded = sharded_checkpoint.is_sharded_checkpoint(run_dir)
    if model_sharded != ckpt_sharded:
        was = "sharded (fsdp)" if ckpt_sharded else "not sharded"
        raise UserError(f"{run_dir}: its checkpoint was written {was}, but this resume runs "
                        f"{'sharded' if model_sharded else 'unsharded'}; resume with the same --sharding and launcher")
    if not model_sharded:
        return False
    sharded_checkpoint.restore(run_dir, stepper)
    return True


def result_source(stepper):
    """What the loop saves as the result: the stepper, or for a sharded model its weights gathered whole."""
    from .sharded_checkpoint import gather_result

    return gather_result(stepper) or stepper


def summary_fields(lay: dict, plan: dict | None) -> dict:
    out = {"processes": lay["world"], "sharding": lay["sharding"]}
    if plan is not None:
        out["plan"] = plan  # per-rank memory the planner checked, with the shape it planned
    return out
