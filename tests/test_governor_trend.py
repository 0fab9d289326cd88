"""The trend bound and the price of the rest of the budget (governor/trend.py), on curves whose answer is known by
construction, and the rule "rest" of the marginal governor on the curve that fooled the curve families: a fast
drop followed by a slow steady decline."""

import math

import numpy as np
import pytest
from known_curves import (
    B,
    drive,
    evaluations,
    flat,
    slow_after_fast,
    slow_after_fast_for,
)

from budgetune.errors import UserError
from budgetune.governor import make
from budgetune.governor.trend import rest_price, trend_bound


def test_a_straight_line_gives_its_own_slope_and_the_rest_it_buys():
    # y = 3 − 0.5·x on x = 0, 0.1, ..., 0.6: slope −0.5, no scatter; the rest (0.4) buys 0.5·0.4 = 0.2 from the
    # level 3 − 0.3 = 2.7, i.e. 0.2 / 2.7 of the loss, whatever z (the scatter is 0 and no noise prior is given)
    x = np.linspace(0.0, 0.6, 7)
    t = trend_bound(x, 3.0 - 0.5 * x, rest=0.4, window=0.5, z=1.0)
    assert t.slope == pytest.approx(-0.5)
    assert t.slope_se == pytest.approx(0.0, abs=1e-9)
    assert t.points == 4  # x ≥ 0.3: 0.3, 0.4, 0.5, 0.6
    assert t.level == pytest.approx(2.7)
    assert t.rest_gain == pytest.approx(0.2 / 2.7)


def test_the_window_and_the_band_by_hand():
    # points (0, 1), (1, 0), (2, 1) after an ignored early one: slope 0, residuals 1/3, −2/3, 1/3 → SSR 2/3, one
    # residual degree of freedom, Sxx 2: se = sqrt((2/3)/1/2) = sqrt(1/3); z = 0 gives no band, so no gain
    x = np.array([-10.0, 0.0, 1.0, 2.0]) + 10.0
    y = np.array([9.0, 1.0, 0.0, 1.0])
    t0 = trend_bound(x, y, rest=1.0, window=0.2, z=0.0)  # window: x ≥ 9.6 → the last three points
    assert t0.points == 3 and t0.slope == pytest.approx(0.0, abs=1e-12)
    assert t0.slope_se == pytest.approx(math.sqrt(1 / 3))
    assert t0.rest_gain == 0.0
    # z = 1 with 1 degree of freedom: Student's t at Φ(1) = 0.8413 is 1.8373 (tables); level = mean 2/3
    t1 = trend_bound(x, y, rest=1.0, window=0.2, z=1.0)
    assert t1.rest_gain == pytest.approx(1.8373 * math.sqrt(1 / 3) / (2 / 3), rel=1e-3)


def test_a_convex_falling_curve_is_never_under_stated():
    # for a convex falling curve the line through the recent slope lies below the curve ahead, so the bound (even
    # at z = 0, noise-free) is at least what the rest really buys
    f = lambda x: 2.0 + np.exp(-x / 0.3)
    for now in (0.3, 0.5, 0.7):
        x = np.linspace(0.0, now, 8)
        t = trend_bound(x, f(x), rest=1.0 - now, window=0.5, z=0.0)
        truth = (f(now) - f(1.0)) / f(now)
        assert t.rest_gain >= truth


def test_the_measured_noise_widens_the_band_of_a_short_window():
    x = np.array([0.0, 0.1, 0.2, 0.3])
    y = np.array([3.0, 2.5, 2.5, 2.5])  # flat over the window, no scatter
    quiet = trend_bound(x, y, rest=0.7, window=0.4, z=1.0)
    noisy = trend_bound(x, y, rest=0.7, window=0.4, z=1.0, noise=0.05)
    assert quiet.rest_gain == 0.0 and noisy.rest_gain > 0.0


def test_rest_price_by_hand():
    # threshold 1% per 10%, rising to 2% at the end (price_rise 1), from half-way: 0.1·(0.5 + (1 − 0.25)/2) = 0.0875
    assert rest_price(0.01, 0.1, 0.5, 1.0) == pytest.approx(0.0875)
    assert rest_price(0.01, 0.1, 0.5, 0.0) == pytest.approx(0.05)
    assert rest_price(0.01, 0.1, 1.0, 1.0) == pytest.approx(0.0)


REST = {"rule": "rest", "threshold": 0.005, "trend_z": 1.0}


