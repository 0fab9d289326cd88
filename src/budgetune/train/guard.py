"""Non-finite numbers are never trained on or saved: after every optimizer step the loss and the updated weights
are checked finite (a non-finite gradient leaves non-finite weights). A bad step rolls the run back to its last
good checkpoint and retries with the learning rate halved, at most `train.nonfinite_retries` times; then the run
stops with one line naming the step and the setting to change. The FLOPs of discarded steps stay in the ledger:
they were spent.

A run whose held-out loss ends far above where it started (DIVERGENCE_FACTOR) trained on finite numbers but
diverged; the summary says so.
"""

from __future__ import annotations

import math

import torch

from ..errors import UserError
from . import checkpoint

DIVERGENCE_FACTOR = 2.0  # final held-out loss above this multiple of the starting one: reported as divergence


def lr_scale(state: dict) -> float:
    """The learning-rate multiplier left by earlier rollbacks (1 when there were none)."""
    return 0.5 ** state.get("rollbacks", 0)


def step_finite(loss: float, model, accelerator=None) -> bool:
    """The step's loss and the weights it produced are all finite (the same answer on every process)."""
    with torch.no_grad():
        params = [p for p in model.parameters() if p.requires_grad] or list(model.parameters())
        total = torch.stack([p.detach().float().sum() for p in params]).sum() if params else torch.zeros(())
        ok = float(math.isfinite(loss) and bool(torch.isfinite(total)))
    if accelerator is not None and accelerator.num_processes > 1:
        flag = torch.tensor([ok], device=accelerator.device)
        ok = float(accelerator.reduce(flag, reduction="sum")[0]) == accelerator.num_processes
    return bool(ok)


def rollback(run, stepper, state: dict, ledger, governor, evals: list, *, loss: float, lr: float,
             retries: int) -> None:
    """Restore the last good checkpoint in place (weights, method state, data position, governor), keeping the
    ledger, or raise the one-line stop when the retries are used up."""
    bad_step, done = state["step"], state.get("rollbacks", 0)
    found = checkpoint.load_latest(run.path) if run.path.exists() else None
    if done >= retries or found is None:
        where = "" if found is not None else " and no checkpoint to go back to"
        raise UserError(f"step {bad_step}: the training loss or weights are not finite ({loss:.3g}) after {done} "
                        f"rollback(s) with the learning rate halved{where} (last learning rate {lr:.3g}); lower "
                        f"--lr (e.g. --lr {lr / 10:.1e}) and continue with --resume, or raise --nonfinite-retries")
    weights, method_state, saved = found
    stepper.load_trainable_state_dict(weights)
    stepper.load_state_dict(method_state["method"])
    torch.set_rng_state(method_state["rng"])
    state.update(saved["loop"])
    state["rollbacks"] = done + 1
    governor.load_state_dict(saved.get("governor", {}))
    evals[:] = [e for e in evals if e["step"] <= state["step"]]
    run.truncate_after(state["step"])
    run.append(run.decisions, {"step": state["step"], "flops": ledger.total_flops, "action": "rollback",
                               "reason": f"non-finite loss or weights at step {bad_step}; back to the checkpoint "
                                         f"of step {state['step']} with the learning rate halved",
                               "bad_step": bad_step, "lr_scale": lr_scale(state)})


def divergence(evals: list[dict], before_loss: float | None) -> dict | None:
    """The evaluation where the held-out loss ended above DIVERGENCE_FACTOR × its start, or None."""
    if not evals or not before_loss or before_loss <= 0:
        return None
    last = evals[-1]
    loss = last.get("eval_loss")
    if loss is None or not math.isfinite(loss) or loss > DIVERGENCE_FACTOR * before_loss:
        return {"step": last["step"], "eval_loss": loss, "before_loss": before_loss,
                "factor": None if loss is None or not math.isfinite(loss) else loss / before_loss,
                "advice": "the run diverged: lower --lr (e.g. by 10x) and run again"}
    return None
