"""Arms: FLOPs move to the arms predicted to gain the most; plots of a governed run."""

import json

import pytest

from budgetune.governor import make
from budgetune.train.arms import orchestrate, replay_advance


def curves():
    xs = [i / 40 for i in range(41)]
    law = {"good": (1.8, 0.4, 0.5), "slow": (2.4, 0.3, 0.5), "flat": (2.6, 0.05, 0.5)}
    return {k: (xs, [E + A * max(x, 0.01) ** -a for x in xs]) for k, (E, A, a) in law.items()}


@pytest.mark.parametrize("policy", ["fixed", "halving", "marginal"])
def test_arms_spend_at_most_the_budget_and_find_the_best(policy):
    result = orchestrate(make(policy, {}), list(curves()), 1.0, replay_advance(curves()), initial_share=1 / 9)
    assert result.flops_used <= 1.0 + 1e-9
    if policy == "fixed":
        assert all(a.active for a in result.arms.values())
    elif policy == "halving":
        # Ranked on the first rung, the arm that starts low but learns little wins: halving's known weakness.
        assert result.best == "flat" and not result.arms["good"].active
    else:
        # Extrapolating each curve over the remaining FLOPs picks the arm that ends lowest.
        assert result.best == "good" and not result.arms["flat"].active
        assert result.arms["good"].flops[-1] > 0.5


def test_marginal_stops_all_arms_when_nothing_pays():
    xs = [i / 40 for i in range(41)]
    flat = {k: (xs, [2.0 + 1e-4 * (x == 0) for x in xs]) for k in ("a", "b")}
    result = orchestrate(make("marginal", {}), ["a", "b"], 1.0, replay_advance(flat), initial_share=0.2)
    assert result.decisions[-1]["action"] == "stop" and result.flops_left > 0.3


def test_halving_single_run_is_never_stopped():
    d = make("halving", {}).decide({"eval_loss": 2.0}, None, None)
    assert d.action == "continue"


def test_decision_figure(tmp_path):
    from budgetune.governor.plots import decision_figure

    assert decision_figure(tmp_path) is None
    evals = [{"kind": "eval", "flops": f, "eval_loss": 3 - f} for f in (0.1, 0.2, 0.3)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evals))
    decisions = [{"flops": 0.2, "action": "continue", "gain_next": 0.05, "optimistic_gain": 0.06, "price": 0.01},
                 {"flops": 0.3, "action": "stop", "gain_next": 0.001, "optimistic_gain": 0.002, "price": 0.012}]
    (tmp_path / "decisions.jsonl").write_text("".join(json.dumps(d) + "\n" for d in decisions))
    fig = decision_figure(tmp_path)
    assert len(fig.axes) == 2
    fig.savefig(tmp_path / "g.png")
    assert (tmp_path / "g.png").stat().st_size > 1000
