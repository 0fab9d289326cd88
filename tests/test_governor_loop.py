"""The governors inside the real training loop (tiny model, real data): decisions logged, arms resumed."""

import json

import pytest
from helpers import small_split, tiny_run_config

from budgetune.governor import make
from budgetune.train.arms import run_arms


@pytest.mark.slow
def test_marginal_governor_in_the_loop_logs_its_inputs(tmp_path, tiny_config_path, tokenizer):
    from budgetune.train.loop import train

    cfg = tiny_run_config(tiny_config_path, tmp_path / "run", eval_every=1, checkpoint_every=0)
    cfg.budget.max_flops = 6e10
    governor = make("marginal", {"min_evals": 3, "confirm": 1}, None)
    result = train(cfg, tokenizer=tokenizer, data=small_split(tokenizer), governor=governor, progress=False)
    lines = [json.loads(x) for x in (result.run_dir / "decisions.jsonl").read_text().splitlines()]
    assert len(lines) >= 4
    fitted = [d for d in lines if d.get("source") == "fit"]
    assert fitted and all(d["price"] > 0 and "gain_next" in d and "flops_left" in d for d in fitted)
    if result.stop_reason.startswith("governor"):
        # The stop is followed by the learning-rate cooldown's start and end (cooldown_fraction > 0 by default).
        assert [d["action"] for d in lines[-3:]] == ["stop", "cooldown", "cooldown"]
        assert result.ledger.total_flops < cfg.budget.max_flops


@pytest.mark.slow
def test_arms_resume_real_runs_with_raised_budgets(tmp_path, tiny_config_path, tokenizer):
    data = small_split(tokenizer)
    configs = {}
    for name, lr in (("fast", 3e-3), ("slow", 1e-5)):
        cfg = tiny_run_config(tiny_config_path, tmp_path / name, eval_every=1, lr=lr, checkpoint_every=1)
        cfg.budget.max_flops = 1.0  # replaced by the orchestrator
        configs[name] = cfg
    total = 3e10
    result = run_arms(configs, total, make("halving", {}), tmp_path / "arms", initial_share=0.25,
                      train_kwargs={"tokenizer": tokenizer, "data": data})
    assert result.flops_used <= total * 1.05  # each arm stops at its last step that fits (the loop's reservation)
    assert result.best in configs
    ledger = json.loads((tmp_path / "arms" / result.best / "ledger.json").read_text())
    assert ledger["total_flops"] > 0.25 * total  # the survivor was resumed with a raised budget
    assert (tmp_path / "arms" / "decisions.jsonl").exists()


def test_run_command_gives_a_governed_selecting_run_a_refresher(tmp_path, tiny_config_path, monkeypatch):
    from budgetune.commands import run as run_command
    from budgetune.selection.refresh import Refresher
    from budgetune.train import loop

    class Called(Exception):
        pass

    seen = {}

    def fake_train(cfg, **kwargs):
        seen.clear()
        seen.update(kwargs)
        raise Called()

    monkeypatch.setattr(loop, "train", fake_train)
    cfg = tiny_run_config(tiny_config_path, tmp_path / "run")
    cfg.budget.max_flops = 1e12
    cfg.governor = {"name": "marginal"}
    cfg.selection = {"scorer": "length", "budget": "50%"}
    with pytest.raises(Called):
        run_command.execute(cfg)
    refresher = seen["refresher"]
    assert isinstance(refresher, Refresher) and refresher.budget.max_flops == 1e12
    # the refresher re-selects toward dev, never the test part the run reports
    assert refresher.pool == list(seen["data"].train) and refresher.target == list(seen["data"].scoring)
    assert seen["governor"].config.refresh_probe  # the governor asks it before stopping

    cfg.selection = {}  # a governor alone has nothing to refresh
    with pytest.raises(Called):
        run_command.execute(cfg)
    assert "refresher" not in seen
