"""Learning curves that fit fine-tuning: several families, weighted by how well each predicted what it had not seen.

In the manner of Domhan et al. 2015 (an ensemble of parametric learning-curve families), on x = FLOPs since the
window's start as a share of the whole budget, with the evaluation before training as the curve's origin (x = 0, so
every family is finite there):

    exp        E + A·exp(−x/τ)                                   3 parameters
    pow3       E + A·(1 + x/s)^(−α)      (Domhan's pow3, shifted)  4
    logpow     E + A / (1 + (x/s)^α)     (Domhan's log power)      4
    two-phase  E + A·exp(−x/τ) + B·(1 + x/0.1)^(−α)  (a fast drop, then a slow power-law decline)   5

Each is fitted by variable projection: for each point of a fixed grid over its nonlinear parameters, the linear
ones come from least squares with A, B ≥ 0 ( a curve never rises, so an overfitting loss is fitted as
flat), and the best grid point wins. No optimiser starts, no failures to converge, deterministic.

Weights come from one-step-ahead (prequential) errors: each family, fitted on the first t points, predicts point
t + 1; its weight is inversely proportional to its mean squared error. The predictive standard deviation holds
the model error measured the same way (the ensemble's past one-step errors, shrunk towards the measured
evaluation noise while few exist) plus the spread between the families.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

TAUS = np.geomspace(0.005, 3.0, 12)
SCALES = np.geomspace(0.003, 1.0, 6)
ALPHAS = np.geomspace(0.15, 4.0, 6)
FAST_TAUS = np.geomspace(0.003, 0.1, 4)
SLOW_ALPHAS = np.geomspace(0.1, 2.0, 5)


def _exp(x, tau):
    return [np.exp(-x / tau)]


def _pow3(x, s, a):
    return [(1.0 + x / s) ** (-a)]


def _logpow(x, s, a):
    return [1.0 / (1.0 + (x / s) ** a)]


def _two_phase(x, tau, a):
    return [np.exp(-x / tau), (1.0 + x / 0.1) ** (-a)]


FAMILIES = {  # name: (basis, grid of nonlinear parameters, number of parameters)
    "exp": (_exp, [(t,) for t in TAUS], 3),
    "pow3": (_pow3, [(s, a) for s in SCALES for a in ALPHAS], 4),
    "logpow": (_logpow, [(s, a) for s in SCALES for a in ALPHAS], 4),
    "two-phase": (_two_phase, [(t, a) for t in FAST_TAUS for a in SLOW_ALPHAS], 5),
}


@dataclass(frozen=True)
class FamilyFit:
    name: str
    theta: tuple  # nonlinear parameters
    coef: tuple  # E, A[, B]
    rmse: float
    n: int
    params: int

    def predict(self, x) -> np.ndarray:
        basis, _, _ = FAMILIES[self.name]
        x = np.asarray(x, dtype=float)
        cols = [np.ones_like(x)] + basis(x, *self.theta)
        return sum(c * b for c, b in zip(self.coef, cols))

    def to_dict(self) -> dict:
        return {"family": self.name, "theta": [float(v) for v in self.theta], "coef": [float(v) for v in self.coef],
                "rmse": self.rmse, "n": self.n, "params": self.params}


def _ls_two(b: np.ndarray, y: np.ndarray):
    """Least squares of y on [1, b_g] for every grid row g at once, with A ≥ 0 (else the flat fit E = mean)."""
    bm, ym = b.mean(axis=1), y.mean()
    bc = b - bm[:, None]
    var = np.einsum("gi,gi->g", bc, bc)
    A = np.where(var > 1e-18, np.einsum("gi,i->g", bc, y - ym) / np.maximum(var, 1e-18), 0.0)
    A = np.maximum(A, 0.0)
    E = ym - A * bm
    pred = E[:, None] + A[:, None] * b
    return np.stack([E, A], axis=1), np.sum((pred - y) ** 2, axis=1)


def _ls_three(b1: np.ndarray, b2: np.ndarray, y: np.ndarray):
    """Least squares of y on [1, b1_g, b2_g] with A, B ≥ 0: unconstrained where both come out non-negative, else
    the better of the two-column fits (the constrained optimum then lies on that face)."""
    ones = np.ones_like(b1)
    M = np.stack([ones, b1, b2], axis=2)  # (G, n, 3)
    MtM = np.einsum("gni,gnj->gij", M, M) + 1e-12 * np.eye(3)
    Mty = np.einsum("gni,n->gi", M, y)
    coef = np.linalg.solve(MtM, Mty[..., None])[..., 0]
    sse = np.sum((np.einsum("gni,gi->gn", M, coef) - y) ** 2, axis=1)
    c1, s1 = _ls_two(b1, y)
    c2, s2 = _ls_two(b2, y)
    bad = (coef[:, 1] < 0) | (coef[:, 2] < 0)
    use1 = bad & (s1 <= s2)
    use2 = bad & (s1 > s2)
    coef[use1] = np.stack([c1[use1, 0], c1[use1, 1], np.zeros(use1.sum())], axis=1)
    coef[use2] = np.stack([c2[use2, 0], np.zeros(use2.sum()), c2[use2, 1]], axis=1)
    sse = np.where(use1, s1, np.where(use2, s2, sse))
    return coef, sse


def fit_family(name: str, x, y) -> FamilyFit | None:
    basis, grid, params = FAMILIES[name]
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < params:
        return None
    cols = [basis(x, *theta) for theta in grid]
    if len(cols[0]) == 1:
        coef, sse = _ls_two(np.array([c[0] for c in cols]), y)
    else:
        coef, sse = _ls_three(np.array([c[0] for c in cols]), np.array([c[1] for c in cols]), y)
    g = int(np.argmin(sse))
    return FamilyFit(name, tuple(float(v) for v in grid[g]), tuple(float(v) for v in coef[g]),
                     float(math.sqrt(sse[g] / len(x))), len(x), params)


@dataclass(frozen=True)
class Ensemble:
    fits: dict  # family -> FamilyFit on all points
    weights: dict  # family -> weight (sums to 1)
    level_rmse: float  # shrunk RMS of the ensemble's one-step-ahead level errors
    rate_rmse: float  # shrunk RMS of its one-step-ahead gain errors per unit of x
    n_errors: int  # one-step-ahead errors behind the weights
    dof: int  # points minus parameters of the least constrained family with weight
    x_last: float

    def predict(self, x) -> float:
        return float(sum(w * float(self.fits[f].predict(np.array([x]))[0]) for f, w in self.weights.items()))

    def gain(self, x0: float, x1: float) -> tuple[float, float]:
        """Predicted loss reduction from x0 to x1 (absolute), and its predictive standard deviation."""
        per = {f: float(self.fits[f].predict(np.array([x0]))[0] - self.fits[f].predict(np.array([x1]))[0])
               for f in self.weights}
        mean = sum(self.weights[f] * g for f, g in per.items())
        spread = sum(self.weights[f] * (g - mean) ** 2 for f, g in per.items())
        return mean, math.sqrt(spread + (self.rate_rmse * (x1 - x0)) ** 2)

    def next_level(self, x: float) -> tuple[float, float]:
        """Predicted loss at x (a later evaluation) and its predictive sd (model error, noise and family spread)."""
        per = {f: float(self.fits[f].predict(np.array([x]))[0]) for f in self.weights}
        mean = sum(self.weights[f] * v for f, v in per.items())
        spread = sum(self.weights[f] * (v - mean) ** 2 for f, v in per.items())
        return mean, math.sqrt(spread + self.level_rmse**2)

    def to_dict(self) -> dict:
        return {"weights": dict(self.weights), "level_rmse": self.level_rmse, "rate_rmse": self.rate_rmse,
                "n_errors": self.n_errors, "dof": self.dof,
                "fits": {f: self.fits[f].to_dict() for f in self.weights}}


def fewest_points(min_dof: int = 1) -> int:
    """The fewest points (the origin included) on which fit_ensemble returns an estimate: its smallest family needs
    one one-step-ahead error (a fit on `params` + 1 points predicting the next) and `min_dof` degrees of freedom on
    the whole curve. An evaluation plan with fewer can never lead to a decision, so its evaluations would be waste."""
    params = min(f[2] for f in FAMILIES.values())
    return params + max(2, min_dof)


def fit_ensemble(x, y, *, noise: float = 0.0, min_dof: int = 2, prior_weight: float = 0.0) -> Ensemble | None:
    """The ensemble over (x, y) with x[0] = 0 the origin; None when no family has `min_dof` degrees of freedom and
    at least one one-step-ahead error to be weighted by.

    noise: the measured sd of one evaluation-to-evaluation gain (absolute loss, from the paired test). The one-step
    errors against observed gains hold that noise as well as the model's error; the model error is what is left of
    their mean square once the noise is taken out, and the fit's own uncertainty adds noise²·p/n. With
    `prior_weight` pseudo-errors of 0 the model error is shrunk towards 0 while few errors exist; the default is no
    shrinkage: with 2 pseudo-errors the ±1 sd band of the next evaluation held 63% of the later observations on the
    recorded suite's tuning curves (1×, 4× seed 0), without it 67% (aim 68%; bench/governor.py's calibration).
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if not math.isfinite(noise):
        # An infinite noise (a paired test on one example has no standard error) leaves nothing to weigh the
        # families by: every weight would be 1/inf. No estimate is the honest answer; the governor continues.
        return None
    n = len(x)
    sq_level: dict[str, list] = {f: [] for f in FAMILIES}
    sq_rate: dict[str, list] = {f: [] for f in FAMILIES}
    for t in range(2, n):  # fit on the first t points, predict point t
        for f, (_, _, params) in FAMILIES.items():
            if t - params < 1:  # a one-step prediction needs at least one degree of freedom
                continue
            fit = fit_family(f, x[:t], y[:t])
            if fit is None:
                continue
            p_prev, p_next = fit.predict(x[t - 1: t + 1])
            sq_level[f].append(float(y[t] - p_next) ** 2)
            dx = max(1e-12, x[t] - x[t - 1])
            sq_rate[f].append(((y[t - 1] - y[t]) - (p_prev - p_next)) ** 2 / dx**2)
    usable = [f for f in FAMILIES if sq_level[f] and n - FAMILIES[f][2] >= min_dof]
    if not usable:
        return None
    # Families are compared on the same steps: the most recent ones that every usable family predicted.
    k = min(len(sq_level[f]) for f in usable)
    mse = {f: float(np.mean(sq_level[f][-k:])) for f in usable}
    fits = {f: fit_family(f, x, y) for f in usable}
    # A family whose extrapolation overflowed on a past step (an infinite error) or that cannot fit the whole curve
    # carries no weight; without this a single overflow made every weight 0/0.
    usable = [f for f in usable if math.isfinite(mse[f]) and fits[f] is not None]
    if not usable:
        return None
    fits = {f: fits[f] for f in usable}
    floor = max(1e-12, (noise**2) * 1e-3)
    raw = {f: 1.0 / (mse[f] + floor) for f in usable}
    total = sum(raw.values())
    weights = {f: v / total for f, v in raw.items()}
    p = sum(weights[f] * FAMILIES[f][2] for f in usable)
    dx = float(np.median(np.diff(x[1:]))) if n > 2 else float(x[-1] - x[0]) or 1.0
    point = noise / math.sqrt(2.0)  # one evaluation's share of a paired gain's noise
    ens_level = sum(weights[f] * mse[f] for f in usable)
    ens_rate = sum(weights[f] * float(np.mean(sq_rate[f][-k:])) for f in usable)
    model_level = k * max(0.0, ens_level - point**2 * (1 + p / n)) / (k + prior_weight)
    model_rate = k * max(0.0, ens_rate - (noise / dx) ** 2) / (k + prior_weight)
    level = math.sqrt(model_level + point**2 * (1 + p / n))
    rate = math.sqrt(model_rate + (noise / dx) ** 2 * p / n)
    dof = min(n - FAMILIES[f][2] for f in usable)
    return Ensemble(fits, weights, level, rate, k, dof, float(x[-1]))
