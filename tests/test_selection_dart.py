"""DART: equal-count difficulty bins, and more of the budget to the harder bin on constructed losses."""

from __future__ import annotations

import numpy as np
import pytest

from budgetune.errors import UserError
from budgetune.selection import registry
from budgetune.selection.scorers.dart import allocation_order, difficulty_bins


def constructed():
    """Ten easy examples (loss about 1) and ten hard ones (about 3), interleaved in the pool."""
    rng = np.random.default_rng(0)
    losses = np.empty(20)
    losses[0::2] = 1.0 + 0.1 * rng.random(10)
    losses[1::2] = 3.0 + 0.1 * rng.random(10)
    return losses, (np.arange(20) % 2 == 1)


def test_bins_are_equal_count_and_percentiles_by_hand():
    losses, hard = constructed()
    which, difficulty = difficulty_bins(losses, 2)
    assert which[hard].tolist() == [1] * 10 and which[~hard].tolist() == [0] * 10
    # Percentiles (r + ½)/20: easy ranks 0-9 → mean 5/20 = 0.25; hard ranks 10-19 → 15/20 = 0.75.
    assert difficulty == pytest.approx({0: 0.25, 1: 0.75})


def test_prop2diff_gives_the_harder_bin_more_picks():
    losses, hard = constructed()
    order = allocation_order(losses, bins=2, power=1.0, rng=np.random.default_rng(3))
    # Shares 0.25 : 0.75 = 1 : 3 → 8 picks are 2 easy and 6 hard; 4 picks are 1 and 3.
    assert int(hard[order[:8]].sum()) == 6
    assert int(hard[order[:4]].sum()) == 3
    # Uniform (power 0) splits evenly.
    uniform = allocation_order(losses, bins=2, power=0.0, rng=np.random.default_rng(3))
    assert int(hard[uniform[:8]].sum()) == 4


def test_more_bins_rise_monotonically_in_share():
    losses = np.arange(40, dtype=float)  # bins of 10; percentiles 0.125, 0.375, 0.625, 0.875 → 1 : 3 : 5 : 7
    order = allocation_order(losses, bins=4, power=1.0, rng=np.random.default_rng(0))
    counts = np.bincount(order[:16] // 10, minlength=4)
    assert counts.tolist() == [1, 3, 5, 7]


def test_dart_scores_with_its_proxy(tiny_model, tokenizer):
    from budgetune.data.examples import chat_example

    pool = [chat_example(tokenizer, [{"role": "user", "content": f"Question {i}?"},
                                     {"role": "assistant", "content": "Answer " * (1 + i % 3)}], 48, "c")
            for i in range(8)]
    scores = registry.make("dart", {"proxy": "layers:1", "bins": 2}).score(tiny_model, pool, [])
    assert sorted(scores.values.tolist()) == list(range(1, 9))
    assert "first 1 of 2 layers" in scores.meta["proxy"]
    assert scores.meta["bin_mean_loss"]["1"] >= scores.meta["bin_mean_loss"]["0"]


def test_bad_options_are_one_line_errors():
    with pytest.raises(UserError, match="power"):
        registry.make("dart", {"power": -1})


@pytest.mark.slow  # the CLI loads the tokenizer and data readers: about 10 s idle, minutes on a loaded machine
def test_dart_runs_from_the_cli(tiny_config_path, tmp_path, capsys):
    import json

    from budgetune.cli import main

    rows = [{"prompt": f"Question number {i}?", "response": "Answer " + "word " * (i % 5 + 1), "category": "c"}
            for i in range(10)]
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code = main(["select", "--data", str(pool), "--target", str(pool), "--scorer", "dart", "--budget", "4",
                 "-o", "proxy=layers:1", "-o", "bins=2", "--out", str(tmp_path / "s.jsonl"), "--json",
                 "--model", tiny_config_path])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["scorer"] == "dart" and summary["selected"] == 4 and summary["flops"] > 0
