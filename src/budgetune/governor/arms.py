"""The marginal governor between arms: which arms keep training, and with how many of the FLOPs left.

An arm's value is the loss its curve predicts if it received all the remaining FLOPs; the curve is the same ensemble
of learning-curve families a single run's stop uses (governor/signal.py).
"""

from __future__ import annotations

import math

from .protocol import ArmView, Decision
from .signal import estimate

# Between arms the extrapolation to the budget's end is the whole decision (no paired test confirms it), so it needs
# more degrees of freedom than a single run's stop, which the paired evidence guards.
ARM_MIN_DOF = 3


def allocate(c, arms: list[ArmView], remaining: float, total: float) -> tuple[dict, Decision]:
    """Keep the arms whose predicted final loss could still be the best; hand them the next round's FLOPs.

    An arm's value is the loss its curve predicts if it received all the remaining FLOPs. Arms whose optimistic
    prediction (mean − z·sd) is worse than the best arm's mean are stopped; too short a curve keeps its arm.
    `c` is the marginal governor's Config (horizon, min_dof, z, threshold, round_share).
    """
    active = [a for a in arms if a.active]
    preds = {}
    for a in active:
        offset = a.flops[0]
        xs = [f - offset for f in a.flops]
        sig = estimate(xs, a.losses, total=total, remaining=remaining, horizon=c.horizon,
                       min_dof=max(c.min_dof, ARM_MIN_DOF))
        if sig.source != "fit":
            preds[a.name] = (-math.inf, 0.0, None)
            continue
        final = sig.loss * (1.0 - sig.gain_rest)
        sd = sig.gain_rest_sd * sig.loss
        preds[a.name] = (final, sd if math.isfinite(sd) else math.inf, sig)
    # Arms too short to fit are kept; the others are compared with the best arm that has a prediction.
    known = [a for a in active if math.isfinite(preds[a.name][0])] or active
    best = min(known, key=lambda a: (preds[a.name][0], a.name))
    best_final = preds[best.name][0]
    keep = [a for a in active if not math.isfinite(preds[a.name][0])
            or preds[a.name][0] - c.z * preds[a.name][1] <= best_final]
    inputs = {"remaining": remaining, "predicted_final": {k: _finite(v[0]) for k, v in preds.items()},
              "predicted_sd": {k: _finite(v[1]) for k, v in preds.items()}, "kept": [a.name for a in keep]}
    sig = preds[best.name][2]
    if sig is not None and all(math.isfinite(preds[a.name][0]) for a in keep):  # no arm left unmeasured
        gain = sig.gain_rest + c.z * (sig.gain_rest_sd if math.isfinite(sig.gain_rest_sd) else 0.0)
        price = c.threshold * (remaining / (c.horizon * total)) if total > 0 else 0.0
        inputs.update({"best_gain_rest": gain, "price_rest": price})
        if gain < price:
            return ({a.name: 0.0 for a in active},
                    Decision("stop", f"the best arm {best.name} is predicted to buy {100 * gain:.2f}% with all "
                                     f"{remaining:.3g} FLOPs left, below the price {100 * price:.2f}%; "
                                     f"they are left for inference", inputs))
    share = remaining if len(keep) == 1 else c.round_share * remaining / len(keep)
    amounts = {a.name: (share if a in keep else 0.0) for a in active}
    stopped = [a.name for a in active if a not in keep]
    action = "reallocate" if stopped else "continue"
    best_txt = f"{best_final:.4f}" if math.isfinite(best_final) else "(too few evaluations to fit yet)"
    reason = (f"stop {', '.join(stopped)}: their best predicted loss cannot beat {best.name}'s "
              f"{best_txt}; " if stopped else "") + f"{len(keep)} arm(s) get {share:.3g} FLOPs each"
    return amounts, Decision(action, reason, inputs)


def _finite(v):
    return float(v) if v is not None and math.isfinite(v) else None