@pytest.mark.parametrize("options", [{}, REST], ids=["defaults", "trend_z=1"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_slow_steady_decline_after_a_fast_drop_is_not_stopped(seed, options):
    # a decline that buys 2.5 times the governor's own price to the end (the price is the threshold's)
    governor = make("marginal", options)
    curve = slow_after_fast_for(governor.config.threshold, price_rise=governor.config.price_rise)
    at, decisions = drive(governor, evaluations(curve, seed=seed))
    assert at is None, decisions[-1].reason
    # ... nor when every evaluation also carries 2% of training noise on 6 examples
    at, decisions = drive(make("marginal", options), evaluations(curve, examples=6, noise=0.03,
                                                                 common=0.02, seed=seed))
    assert at is None, decisions[-1].reason


def test_the_rule_of_last_session_fell_into_that_trap():
    # rule "next" at last session's threshold stops the same curve: what the trend bound is for
    at, _ = drive(make("marginal", {"rule": "next", "threshold": 0.02, "confirm_by": "paired", "confirm": 2,
                                    "eval_spacing": 1.5}), evaluations(slow_after_fast, seed=0))
    assert at is not None


@pytest.mark.parametrize("options", [{}, REST], ids=["defaults", "trend_z=1"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_rest_rule_stops_a_flat_curve_and_says_why(seed, options):
    evals = evaluations(flat, seed=seed)
    at, decisions = drive(make("marginal", options), evals)
    assert at is not None and evals[at]["flops"] < 0.8 * B
    inputs = decisions[at].inputs
    assert inputs["rest_gain"] < inputs["rest_price"]
    assert inputs["trend_rest_gain"] is not None and inputs["trend_rest_gain"] < inputs["rest_price"]
    assert "rest of the budget" in decisions[at].reason


def test_max_loss_caps_the_price_of_the_rest():
    evals = evaluations(flat, seed=0)
    _, decisions = drive(make("marginal", {**REST, "threshold": 0.05, "max_loss": 0.01}), evals)
    priced = [d.inputs["rest_price"] for d in decisions if "rest_price" in d.inputs]
    assert priced and max(priced) == pytest.approx(0.01)


def test_bad_rule_options_give_one_line():
    with pytest.raises(UserError, match="rule"):
        make("marginal", {"rule": "later"})
    with pytest.raises(UserError, match="max_loss"):
        make("marginal", {"max_loss": 1.5})


def test_the_plan_line_states_the_rule_and_its_price():
    assert make("marginal", {}).rule_text() == (
        "stops when the rest of the budget is predicted (by the curve families and the recent trend) to buy less "
        "than 0.5% lower held-out loss per 10% of the budget it would use")
    assert make("marginal", {"max_loss": 0.02}).rule_text().endswith("it would use (or less than 2% in all)")
    assert "next 10% of the budget" in make("marginal", {"rule": "next", "threshold": 0.02}).rule_text()


def test_a_time_limit_further_spent_than_the_flop_budget_sets_the_horizon():
    from budgetune.budget import Budget, Ledger
    from budgetune.governor.marginal import budget_axis

    ledger = Ledger()
    ledger.flops["train"] = 2e12
    ledger.seconds = 300.0
    # FLOPs 20% spent, seconds 50%: at 2e12 FLOPs per 300 s the 600 s end the run at 4e12, with 2e12 left
    assert budget_axis(Budget(max_flops=1e13, max_seconds=600.0), ledger, 2e12) == (4e12, 2e12)
    # seconds 10% spent: the FLOP budget ends the run first
    assert budget_axis(Budget(max_flops=1e13, max_seconds=3000.0), ledger, 2e12) == (1e13, 8e12)


def test_the_known_slow_decline_is_scaled_to_the_price_it_must_beat():
    # at threshold 0.005 it is slow_after_fast itself (a slope of 0.5 over the budget)
    xs = np.linspace(0.0, 1.0, 11)
    assert np.allclose(slow_after_fast_for(0.005)(xs), [slow_after_fast(x) for x in xs])
    # at 0.02 every 10% of the budget buys at least 2.5 times the rising price 0.02 · (1 + spent)
    curve = slow_after_fast_for(0.02)
    for x in np.linspace(0.05, 0.9, 18):
        assert (curve(x) - curve(x + 0.1)) / curve(x) >= 2.5 * 0.02 * (1 + x) - 1e-12
