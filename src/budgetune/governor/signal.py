"""G_t, the marginal gain: how much held-out loss the next FLOPs are expected to remove, from the evaluations so far.

The curve is an ensemble of learning-curve families (governor/curves.py) fitted from the evaluation before training
(the origin), weighted by their one-step-ahead errors; its predictive sd holds the model error. The measured noise
(governor/noise.py: paired standard errors on the same evaluation examples) is the prior for that error.

Everything is scale-free: FLOPs are measured as shares of the whole budget and gains as shares of the current loss,
so a threshold such as "another 10% of the budget must buy 1% loss" means the same for any model or budget.
Pure functions of their inputs (no randomness), so every process computes the same signal from the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .curves import fit_ensemble


def ema(values, beta: float) -> list[float]:
    """Bias-corrected exponential moving average (Kingma & Ba 2015's correction), beta = weight of the past."""
    out, m = [], 0.0
    for i, v in enumerate(values, 1):
        m = beta * m + (1.0 - beta) * float(v)
        out.append(m / (1.0 - beta**i))
    return out


@dataclass(frozen=True)
class Signal:
    """What the evaluations so far say about the next FLOPs. Gains are shares of `loss` (scale-free)."""

    loss: float  # current loss: the ensemble's value where a fit exists, else the last observation
    gain_next: float  # predicted relative loss reduction from the next `horizon` share of the budget
    gain_next_sd: float  # its predictive standard deviation (model error + family spread; inf: unknown)
    gain_rest: float  # predicted relative loss reduction from all the FLOPs left
    gain_rest_sd: float
    g_per_flop: float  # G_t: relative loss reduction per FLOP at the current point
    horizon_flops: float
    source: str  # "fit" or "none"
    dof: int = 0  # degrees of freedom of the least constrained family in the ensemble
    n_errors: int = 0  # one-step-ahead errors behind the weights
    noise: float = 0.0  # measured relative sd of one evaluation-to-evaluation gain
    fit: dict | None = None  # the ensemble: weights, errors, each family's parameters

    def to_inputs(self) -> dict:
        d = asdict(self)
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def estimate(flops, losses, *, total: float, remaining: float, horizon: float = 0.1, noise: float = 0.0,
             min_dof: int = 2) -> Signal:
    """The signal at the last of the evaluations (flops[i], losses[i]); flops[0] is the curve's origin (the
    evaluation before training or at the window's start) and `total` the whole budget in FLOPs.

    noise: the measured sd of one evaluation-to-evaluation gain, relative to the loss (0: unknown).
    `remaining` is what is left of the budget; the next-horizon gain never looks past its end.
    """
    c = [float(v) for v in flops]
    y = [float(v) for v in losses]
    if not y:
        raise ValueError("estimate needs at least one evaluation")
    h = min(horizon * total, max(0.0, remaining))
    x = [(v - c[0]) / total for v in c]
    ens = fit_ensemble(x, y, noise=noise * y[-1], min_dof=min_dof) if len(y) >= 3 and total > 0 else None
    if ens is None:
        return Signal(y[-1], math.inf, math.inf, math.inf, math.inf, math.inf, h, "none", noise=noise)
    now = x[-1]
    current = ens.predict(now)
    if current <= 0:
        current = y[-1]
    gn, gn_sd = ens.gain(now, now + h / total) if h > 0 else (0.0, 0.0)
    rest = max(0.0, remaining) / total
    gr, gr_sd = ens.gain(now, now + rest) if rest > 0 else (0.0, 0.0)
    eps = 1e-4
    slope = ens.gain(now, now + eps)[0] / (eps * total)
    return Signal(current, gn / current, gn_sd / current, gr / current, gr_sd / current, slope / current, h, "fit",
                  ens.dof, ens.n_errors, noise, ens.to_dict())
