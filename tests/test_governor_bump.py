"""Waiting out a bump (governor option bump_tolerance): a stop proposed at the top of a temporary rise waits, a
real rise still stops; curves known by construction (tests/known_curves.py)."""

from __future__ import annotations

import pytest
from known_curves import drive, evaluations, flat, overfit

from budgetune.governor import make
from budgetune.governor.bump import bump_hold

# No bump wait, on the 2026-12-03 defaults (a long trend window, no cap): a governor that stops a flat curve at its
# first real rise, against which the wait is measured
PLAIN = {"bump_tolerance": None, "threshold": 0.005, "max_loss": None, "trend_window": 0.8}


def test_bump_hold_by_hand():
    # best since training began 1.9 (the 3.0 is before training); 2.05 / 1.9 - 1 = 7.89%
    hold = bump_hold([3.0, 2.0, 1.9, 2.05], tolerance=0.02, waited=0, max_wait=2)
    assert hold is not None and hold["bump"] == pytest.approx(0.15 / 1.9) and hold["bump_best"] == 1.9
    assert bump_hold([3.0, 2.0, 1.9, 2.05], tolerance=0.1, waited=0, max_wait=2) is None  # within the tolerance
    assert bump_hold([3.0, 2.0, 1.9, 2.05], tolerance=0.02, waited=2, max_wait=2) is None  # waited long enough
    assert bump_hold([3.0, 2.05], tolerance=0.0, waited=0, max_wait=2) is None  # nothing to compare with yet
    assert bump_hold([3.0, 2.0, 1.9, 2.05], tolerance=None, waited=0, max_wait=2) is None  # off


def _bumped(seed: int) -> tuple[list[dict], set[int]]:
    """A flat curve (worth stopping) whose loss rises 8% on every example for two evaluations and comes back."""
    evals = evaluations(flat, points=14, seed=seed)
    bump = {6, 7}
    for k in bump:
        evals[k]["eval_sums"] = [v * 1.08 for v in evals[k]["eval_sums"]]
        evals[k]["eval_loss"] *= 1.08
    return evals, bump


@pytest.mark.parametrize("seed", range(3))
def test_a_stop_at_the_top_of_a_bump_waits_for_it_to_pass(seed):
    evals, bump = _bumped(seed)
    plain, _ = drive(make("marginal", PLAIN), evals)
    assert plain in bump  # without the option the rise itself is the stop: the bump is kept
    waited, decisions = drive(make("marginal", {**PLAIN, "bump_tolerance": 0.02, "bump_wait": 2}), evals)
    assert waited is not None and waited > max(bump)
    best = min(e["eval_loss"] for e in evals[1:waited])
    assert evals[waited]["eval_loss"] <= 1.02 * best
    assert any(d.inputs.get("bump") for d in decisions[:waited])  # the wait is in the decision's inputs


@pytest.mark.parametrize("seed", range(3))
def test_a_real_rise_is_waited_out_for_at_most_bump_wait_evaluations(seed):
    evals = evaluations(overfit, points=14, seed=seed)
    plain, _ = drive(make("marginal", PLAIN), evals)
    assert plain is not None
    waited, decisions = drive(make("marginal", {**PLAIN, "bump_tolerance": 0.0, "bump_wait": 2}), evals)
    assert waited is not None and plain <= waited <= plain + 2
    assert sum(1 for d in decisions if d.inputs.get("bump")) <= 2


def test_bump_waits_survive_a_checkpoint():
    evals, _ = _bumped(0)
    options = {**PLAIN, "bump_tolerance": 0.02, "bump_wait": 2}
    a = make("marginal", options)
    at, _ = drive(a, evals)
    b = make("marginal", options)
    first, _ = drive(b, evals[:7])  # the first bumped evaluation: a wait, then a resume from its state
    assert first is None and b.bump_waits == 1
    c = make("marginal", options)
    c.load_state_dict(b.state_dict())
    rest, _ = drive(c, evals[7:])
    assert rest is not None and 7 + rest == at
