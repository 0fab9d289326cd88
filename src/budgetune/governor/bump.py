"""Waiting out a bump: a stop proposed while the held-out loss stands well above its best so far.

On the recorded fine-tuning curves the held-out loss at a constant learning rate moves up and down by several
percent between evaluations (training noise the paired test cannot see: the examples are the same, the model
moved). A stop at the top of such a bump keeps it: the decay on stop starts from the bump, and the worst governed
runs of the suite (docs/benchmarks/governor_v1.md) were stops made on a loss that had risen for two evaluations. A
real rise (over-fitting) does not come back, so the wait is bounded.
"""

from __future__ import annotations


def bump_hold(losses: list[float], tolerance: float | None, waited: int, max_wait: int) -> dict | None:
    """Whether a proposed stop waits: `losses` are the window's losses on the latest evaluation's examples, the
    first one before training. It waits when the latest stands more than `tolerance` (a share) above the lowest
    evaluation since training began and fewer than `max_wait` evaluations have waited in a row; None: stop."""
    if tolerance is None or waited >= max_wait or len(losses) < 3:
        return None
    best = min(losses[1:-1])
    if best <= 0:
        return None
    rise = losses[-1] / best - 1.0
    if rise <= tolerance:
        return None
    return {"bump": rise, "bump_best": best,
            "evidence": f"the loss stands {100 * rise:.1f}% above its best so far ({best:.4f}): a stop now would keep "
                        f"the bump, so it waits ({waited + 1} of at most {max_wait} evaluations)"}
