"""The trend bound: what the rest of the budget could still buy if the recent decline went on, at its optimistic edge.

A learning curve that is falling and convex (each share of the budget buys less than the one before) lies above the
straight line through its recent slope, so extrapolating that slope over the rest of the budget over-states what
the rest will buy. A stop that requires even this over-statement, at the optimistic edge of the slope's confidence
band, to fall below the price of the rest cannot be triggered by a slow steady decline that the curve families read
as saturation (the trap of a fast early drop followed by a slow one).

The slope is an ordinary least-squares fit of loss against budget share over the trailing `window` share of the
budget spent so far (at least 3 evaluations). Its standard error comes from the scatter of the evaluations around
that line: the measurement noise of a small evaluation sample and the training noise (a model that is worse on
every example for one evaluation, which a paired test cannot see) both show there. While few evaluations exist, the
scatter is pooled with the measured evaluation noise (the paired standard errors, governor/noise.py) as a prior worth
`prior_dof` degrees of freedom; the band uses Student's t with the pooled degrees of freedom.

Everything is relative to the current loss and the whole budget, like the signal (governor/signal.py). Pure
functions of their inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Trend:
    slope: float  # loss per unit of budget share (negative while falling), absolute
    slope_se: float  # its standard error (inf: too few evaluations)
    points: int  # evaluations in the window
    dof: float  # degrees of freedom behind slope_se (residual plus prior)
    level: float  # the line's value at the last evaluation (absolute loss)
    rest_gain: float  # optimistic relative loss reduction of the rest of the budget (inf: unknown)

    def to_inputs(self) -> dict:
        return {"trend_slope": _finite(self.slope), "trend_slope_se": _finite(self.slope_se),
                "trend_points": self.points, "trend_dof": self.dof, "trend_rest_gain": _finite(self.rest_gain)}


def trend_bound(x, y, *, rest: float, window: float = 0.5, z: float = 1.0, noise: float = 0.0,
                prior_dof: float = 2.0, min_points: int = 3) -> Trend:
    """The trend over the trailing `window` share of x (budget shares spent, x[-1] the latest), extrapolated over
    `rest` (the budget share left): the optimistic relative gain max(0, −slope + t·se)·rest / level.

    noise: sd of one evaluation's loss from measurement alone (absolute), the prior for the scatter; 0: none.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < min_points:
        return Trend(math.nan, math.inf, len(x), 0.0, float(y[-1]) if len(y) else math.nan, math.inf)
    start = x[-1] * (1.0 - window)
    keep = np.nonzero(x >= start - 1e-12)[0]
    if len(keep) < min_points:
        keep = np.arange(len(x) - min_points, len(x))
    xs, ys = x[keep], y[keep]
    m = len(xs)
    xc = xs - xs.mean()
    sxx = float(xc @ xc)
    if sxx <= 0:
        return Trend(math.nan, math.inf, m, 0.0, float(ys[-1]), math.inf)
    slope = float(xc @ (ys - ys.mean())) / sxx
    fitted = ys.mean() + slope * xc
    ssr = float(np.sum((ys - fitted) ** 2))
    resid_dof = m - 2
    prior = prior_dof if noise > 0 else 0.0
    dof = resid_dof + prior
    if dof <= 0:
        return Trend(slope, math.inf, m, 0.0, float(fitted[-1]), math.inf)
    s2 = (ssr + prior * noise**2) / dof
    se = math.sqrt(s2 / sxx)
    t = float(stats.t.ppf(stats.norm.cdf(z), dof)) if z > 0 else 0.0
    level = float(fitted[-1]) if fitted[-1] > 0 else float(ys[-1])
    gain = max(0.0, -slope + t * se) * max(0.0, rest) / level if level > 0 else math.inf
    return Trend(slope, se, m, float(dof), level, gain)


def rest_price(threshold: float, horizon: float, spent: float, price_rise: float) -> float:
    """The price of the whole rest of the budget: the per-horizon price threshold·(1 + price_rise·u) at budget share
    u, integrated from `spent` to 1 and divided by the horizon (a share of the budget at the price of its moment)."""
    f = min(max(spent, 0.0), 1.0)
    return threshold / horizon * ((1.0 - f) + price_rise * (1.0 - f * f) / 2.0)


def rest_terms(c, x, losses, sig, *, rest: float, spent: float, noise: float, curve_z: float, inputs: dict):
    """The marginal governor's rule "rest" at one evaluation (c: its Config; x: budget shares since the window's
    origin; sig: its Signal; noise: the median relative paired standard error). Returns the optimistic gain of the
    rest and its price and resume price, all per `horizon` of the budget, and the reason's text; fills `inputs`."""
    price_rest = rest_price(c.threshold, c.horizon, spent, c.price_rise)
    if c.max_loss is not None:
        price_rest = min(price_rest, c.max_loss)
    curve_rest = sig.gain_rest + curve_z * (sig.gain_rest_sd if math.isfinite(sig.gain_rest_sd) else 0.0)
    gain = curve_rest
    one_more = math.nan  # what one more standard error adds to the trend bound: how close a stop is
    if c.trend_z is not None:
        # a paired gain's noise holds two evaluations' measurement noise: one evaluation's is 1/√2 of it
        kw = {"rest": rest, "window": c.trend_window, "noise": noise * losses[-1] / math.sqrt(2.0)}
        trend = trend_bound(x, losses, z=c.trend_z, **kw)
        inputs.update(trend.to_inputs())
        gain = max(gain, trend.rest_gain)
        one_more = trend_bound(x, losses, z=c.trend_z + 1.0, **kw).rest_gain - trend.rest_gain
    per = c.horizon / rest if rest > 0 else 0.0  # per horizon of the budget
    resume = price_rest * per * c.resume_threshold / c.threshold
    inputs.update({"rest_gain": _finite(gain), "rest_price": price_rest, "price": price_rest * per,
                   "resume_price": resume, "rest_gain_se": _finite(max(0.0, one_more)) if math.isfinite(one_more) else None})
    if c.trend_z is None:
        trend_txt = ""
    elif inputs.get("trend_rest_gain") is None:
        trend_txt = ", its recent trend unknown"
    else:
        trend_txt = f", its recent trend at most {100 * inputs['trend_rest_gain']:.2f}%"
    text = (f"the rest of the budget ({rest:.0%}) is predicted to buy {100 * sig.gain_rest:.2f}% ± "
            f"{100 * sig.gain_rest_sd:.2f}% lower loss{trend_txt} (price of the rest {100 * price_rest:.2f}%)")
    return gain * per, price_rest * per, resume, text


def _finite(v):
    return float(v) if v is not None and math.isfinite(v) else None
