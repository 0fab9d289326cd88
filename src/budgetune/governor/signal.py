"""G_t, the marginal gain: how much held-out loss the next FLOPs are expected to remove, from the evaluations so far.

Three layers, each robust to what the one before cannot handle:
- smoothing over evaluation points (an exponential moving average) for the loss the run is at;
- a fitted learning curve L(C) = E + A·C^(−α) (the saturating power law of learning-curve extrapolation, Domhan et
  al. 2015; Kaplan et al. 2020 for the C^(−α) form), least squares by scipy, with the parameter covariance carried to
  every prediction by the delta method, so each gain has a standard deviation;
- when too few points exist for a fit, the smoothed slope over the last evaluations, flagged as such.

Everything is scale-free: FLOPs are measured as shares of the whole budget and gains as shares of the current loss,
so a threshold such as "another 10% of the budget must buy 1% loss" means the same for any model or budget.
Pure functions of their inputs (no randomness), so every process computes the same signal from the same numbers.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np

ALPHA_BOUNDS = (0.01, 4.0)  # α beyond these describes no learning curve seen in practice; it only chases noise


@dataclass(frozen=True)
class CurveFit:
    """L(x) = E + A·x^(−α) with x = FLOPs / scale; cov is the 3×3 covariance of (E, A, α), None when unknown."""

    E: float
    A: float
    alpha: float
    scale: float
    cov: tuple | None
    rmse: float
    n: int

    def predict(self, flops: float) -> float:
        return self.E + self.A * (flops / self.scale) ** (-self.alpha)

    def drop(self, flops: float, extra: float) -> tuple[float, float]:
        """Predicted loss reduction from `flops` to `flops + extra`, and its standard deviation (delta method)."""
        x0, x1 = flops / self.scale, (flops + extra) / self.scale
        p0, p1 = x0 ** (-self.alpha), x1 ** (-self.alpha)
        mean = self.A * (p0 - p1)
        if self.cov is None:
            return mean, math.inf
        grad = np.array([0.0, p0 - p1, self.A * (-math.log(x0) * p0 + math.log(x1) * p1)])
        var = float(grad @ np.asarray(self.cov) @ grad)
        return mean, math.sqrt(max(0.0, var)) if math.isfinite(var) else math.inf

    def slope(self, flops: float) -> float:
        """−dL/dC at `flops`, per FLOP."""
        x = flops / self.scale
        return self.A * self.alpha * x ** (-self.alpha - 1.0) / self.scale


def fit_power_law(flops, losses, scale: float) -> CurveFit | None:
    """Least-squares fit of L = E + A·(C/scale)^(−α) to points with C > 0; None when it cannot be fitted."""
    c = np.asarray(flops, dtype=float)
    y = np.asarray(losses, dtype=float)
    keep = (c > 0) & np.isfinite(y)
    c, y = c[keep], y[keep]
    if len(c) < 3 or scale <= 0:
        return None
    x = c / scale

    def f(x, E, A, alpha):
        return E + A * x ** (-alpha)

    # Bounds keep the curve non-increasing (A ≥ 0) with a floor below every observation: a loss that rises
    # (overfitting) is then fitted as flat, i.e. "more FLOPs buy nothing", which is the honest extrapolation.
    lo, hi = [0.0, 0.0, ALPHA_BOUNDS[0]], [float(y.min()), np.inf, ALPHA_BOUNDS[1]]
    with _one_thread():
        best = _fit_starts(f, x, y, lo, hi)
    if best is None:
        return None
    p, cov, rmse = best
    cov_t = tuple(map(tuple, cov.tolist())) if len(c) > 3 and np.all(np.isfinite(cov)) else None
    return CurveFit(float(p[0]), float(p[1]), float(p[2]), float(scale), cov_t, rmse, len(c))


def _fit_starts(f, x, y, lo, hi):
    from scipy.optimize import curve_fit

    best = None
    for alpha0 in (0.3, 1.0):  # two starts: the landscape in α is flat and has two basins on short curves
        E0 = 0.9 * float(y.min())
        A0 = max(1e-6, (float(y.max()) - E0) * float(x.min()) ** alpha0)
        p0 = [min(E0, hi[0]), A0, alpha0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                p, cov = curve_fit(f, x, y, p0=p0, bounds=(lo, hi), maxfev=2000)
            except (RuntimeError, ValueError):
                continue
        rmse = float(np.sqrt(np.mean((f(x, *p) - y) ** 2)))
        if best is None or rmse < best[2] - 1e-12:
            best = (p, cov, rmse)
    return best


def _one_thread():
    """BLAS threads for a 3-parameter fit only spin: on a loaded machine they made each fit ~10x slower."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


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

    loss: float  # current loss: the fitted value where a fit exists, else the smoothed observation
    smoothed: float  # EMA of the observed held-out losses
    gain_next: float  # predicted relative loss reduction from the next `horizon` share of the budget
    gain_next_sd: float  # its standard deviation (inf: unknown)
    gain_rest: float  # predicted relative loss reduction from all the FLOPs left
    gain_rest_sd: float
    g_per_flop: float  # G_t: relative loss reduction per FLOP at the current point
    horizon_flops: float
    source: str  # "fit", "slope" or "none"
    fit: dict | None = None  # E, A, alpha, scale, rmse, n
    local_gain: float = math.inf  # the next horizon's gain extrapolated linearly from the last evaluations
    local_gain_sd: float = math.inf

    def to_inputs(self) -> dict:
        d = asdict(self)
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def local_trend(flops, losses, extra: float, points: int = 4) -> tuple[float, float]:
    """Loss reduction over `extra` more FLOPs by the straight line through the last `points` evaluations, and its
    standard error (ordinary least squares).

    Under the fitted curve's own assumption (a convex, flattening curve) this linear extrapolation over-states the
    gain, so it can only be the smaller of the two when the curve breaks that assumption, e.g. when the held-out
    loss turns upwards (overfitting), which a monotone power law cannot represent.
    """
    x = np.asarray(flops[-points:], dtype=float)
    y = np.asarray(losses[-points:], dtype=float)
    if len(x) < 3 or np.ptp(x) <= 0:
        return math.inf, math.inf
    xm = x.mean()
    sxx = float(np.sum((x - xm) ** 2))
    slope = float(np.sum((x - xm) * (y - y.mean())) / sxx)
    resid = y - (y.mean() + slope * (x - xm))
    se = math.sqrt(float(np.sum(resid**2)) / (len(x) - 2) / sxx)
    return -slope * extra, se * extra


