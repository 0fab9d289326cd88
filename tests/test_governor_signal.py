"""The signal: a fitted learning curve with uncertainty, scale-free, robust to evaluation noise."""

import math

import numpy as np
import pytest

from budgetune.governor.signal import ema, estimate, fit_power_law


def curve(E, A, alpha, xs, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    return [E + A * x ** (-alpha) + rng.normal(0, noise) for x in xs]


def test_fit_recovers_a_known_power_law():
    xs = np.linspace(0.05, 0.6, 12)
    fit = fit_power_law(xs * 1e12, curve(1.7, 0.3, 0.6, xs), scale=1e12)
    assert fit is not None
    assert fit.E == pytest.approx(1.7, rel=1e-3)
    assert fit.alpha == pytest.approx(0.6, rel=1e-2)
    assert fit.predict(0.9e12) == pytest.approx(1.7 + 0.3 * 0.9 ** -0.6, rel=1e-4)


def test_uncertainty_shrinks_with_more_evaluations():
    sds = []
    for n in (6, 24):
        xs = np.linspace(0.05, 0.5, n)
        sig = estimate(xs, curve(1.5, 0.4, 0.5, xs, noise=0.01), total=1.0, remaining=0.5)
        assert sig.source == "fit"
        sds.append(sig.gain_rest_sd)
    assert sds[1] < sds[0]


def test_signal_is_scale_free():
    xs = np.linspace(0.05, 0.5, 10)
    ys = curve(1.5, 0.4, 0.5, xs, noise=0.005)
    a = estimate(xs, ys, total=1.0, remaining=0.5)
    b = estimate(xs * 3e13, [3 * y for y in ys], total=3e13, remaining=1.5e13)
    assert b.gain_next == pytest.approx(a.gain_next, rel=1e-4)
    assert b.gain_rest == pytest.approx(a.gain_rest, rel=1e-4)


def test_rising_loss_predicts_no_gain():
    xs = np.linspace(0.05, 0.5, 10)
    ys = [2.0 + 0.5 * x for x in xs]  # overfitting: the held-out loss climbs
    sig = estimate(xs, ys, total=1.0, remaining=0.5)
    assert sig.gain_rest < 1e-3


def test_steeper_curve_predicts_more_gain_and_gain_never_passes_the_budget():
    xs = np.linspace(0.05, 0.5, 10)
    flat = estimate(xs, curve(1.5, 0.05, 0.5, xs), total=1.0, remaining=0.5)
    steep = estimate(xs, curve(1.5, 0.5, 0.5, xs), total=1.0, remaining=0.5)
    assert steep.gain_next > flat.gain_next > 0
    end = estimate(xs, curve(1.5, 0.5, 0.5, xs), total=1.0, remaining=0.02)
    assert end.horizon_flops == pytest.approx(0.02)


def test_too_few_points_fall_back_to_the_smoothed_slope():
    sig = estimate([0.0, 0.1, 0.2], [3.0, 2.5, 2.3], total=1.0, remaining=0.8)
    assert sig.source == "slope" and sig.gain_next > 0 and math.isinf(sig.gain_next_sd)
    assert estimate([0.0], [3.0], total=1.0, remaining=1.0).source == "none"


def test_ema_is_bias_corrected():
    assert ema([2.0, 2.0, 2.0], 0.9) == pytest.approx([2.0, 2.0, 2.0])
