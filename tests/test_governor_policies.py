"""Behaviour of the marginal-gain governor and the baselines on controlled learning curves."""


import numpy as np
import pytest

from budgetune.budget import Budget, Ledger
from budgetune.errors import UserError
from budgetune.governor import check_inputs, make
from budgetune.governor import marginal as marginal_mod
from budgetune.governor.signal import Signal

B = 1e12


def run(governor, losses, budget=B):
    """Feed evaluation i at (i+1)/(n+1) of the budget; return the index of the first non-continue action."""
    n = len(losses)
    actions = []
    for i, loss in enumerate(losses):
        c = (i + 1) / (n + 1) * budget
        ledger = Ledger()
        ledger.charge("train", c)
        d = governor.decide({"eval_loss": loss, "flops": c, "train_flops": c}, ledger, Budget(max_flops=budget))
        actions.append(d)
        if d.action != "continue":
            return i, actions
    return None, actions


def power(E, A, alpha, n=30, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    return [E + A * ((i + 1) / (n + 1)) ** -alpha + rng.normal(0, noise) for i in range(n)]


def test_stops_on_a_plateau_and_reports_flops_left():
    losses = power(2.0, 0.05, 0.5, noise=0.003)
    at, actions = run(make("marginal", {}), losses)
    assert at is not None and at < 15
    assert actions[at].action == "stop"
    assert actions[at].inputs["flops_left"] == pytest.approx(B * (1 - (at + 1) / 31))
    assert "left for inference" in actions[at].reason


def test_keeps_going_while_the_curve_is_steep():
    at, _ = run(make("marginal", {}), power(0.5, 1.0, 0.7, noise=0.003))
    assert at is None


def test_a_higher_threshold_stops_earlier():
    losses = power(2.0, 0.3, 0.6, noise=0.002)
    low, _ = run(make("marginal", {"threshold": 0.005}), losses)
    high, _ = run(make("marginal", {"threshold": 0.03}), losses)
    assert high is not None and (low is None or high < low)


def fake_signals(monkeypatch, gains):
    seq = iter(gains)

    def fake(*a, **k):
        g = next(seq)
        return Signal(2.0, 2.0, g, 0.0, g * 3, 0.0, g, 0.1 * B, "fit")

    monkeypatch.setattr(marginal_mod, "estimate", fake)


def test_hysteresis_keeps_a_pending_stop_through_a_small_rebound(monkeypatch):
    gains = [0.05] * 4 + [0.005, 0.012, 0.005]  # threshold 1%, resume at 1.5%: 1.2% does not cancel
    fake_signals(monkeypatch, gains)
    at, _ = run(make("marginal", {"price_rise": 0, "min_evals_between": 0}), [2.0] * len(gains))
    assert at == 6
    fake_signals(monkeypatch, gains)
    at, _ = run(make("marginal", {"price_rise": 0, "resume_threshold": 0.01, "min_evals_between": 0}),
                [2.0] * len(gains))
    assert at is None  # without hysteresis the same noise resets the count


def test_needs_min_evals_and_confirmations(monkeypatch):
    fake_signals(monkeypatch, [0.0] * 10)
    at, _ = run(make("marginal", {"min_evals": 5, "confirm": 3}), [2.0] * 10)
    assert at == 6  # evaluations 5, 6, 7 (1-based) are the three confirmations


def test_the_price_rises_as_the_budget_runs_out(monkeypatch):
    fake_signals(monkeypatch, [0.015] * 40)
    at, actions = run(make("marginal", {"threshold": 0.01, "price_rise": 1.0, "confirm": 1}), [2.0] * 40)
    # 1.5% clears the price 1%·(1+f) until half of the budget is spent
    assert at is not None and 0.45 < actions[at].inputs["budget_spent"] < 0.6


def test_refresh_when_drift_makes_it_worth_its_flops():
    losses = power(2.0, 0.05, 0.5, noise=0.003)
    for drift, expected in ((0.9, "refresh"), (0.05, "stop")):
        g = make("marginal", {})
        n = len(losses)
        for i, loss in enumerate(losses):
            c = (i + 1) / (n + 1) * B
            ledger = Ledger()
            ledger.charge("train", c)
            d = g.decide({"eval_loss": loss, "flops": c, "train_flops": c,
                          "drift": {"rank_correlation": 1 - drift, "refresh_flops": 0.01 * B}},
                         ledger, Budget(max_flops=B))
            if d.action != "continue":
                break
        assert d.action == expected, d.reason
        if expected == "refresh":
            assert d.inputs["refresh_worth"]
            c = c + B / (n + 1)
            ledger.charge("train", B / (n + 1))
            nxt = g.decide({"eval_loss": loss, "flops": c, "train_flops": c, "drift": {"refresh": True}},
                           ledger, Budget(max_flops=B))
            assert g.window_start == i + 1 and nxt.action == "continue"  # new data: the curve starts over


def test_refresh_probe_asks_once_then_stops_when_declined():
    losses = power(2.0, 0.05, 0.5, noise=0.003)
    g = make("marginal", {"refresh_probe": True, "min_evals_between": 0})
    actions = []
    n = len(losses)
    for i, loss in enumerate(losses):
        c = (i + 1) / (n + 1) * B
        ledger = Ledger()
        ledger.charge("train", c)
        ev = {"eval_loss": loss, "flops": c, "train_flops": c}
        if actions and actions[-1] == "refresh":
            ev["drift"] = {"drift": 0.01, "refresh": False}  # the refresher measured little drift and declined
        actions.append(g.decide(ev, ledger, Budget(max_flops=B)).action)
        if actions[-1] == "stop":
            break
    assert actions.count("refresh") == 1 and actions[-2:] == ["refresh", "stop"]


def test_token_budget_is_converted_to_flops():
    g = make("marginal", {})
    ledger = Ledger()
    ledger.charge("train", 2e11, tokens=500)
    d = g.decide({"eval_loss": 2.0, "flops": 2e11, "train_flops": 2e11}, ledger, Budget(max_tokens=1000))
    assert d.inputs["flops_left"] == pytest.approx(2e11)


def test_bad_input_gives_one_line_each():
    with pytest.raises(UserError, match="contradict") as e:
        make("marginal", {"threshold": 0.02, "resume_threshold": 0.01})
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="smaller than one evaluation"):
        check_inputs(Budget(max_flops=1e9), eval_flops=5e9, heldout_examples=16)
    with pytest.raises(UserError, match="held-out"):
        check_inputs(Budget(max_flops=1e13), eval_flops=5e9, heldout_examples=0)
    with pytest.raises(UserError, match="held-out loss"):
        make("marginal", {}).decide({"flops": 1.0}, Ledger(), Budget(max_flops=B))
    with pytest.raises(UserError, match="prices FLOPs"):
        make("marginal", {}, Budget(max_memory_bytes=10))
    with pytest.raises(UserError, match="min_delta"):
        make("patience", {"min_delta": -0.1})
    with pytest.raises(UserError, match="threshold"):
        make("marginal", {"threshold": "1.5"})


