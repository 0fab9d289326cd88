"""The marginal-gain governor's confirmations on noisy held-out curves whose answer is known by construction,
through the real signal path (per-example losses, measured paired standard errors, the curve ensemble): noise alone
never stops a curve that keeps falling, even with one confirmation, and every further confirmation can only delay
a stop (the default rule counts evaluations at which the curve and its trend agree; rule "next" counts intervals
of paired evidence)."""

import pytest
from known_curves import drive, evaluations, falling, flat

from budgetune.governor import make

SEEDS = range(6)
NOISE = 0.05  # 5% per example and evaluation: more than the 2% of the policy tests


@pytest.mark.parametrize("confirm", [1, 2])
def test_noise_alone_never_stops_a_falling_curve(confirm):
    for seed in SEEDS:
        at, decisions = drive(make("marginal", {"confirm": confirm}),
                              evaluations(falling, points=12, examples=24, noise=NOISE, seed=seed))
        assert at is None, (seed, decisions[-1].reason)


def test_a_flat_noisy_curve_is_stopped_and_more_confirmations_only_delay_it():
    stops = {c: [drive(make("marginal", {"confirm": c}),
                       evaluations(flat, points=12, examples=24, noise=NOISE, seed=s))[0] for s in SEEDS]
             for c in (1, 2, 3)}
    assert all(at is not None for at in stops[1])  # one confirmation: every seed stops on the flat curve
    last = len(evaluations(flat, points=12))
    for fewer, more in ((1, 2), (2, 3)):
        for a, b in zip(stops[fewer], stops[more], strict=True):
            assert (b if b is not None else last) >= (a if a is not None else last)
    assert sum(at is not None for at in stops[2]) >= len(SEEDS) - 1  # the default still stops nearly always
    # and the confirmations take effect: three need more evidence than one on most seeds
    assert sum((b if b is not None else last) > a for a, b in zip(stops[1], stops[3], strict=True)) > len(SEEDS) // 2
