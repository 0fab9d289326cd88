"""One contract for every registered governor: valid decisions, JSON state, exact resume, determinism, arms."""

import json

import numpy as np
import pytest

from budgetune.budget import Budget, Ledger
from budgetune.governor import ACTIONS, GOVERNORS, ArmView, make

BUDGET = 1e12


def evaluations(n=20, seed=0, plateau_at=0.4):
    """A learning curve that falls, flattens and creeps up, with evaluation noise."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        x = (i + 1) / (n + 1)
        loss = 2.0 + 0.6 * x ** -0.5 * 0.2 + 0.3 * max(0.0, x - plateau_at) + rng.normal(0, 0.01)
        out.append({"step": i + 1, "eval_loss": loss, "flops": x * BUDGET, "train_flops": 0.9 * x * BUDGET})
    return out


def ledger_at(e):
    ledger = Ledger()
    ledger.charge("train", e["train_flops"])
    ledger.charge("eval", e["flops"] - e["train_flops"])
    return ledger


def drive(governor, evals):
    budget = Budget(max_flops=BUDGET)
    out = []
    for e in evals:
        d = governor.decide(dict(e), ledger_at(e), budget)
        out.append((d.action, d.reason, json.dumps(d.inputs, sort_keys=True)))
    return out


@pytest.fixture(params=sorted(GOVERNORS))
def name(request):
    return request.param


def test_decisions_are_valid_and_json(name):
    g = make(name, {}, Budget(max_flops=BUDGET))
    for action, reason, inputs in drive(g, evaluations()):
        assert action in ACTIONS and reason
        json.loads(inputs)
    json.dumps(g.state_dict())


def test_resume_restores_the_governor_exactly(name):
    evals = evaluations()
    straight = make(name, {}, None)
    expected = drive(straight, evals)
    for cut in (3, 11):
        first = make(name, {}, None)
        got = drive(first, evals[:cut])
        saved = json.loads(json.dumps(first.state_dict()))  # what a checkpoint holds
        second = make(name, {}, None)
        second.load_state_dict(saved)
        got += drive(second, evals[cut:])
        assert got == expected, f"{name}: resuming after evaluation {cut} changed the decisions"
        assert second.state_dict() == straight.state_dict()


def test_same_inputs_same_decisions(name):
    # Processes decide on all-reduced numbers; identical inputs must give identical actions everywhere.
    assert drive(make(name, {}, None), evaluations(seed=3)) == drive(make(name, {}, None), evaluations(seed=3))


def test_arm_policies_hand_out_at_most_what_is_left(name):
    g = make(name, {}, None)
    if not hasattr(g, "allocate"):
        pytest.skip(f"{name} is a single-run policy")
    arms = []
    for k, (A, E) in enumerate([(0.5, 2.0), (0.2, 2.3), (0.4, 1.9)]):
        xs = [0.01 * (i + 1) for i in range(8)]
        arms.append(ArmView(f"arm{k}", [0.0] + xs, [E + A * 3] + [E + A * x ** -0.3 for x in xs]))
    amounts, decision = g.allocate(arms, 0.7, 1.0)
    assert set(amounts) == {a.name for a in arms}
    assert all(v >= 0 for v in amounts.values())
    assert sum(amounts.values()) <= 0.7 + 1e-12
    assert decision.action in ACTIONS


def test_unknown_names_and_options_are_one_line_errors():
    from budgetune.errors import UserError

    with pytest.raises(UserError, match="unknown governor 'nope'; choose one of"):
        make("nope", {})
    with pytest.raises(UserError, match="has no option"):
        make("patience", {"patients": 3})
    with pytest.raises(UserError, match="takes no options"):
        make("fixed", {"threshold": 1})