def test_halving_keeps_the_best_third():
    from budgetune.governor import ArmView

    g = make("halving", {"eta": 3})
    arms = [ArmView(f"a{i}", [0.0, 0.1], [3.0, loss]) for i, loss in enumerate([2.5, 2.1, 2.9, 2.2, 2.6, 2.0])]
    amounts, d = g.allocate(arms, 0.4, 1.0)
    assert {k for k, v in amounts.items() if v > 0} == {"a5", "a1"}
    assert d.action == "reallocate"


def test_stops_soon_after_the_held_out_loss_turns_up():
    # Falls like a power law, bottoms out at evaluation 8, then overfits: the monotone fit alone sees "flat, unsure".
    losses = [2.0 + 0.3 * ((i + 1) / 31) ** -0.5 for i in range(8)]
    losses += [losses[-1] + 0.04 * k for k in range(1, 23)]
    at, actions = run(make("marginal", {}), losses)
    assert at is not None and 8 < at <= 12, [d.reason for d in actions[-3:]]


def test_line_through_a_flattening_curve_promises_more_than_the_curve():
    from budgetune.governor.signal import estimate

    xs = [0.05 * (i + 1) for i in range(10)]
    sig = estimate(xs, [1.5 + 0.4 * x ** -0.5 for x in xs], total=1.0, remaining=0.5)
    assert sig.local_gain > sig.gain_next > 0
