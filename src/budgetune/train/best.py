"""Back to the best evaluation on a governed stop (train.restore_best).

A governed run stops when the rest of its budget is predicted not to pay, often inside a rise of its held-out loss
(an overfitting bump; docs/benchmarks/governor_v1.md: the worst real stops land 8–17% above the best loss the run had
reached). Early stopping's usual answer is to return the best weights seen (Prechelt 1998; Keras'
restore_best_weights), and that is what this does: every governed evaluation whose loss is the lowest so far on the
same examples saves a checkpoint at once, kept by the rotation (checkpoint.save's `protect`); a stop whose
evaluation stands above that best loads its weights and method state back before the cooldown and the final
whole-set evaluation. The data position, the ledger and the RNG go on: the FLOPs spent since stay spent.

Evaluations on different examples (a larger sample granted later) are not compared: the best starts again there.
A sharded run's checkpoints hold shards, which this does not read back; it says so and trains on.
"""

from __future__ import annotations

import hashlib
import json

from . import checkpoint


def key(record: dict) -> str:
    """Which held-out examples an evaluation read, as a short fingerprint (the whole set: "whole")."""
    idx = record.get("eval_indices")
    if idx is None:
        return "whole"
    return hashlib.sha1(json.dumps(sorted(int(i) for i in idx)).encode()).hexdigest()[:12]


def is_new_best(state: dict, record: dict) -> bool:
    """The evaluation is the lowest on its examples so far (or the first on them); state["best"] is updated."""
    best, k, loss = state.get("best"), key(record), float(record["eval_loss"])
    if best is not None and best["key"] == k and not loss < best["loss"]:
        return False
    state["best"] = {"step": int(record["step"]), "loss": loss, "key": k}
    return True


def restore(run, stepper, state: dict, record: dict, ledger, sharded: bool) -> dict | None:
    """On a stop at `record`: load the best evaluation's weights back when the stop's loss stands above it.
    The decisions.jsonl line, or None when there is nothing to go back to."""
    best = state.get("best")
    if best is None or best["key"] != key(record) or best["step"] >= state["step"] \
            or not float(record["eval_loss"]) > best["loss"]:
        return None
    line = {"step": state["step"], "flops": ledger.total_flops, "action": "restore", "best_step": best["step"],
            "best_loss": best["loss"], "eval_loss": float(record["eval_loss"])}
    found = None if sharded else checkpoint.load_step(run.path, best["step"])
    if found is None:
        why = "a sharded run's checkpoints are not read back" if sharded else "its checkpoint is missing"
        return {**line, "restored": False,
                "reason": f"the best evaluation (step {best['step']}) is not restored: {why}"}
    weights, method_state = found
    stepper.load_trainable_state_dict(weights)
    stepper.load_state_dict(method_state["method"])
    rise = float(record["eval_loss"]) / best["loss"] - 1
    return {**line, "restored": True,
            "reason": f"the stop's loss stands {rise:.1%} above the best evaluation's ({best['loss']:.4g} at step "
                      f"{best['step']}): its weights are restored before the cooldown"}
