"""plan --inference-flops-per-token: full depth or an early-exit rule whose predicted FLOPs fit, checked by hand
arithmetic of the early-exit FLOP model on SmolLM2-135M's shape (30 layers, hidden 576, K/V 192, MLP 1536, vocab
49,152)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from budgetune.cli import main
from budgetune.infer.depth_plan import (
    DepthCosts,
    MeasuredRule,
    break_even_share,
    costs_from_spec,
    expected_token_flops,
    plan_depth,
    token_flops,
)
from budgetune.memory.spec import spec_from_model_name

# One SmolLM2 layer's matrices: q, o 576×576; k, v 576×192; gate, up 576×1536; down 1536×576.
LAYER = 2 * 576 * 576 + 2 * 576 * 192 + 3 * 576 * 1536  # 3,538,944
KV = 2 * 576 * 192  # 221,184
HEAD = 49152 * 576  # 28,311,552 (tied, but its product runs)
CTX = 512
RUN = 2 * LAYER + 4 * CTX * 576  # one layer run at context 512: 8,257,536
FILL = 2 * KV  # one skipped layer's K/V: 442,368
CHECK = 2 * HEAD  # one head pass: 56,623,104
FULL = 30 * RUN + CHECK  # 304,349,184


@pytest.fixture(scope="module")
def smol():
    return spec_from_model_name("smollm2-135m")


def test_costs_from_the_config_match_the_hand_count(smol):
    c = costs_from_spec(smol)
    assert (c.layer_params, c.kv_params, c.head_params, c.n_layers, c.attn_dim) == (LAYER, KV, HEAD, 30, 576)
    assert token_flops(c, CTX, 30, 1) == FULL == 304_349_184


def test_expected_flops_weigh_each_exit_by_its_share():
    # L = 4, one layer run at context 1 = 2·10 + 4·1·1 = 24, a K/V fill 4, a check 60.
    c = DepthCosts(layer_params=10, kv_params=2, head_params=30, n_layers=4, attn_dim=1)
    at1, at2, full = 24 + 3 * 4 + 60, 2 * 24 + 2 * 4 + 2 * 60, 4 * 24 + 3 * 60  # 96, 176, 276
    assert expected_token_flops(c, (2, 1), {1: 0.5, 2: 0.25}, 1) == pytest.approx(0.5 * at1 + 0.25 * at2 + 0.25 * full)
    assert expected_token_flops(c, (1, 2), {}, 1) == full


def test_full_depth_is_chosen_when_it_fits(smol):
    _, d = plan_depth(smol, FULL, CTX)
    assert d["choice"] == "full depth" and d["full_depth_flops_per_token"] == FULL


def test_smollm2_measured_rules_cost_more_than_full_depth(smol):
    # (20,26) at 0.9: 7 of 69 tokens leave at 20 (one check), 14 at 26 (two), 48 run all 30 layers (three checks).
    at20 = 20 * RUN + 10 * FILL + CHECK
    at26 = 26 * RUN + 4 * FILL + 2 * CHECK
    stay = 30 * RUN + 3 * CHECK
    _, d = plan_depth(smol, FULL - 1, CTX)
    first = d["candidates"][0]
    assert first["predicted_flops_per_token"] == pytest.approx((7 * at20 + 14 * at26 + 48 * stay) / 69)
    assert all(row["vs_full"] > 1 and not row["fits"] for row in d["candidates"])
    assert d["choice"] is None and "every measured rule more" in d["why"]
    assert first["identical_outputs"] == "0/3" and first["agrees_when_fired"]["20"] == 0.5


def test_a_rule_that_fits_is_chosen_below_full_depth(smol):
    good = MeasuredRule((10,), 0.9, {10: 0.9}, "2/3", 0.8, {10: 0.9})
    worse = MeasuredRule((10,), 0.5, {10: 0.95}, "1/3", 0.5, {10: 0.7})
    predicted = 0.9 * (10 * RUN + 20 * FILL + CHECK) + 0.1 * (30 * RUN + 2 * CHECK)  # 169,338,470.4
    _, d = plan_depth(smol, 2e8, CTX, measured=(worse, good))
    assert d["choice"] == "--early-exit 10 --exit-threshold 0.9"  # both fit; the one that agrees more
    assert d["candidates"][1]["predicted_flops_per_token"] == pytest.approx(predicted)
    _, d = plan_depth(smol, 1.6e8, CTX, measured=(good,))
    assert d["choice"] is None


def test_break_even_share_by_hand(smol):
    c = costs_from_spec(smol)
    stay, leave = 30 * RUN + 2 * CHECK, 20 * RUN + 10 * FILL + CHECK
    assert break_even_share(c, 20, CTX, 3e8) == pytest.approx((stay - 3e8) / (stay - leave))
    assert break_even_share(c, 20, CTX, leave - 1) is None


def test_plan_cli_reports_the_depth_choice_without_torch():
    code = ("import sys; from budgetune.cli import main; rc = main(['plan', '--json', '--gpu-memory', '4GiB', "
            "'--inference-flops-per-token', '1e9']); heavy = [m for m in ('torch', 'transformers') "
            "if m in sys.modules]; print('HEAVY', heavy, rc, file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert "HEAVY [] 0" in proc.stderr, proc.stderr[-2000:]
    depth = json.loads(proc.stdout)["inference"]["depth"]
    assert depth["choice"] == "full depth" and depth["full_depth_flops_per_token"] == FULL


def test_plan_cli_rejects_a_bad_flop_budget(capsys):
    assert main(["plan", "--gpu-memory", "4GiB", "--inference-flops-per-token", "-1"]) == 2
    assert "--inference-flops-per-token" in capsys.readouterr().err