def estimate(flops, losses, *, total: float, remaining: float, horizon: float = 0.1, beta: float = 0.5,
             min_fit_points: int = 4, local_points: int = 4) -> Signal:
    """The signal at the last of the evaluations (flops[i], losses[i]); `total` is the whole budget in FLOPs.

    `remaining` is what is left of it; the next-horizon gain never looks past the end of the budget.
    """
    c = [float(v) for v in flops]
    y = [float(v) for v in losses]
    if not y:
        raise ValueError("estimate needs at least one evaluation")
    smoothed = ema(y, beta)[-1]
    now = c[-1]
    h = min(horizon * total, max(0.0, remaining))
    fit = fit_power_law(c, y, total) if sum(1 for v in c if v > 0) >= min_fit_points else None
    if fit is not None and now > 0:
        current = fit.predict(now)
        gn, gn_sd = fit.drop(now, h) if h > 0 else (0.0, 0.0)
        gr, gr_sd = fit.drop(now, remaining) if remaining > 0 else (0.0, 0.0)
        trained = [(f, v) for f, v in zip(c, y) if f > 0]
        lg, lg_sd = local_trend([f for f, _ in trained], [v for _, v in trained], h, local_points)
        return Signal(current, smoothed, gn / current, gn_sd / current, gr / current, gr_sd / current,
                      fit.slope(now) / current, h, "fit",
                      {"E": fit.E, "A": fit.A, "alpha": fit.alpha, "scale": fit.scale, "rmse": fit.rmse, "n": fit.n},
                      lg / current, lg_sd / current)
    if len(y) >= 2 and c[-1] > c[0]:
        # Too few points for a curve: the smoothed slope over the evaluations so far. A convex curve only flattens,
        # so extending this slope over the horizon over-states the gain; it cannot make the run stop too early.
        s = ema(y, beta)
        k = max(0, len(s) - 3)
        per_flop = max(0.0, (s[k] - s[-1]) / (c[-1] - c[k])) / smoothed
        return Signal(smoothed, smoothed, per_flop * h, math.inf, per_flop * max(0.0, remaining), math.inf,
                      per_flop, h, "slope")
    return Signal(smoothed, smoothed, math.inf, math.inf, math.inf, math.inf, math.inf, h, "none")
