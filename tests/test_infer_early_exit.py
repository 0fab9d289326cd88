"""Adaptive-depth decoding on a tiny Llama: with no exit taken it is plain greedy decoding token for token; its FLOP
count is the one torch's FlopCounterMode measures on the same decode; exits happen where the rule says; budgets,
bad layers and the CLI behave."""

from __future__ import annotations

import json

import pytest

from budgetune.cli import main
from budgetune.errors import UserError
from budgetune.infer.early_exit import EarlyExit, decode, depth_costs, token_flops
from budgetune.infer.generate import generate


@pytest.fixture
def eager_model(tiny_config_path):
    from budgetune.models import load_model

    # Eager attention: FlopCounterMode does not count CPU SDPA.
    model = load_model(tiny_config_path, seed=0)
    model.config._attn_implementation = "eager"
    return model.eval()


def test_never_exiting_equals_plain_greedy(tiny_model, tokenizer):
    prompts = ["Hello, how are you?", "Name a fruit."]
    plain = generate(tiny_model, tokenizer, prompts, max_new_tokens=8)
    from budgetune.infer.early_exit import generate_early_exit

    adaptive = generate_early_exit(tiny_model, tokenizer, prompts, EarlyExit((1,), 1.0), max_new_tokens=8)
    for a, b in zip(plain, adaptive):
        assert a.text == b.text and a.new_tokens == b.new_tokens
        assert all(d == 2 for d in b.extra["early_exit"]["depths"])


def test_flops_match_flop_counter_mode(eager_model):
    from torch.utils.flop_counter import FlopCounterMode

    ids = list(range(5, 17))
    for threshold in (0.0, 1.0):  # always exit after layer 1 / never exit
        with FlopCounterMode(display=False) as counter:
            trace = decode(eager_model, ids, EarlyExit((1,), threshold), max_new_tokens=6, eos_ids=set())
        assert trace.flops == pytest.approx(counter.get_total_flops(), rel=0.02), threshold
        assert trace.depths[1:] == [1 if threshold == 0.0 else 2] * 5


def test_token_flops_by_hand(eager_model):
    c = depth_costs(eager_model)
    h, kv, inter, vocab = 64, 64 * 32 * 2, 128, 49152  # 2 KV heads × 16 dims, K and V
    layer = (h * h + h * 32 + h * 32 + h * h) + 3 * h * inter  # q, k, v, o and the MLP
    assert c.layer_params == layer and c.kv_params == kv and c.head_params == vocab * h
    # Exit after layer 1 of 2 at context 10, two checks: one layer, one K/V fill, two head passes.
    expected = (2 * layer + 4 * 10 * h) + 2 * kv + 2 * 2 * vocab * h
    assert token_flops(c, 10, 1, 2) == expected


def test_budget_stops_before_it_is_exceeded(eager_model):
    ids = list(range(5, 17))
    full = decode(eager_model, ids, EarlyExit((1,), 1.0), max_new_tokens=6, eos_ids=set())
    budget = full.flops * 0.8
    cut = decode(eager_model, ids, EarlyExit((1,), 1.0), max_new_tokens=6, eos_ids=set(), budget=budget)
    assert cut.stop == "flops_budget" and cut.flops <= budget and len(cut.tokens) < 6
    assert cut.tokens == full.tokens[: len(cut.tokens)]


def test_bad_exit_layers_stop_with_one_line(eager_model):
    with pytest.raises(UserError) as err:
        decode(eager_model, [5, 6], EarlyExit((2,), 0.9), max_new_tokens=2, eos_ids=set())
    assert "1 to 1" in str(err.value)
    with pytest.raises(UserError):
        EarlyExit((1,), 1.5)


def test_generate_cli_early_exit_json(tiny_config_path, capsys):
    code = main(["generate", "--model", tiny_config_path, "--prompt", "hello there", "--max-new-tokens", "4",
                 "--early-exit", "1", "--exit-threshold", "0", "--json"])
    out, _ = capsys.readouterr()
    assert code == 0
    result = json.loads(out)["results"][0]
    assert result["extra"]["early_exit"]["depths"][1:] == [1] * (result["new_tokens"] - 1)
    code = main(["generate", "--model", tiny_config_path, "--prompt", "hi", "--early-exit", "x"])
    assert code == 2


def test_exit_needs_no_speculation(tiny_config_path, capsys):
    code = main(["generate", "--model", tiny_config_path, "--prompt", "hi", "--early-exit", "1",
                 "--speculative", "prompt-lookup"])
    _, err = capsys.readouterr()
    assert code == 2 and "--early-exit" in err and len(err.strip().splitlines()) == 1
