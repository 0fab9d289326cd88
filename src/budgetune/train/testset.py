"""The reported loss on the test part of the held-out data, which neither selection nor the governor reads.

The loop's own evaluations (the governor's signal) run on dev; the loss before and after training that the summary
and report quote runs here, on test, and is charged to the ledger's `eval` phase like any evaluation.
"""

from __future__ import annotations

import time

from .evaluate import heldout_losses


def reported_loss(model, data, ledger, pad_id: int, cfg, accelerator, keep: dict | None = None,
                  key: str = "") -> float:
    """The test loss; with `keep`, the response-token accuracy of the same forward is kept as keep[key] (so
    `budgetune run` reports it without evaluating the test set again)."""
    t0 = time.perf_counter()
    r = heldout_losses(model, data.test, pad_id=pad_id, batch_size=cfg.train.eval_batch_size,
                       accelerator=accelerator)
    ledger.charge("eval", r["flops"], r["tokens"])
    ledger.add_seconds("eval", time.perf_counter() - t0)
    if keep is not None:
        scored = sum(r["counts"])
        keep[key] = {"accuracy": r["correct"] / scored if scored else None, "tokens": int(scored),
                     "flops": 0.0, "read": 0}  # its FLOPs are the test evaluation's, charged above
    return r["loss"]


def reported_loss_flops(state: dict, data, dev_eval_flops: float) -> float:
    """What the final test evaluation will cost, reserved from a FLOP budget like the final dev evaluation: the dev
    evaluation's FLOPs scaled by the two sets' token counts (both are padded alike)."""
    if not data.apart or not dev_eval_flops:
        return 0.0
    dev_tokens = sum(e.n_tokens for e in data.dev) or 1
    return dev_eval_flops * sum(e.n_tokens for e in data.test) / dev_tokens


def split_summary(data) -> dict:
    """What the summary says about where its loss comes from."""
    if data.apart:
        note = (f"loss on {len(data.test)} test examples that no scorer or governor saw; selection and the governor "
                f"read {len(data.dev)} dev examples")
    else:
        note = (f"loss on the {len(data.target)} held-out examples, which selection and the governor also read (too "
                f"few to split into dev and test)")
    return {"dev_size": len(data.dev), "test_size": len(data.test), "loss_on": note}
