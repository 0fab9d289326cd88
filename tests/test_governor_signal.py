"""The signal's parts on inputs whose answer is known: paired standard errors by hand, curve families recovered,
uncertainty that reflects measured noise."""

import math

import numpy as np
import pytest

from budgetune.governor import noise
from budgetune.governor.curves import FAMILIES, fit_ensemble, fit_family
from budgetune.governor.signal import ema, estimate


def test_paired_gain_and_its_standard_error_by_hand():
    a = {"eval_sums": [4.0, 6.0, 10.0], "eval_counts": [2, 3, 5]}
    b = {"eval_sums": [3.0, 6.0, 8.0], "eval_counts": [2, 3, 5]}
    gain, se, base = noise.paired_gain(a, b)
    # D = (1 + 0 + 2) / 10 = 0.3; residuals d_i − D·n_i = 0.4, −0.9, 0.5; se = sqrt(3/2 · 1.22) / 10
    assert base == pytest.approx(2.0)
    assert gain == pytest.approx(0.3 / 2.0)
    assert se == pytest.approx(math.sqrt(1.5 * (0.16 + 0.81 + 0.25)) / 10 / 2.0)


def test_pairing_removes_the_spread_between_easy_and_hard_examples():
    rng = np.random.default_rng(0)
    counts = rng.integers(10, 40, 30)
    hard = rng.lognormal(0, 0.5, 30)  # examples differ a lot; the model improves each by ~5%
    a = {"eval_sums": (hard * counts).tolist(), "eval_counts": counts.tolist()}
    b = {"eval_sums": (hard * 0.95 * (1 + rng.normal(0, 0.01, 30)) * counts).tolist(), "eval_counts": counts.tolist()}
    gain, se, _ = noise.paired_gain(a, b)
    assert gain == pytest.approx(0.05, abs=0.01)
    assert se < noise.mean_se(a) / 5  # the unpaired error of one mean is dominated by the examples' spread


def test_paired_gain_uses_the_common_examples_of_a_sample():
    whole = {"eval_sums": [1.0, 2.0, 3.0, 4.0], "eval_counts": [1, 1, 1, 1]}
    sample = {"eval_sums": [1.5, 3.5], "eval_counts": [1, 1], "eval_indices": [1, 3]}
    gain, _, base = noise.paired_gain(whole, sample)
    assert base == pytest.approx(3.0) and gain == pytest.approx(0.5 / 3.0)  # examples 1 and 3 only


@pytest.mark.parametrize("family,truth", [
    ("exp", lambda x: 2.0 + 1.0 * np.exp(-x / 0.1)),
    ("pow3", lambda x: 1.5 + 2.0 * (1 + x / 0.01) ** -0.5),
])
def test_a_family_recovers_a_curve_of_its_own_form(family, truth):
    x = np.linspace(0, 1, 12)
    fit = fit_family(family, x, truth(x))
    assert fit.rmse < 0.01 * truth(x).min()
    assert float(fit.predict(np.array([1.3]))[0]) == pytest.approx(float(truth(1.3)), rel=0.01)


def test_ensemble_weights_the_family_that_predicts_best():
    # A fast drop and a slow power-law decline: a single exponential cannot follow the slow part.
    x = np.linspace(0, 0.8, 14)
    y = 2.0 + 1.0 * np.exp(-x / 0.03) + 0.8 * (1 + x / 0.1) ** -0.6
    ens = fit_ensemble(x, y, noise=0.0)
    assert min(ens.weights, key=ens.weights.get) == "exp"
    truth = 0.8 * ((1 + 0.8 / 0.1) ** -0.6 - (1 + 0.9 / 0.1) ** -0.6)
    assert ens.gain(0.8, 0.9)[0] == pytest.approx(truth, rel=0.2)


def test_measured_noise_widens_the_prediction_and_dof_are_counted():
    x = np.linspace(0, 0.6, 8)
    y = 2.0 + np.exp(-x / 0.05)
    quiet = fit_ensemble(x, y, noise=0.001)
    loud = fit_ensemble(x, y, noise=0.05)
    assert loud.gain(0.6, 0.7)[1] > 5 * quiet.gain(0.6, 0.7)[1]
    assert quiet.dof == 8 - max(FAMILIES[f][2] for f in quiet.weights)
    assert fit_ensemble(x[:4], y[:4], min_dof=3) is None  # 4 points cannot give 3 degrees of freedom to any family


def test_rising_loss_predicts_no_gain_and_the_gain_stops_at_the_budget():
    flops = [0.1 * i for i in range(8)]
    rising = estimate(flops, [2.0 + 0.05 * i for i in range(8)], total=1.0, remaining=0.3, noise=0.01)
    assert rising.source == "fit" and rising.gain_next == pytest.approx(0.0, abs=1e-3)
    steep = estimate(flops, [3.0 - 0.2 * i for i in range(8)], total=1.0, remaining=0.05, noise=0.01)
    longer = estimate(flops, [3.0 - 0.2 * i for i in range(8)], total=1.0, remaining=0.3, noise=0.01)
    assert 0 < steep.gain_next < longer.gain_next  # only 5% of the budget is left to buy anything with


def test_signal_is_scale_free():
    flops = [0.1 * i for i in range(8)]
    losses = [2.0 + np.exp(-i) for i in range(8)]
    a = estimate(flops, losses, total=1.0, remaining=0.3, noise=0.01)
    b = estimate([f * 1e12 for f in flops], [v * 3 for v in losses], total=1e12, remaining=0.3e12, noise=0.01)
    assert a.gain_next == pytest.approx(b.gain_next, rel=1e-6)
    assert a.gain_next_sd == pytest.approx(b.gain_next_sd, rel=1e-6)


def test_ema_is_bias_corrected():
    assert ema([2.0, 2.0, 2.0], 0.9) == pytest.approx([2.0, 2.0, 2.0])


def test_a_recorded_curve_with_one_example_noise_gives_no_estimate_instead_of_dividing_by_zero():
    # Recorded on the real suite (coding-lora-5e-4-x4): a one-example evaluation sample has an infinite paired
    # standard error; every family's weight was then 1/inf and the weights 0/0.
    x = [0.0, 0.10495879976041488, 0.20991759952082975, 0.3808859673234676, 0.46617136187427693]
    y = [0.5076416251585656, 0.48979938153139096, 0.4571039652087025, 0.42368033497603896, 0.4029241345592381]
    assert fit_ensemble(x, y, noise=math.inf, min_dof=1) is None
    ens = fit_ensemble(x, y, noise=0.01, min_dof=1)
    assert ens is not None and math.isclose(sum(ens.weights.values()), 1.0)


def test_the_fewest_points_for_an_estimate_and_a_plan_that_could_never_decide_is_not_made():
    from budgetune.governor import make
    from budgetune.governor.curves import fewest_points
    from budgetune.train.governed import needs

    # By hand: the smallest family (exp) has 3 parameters; a one-step error needs a fit on 4 points predicting a
    # 5th, so 5 points with the origin; min_dof 3 needs 6.
    assert (fewest_points(1), fewest_points(3)) == (5, 6)
    x = np.linspace(0.0, 0.5, 6)
    y = 2.0 + np.exp(-x / 0.1) + 0.01 * np.cos(7 * x)
    assert fit_ensemble(x[:4], y[:4], noise=0.01, min_dof=1) is None
    assert fit_ensemble(x[:5], y[:5], noise=0.01, min_dof=1) is not None
    # A governor asked for 3 evaluations in between (4 points with the origin) could never act on them: the plan
    # it declares asks for at least 4 (also with min_dof 2: the one-step error already needs 5 points), 5 with
    # min_dof 3.
    assert needs(make("marginal", {"eval_min_points": 3}))["min_points"] == 4
    assert needs(make("marginal", {"eval_min_points": 3, "min_dof": 2, "min_evals": 2}))["min_points"] == 4
    assert needs(make("marginal", {"eval_min_points": 3, "min_dof": 3}))["min_points"] == 5
