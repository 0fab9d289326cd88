"""Generation cost accounting, FLOP budgets, batching and speculative decoding on a tiny random model."""

from __future__ import annotations

import pytest
import torch

from budgetune.budget import Ledger
from budgetune.errors import UserError
from budgetune.flops import profile_from_model
from budgetune.infer.accounting import (
    PassMeter,
    max_new_tokens_within,
    pass_flops,
    request_flops,
)
from budgetune.infer.draft import truncated_copy
from budgetune.infer.generate import Speculation, encode_prompts, generate

PROMPTS = ["What is the capital of France?", "Tell me a joke about computers and cats, please.", "Hi"]
REPEAT = ["Repeat exactly: one two three four five six seven eight nine ten one two three four five six"]


def test_request_flops_is_the_sum_of_its_passes(tiny_model):
    p = profile_from_model(tiny_model)
    prompt, n = 17, 9
    by_pass = pass_flops(p, 0, prompt) + sum(pass_flops(p, prompt + k - 1, 1) for k in range(1, n))
    assert request_flops(p, prompt, n) == pytest.approx(by_pass)
    assert request_flops(p, prompt, n + 1) > request_flops(p, prompt, n)


def test_max_new_tokens_within_is_the_boundary(tiny_model):
    p = profile_from_model(tiny_model)
    budget = request_flops(p, 20, 7) + 1.0
    assert max_new_tokens_within(p, 20, budget, 100) == 7
    assert max_new_tokens_within(p, 20, budget, 5) == 5
    assert max_new_tokens_within(p, 20, request_flops(p, 20, 1) - 1, 100) == 0


def test_measured_passes_match_the_formula(tiny_model, tokenizer):
    """What ran (counted by a forward hook) equals prefill + decode over the growing context."""
    ledger = Ledger()
    meter = PassMeter(tiny_model, profile_from_model(tiny_model))
    try:
        [r] = generate(tiny_model, tokenizer, PROMPTS[:1], max_new_tokens=12, ledger=ledger)
    finally:
        meter.close()
    assert meter.passes == r.new_tokens == r.target_passes
    assert meter.flops == pytest.approx(r.flops)
    assert ledger.flops["inference"] == pytest.approx(r.flops)
    assert ledger.tokens["inference"] == r.prompt_tokens + r.new_tokens
    c = tiny_model.config  # K and V of every position the last step attends to, fp32 (hand arithmetic)
    head_dim = c.hidden_size // c.num_attention_heads
    assert r.kv_cache_bytes == (2 * c.num_hidden_layers * (r.prompt_tokens + r.new_tokens - 1)
                                * c.num_key_value_heads * head_dim * 4)
    assert r.prefill_flops < r.flops


def test_flop_budget_cuts_each_request_at_the_budget(tiny_model, tokenizer):
    p = profile_from_model(tiny_model)
    lens = [len(x) for x in encode_prompts(tokenizer, PROMPTS)]
    budget = request_flops(p, max(lens), 4)  # the longest prompt can afford exactly 4 tokens
    results = generate(tiny_model, tokenizer, PROMPTS, max_new_tokens=50, flops_budget=budget)
    for r, n in zip(results, lens):
        assert r.flops <= budget
        if r.stop != "eos":
            assert r.new_tokens == max_new_tokens_within(p, n, budget, 50)
            assert r.stop == "flops_budget"
    assert results[lens.index(max(lens))].new_tokens <= 4


def test_budget_below_the_prefill_is_one_clear_error(tiny_model, tokenizer):
    with pytest.raises(UserError, match="prefill"):
        generate(tiny_model, tokenizer, PROMPTS[:1], max_new_tokens=5, flops_budget=1e3)


def test_batched_greedy_equals_one_by_one(tiny_model, tokenizer):
    batched = generate(tiny_model, tokenizer, PROMPTS, max_new_tokens=8, batch_size=3)
    single = [generate(tiny_model, tokenizer, [q], max_new_tokens=8)[0] for q in PROMPTS]
    assert [r.text for r in batched] == [r.text for r in single]
    assert [r.flops for r in batched] == pytest.approx([r.flops for r in single])


@pytest.mark.parametrize("kind", ["prompt-lookup", "draft"])
def test_speculative_greedy_output_is_identical(tiny_model, tokenizer, kind):
    spec = Speculation(kind=kind, draft=truncated_copy(tiny_model, 1).eval() if kind == "draft" else None,
                       draft_tokens=3)
    prompts = PROMPTS[:1] + REPEAT
    plain = generate(tiny_model, tokenizer, prompts, max_new_tokens=12)
    ledger = Ledger()
    fast = generate(tiny_model, tokenizer, prompts, max_new_tokens=12, speculation=spec, ledger=ledger)
    assert [r.text for r in fast] == [r.text for r in plain]
    assert all(r.draft_proposed >= r.draft_accepted >= 0 for r in fast)
    assert sum(r.draft_proposed for r in fast) > 0
    assert all(r.target_passes + r.draft_accepted == r.new_tokens for r in fast)
    # verification re-reads rejected candidates, so the target spends at least what plain decoding does
    assert sum(r.flops - r.draft_flops for r in fast) >= sum(r.flops for r in plain) * 0.999
    assert ledger.flops["inference"] == pytest.approx(sum(r.flops for r in fast))
    if kind == "draft":
        assert all(r.draft_flops > 0 and r.kv_cache_bytes_draft > 0 for r in fast)


def test_speculative_budget_is_never_exceeded(tiny_model, tokenizer):
    p = profile_from_model(tiny_model)
    n = len(encode_prompts(tokenizer, REPEAT)[0])
    budget = request_flops(p, n + 10, 30)
    [r] = generate(tiny_model, tokenizer, REPEAT, max_new_tokens=200, flops_budget=budget,
                   speculation=Speculation(kind="prompt-lookup"))
    assert r.flops <= budget
    assert r.stop in ("flops_budget", "eos")
    [tight] = generate(tiny_model, tokenizer, REPEAT, max_new_tokens=50, flops_budget=request_flops(p, n, 2),
                       speculation=Speculation(kind="prompt-lookup"))
    assert tight.new_tokens == 2 and tight.extra["speculative"].startswith("none")


def test_empty_and_malformed_prompts_are_refused(tiny_model, tokenizer):
    with pytest.raises(UserError, match="no prompts"):
        generate(tiny_model, tokenizer, [], max_new_tokens=5)
    with pytest.raises(UserError, match="empty"):
        generate(tiny_model, tokenizer, ["  "], max_new_tokens=5)
    with pytest.raises(UserError):
        Speculation(kind="medusa")


def test_chat_messages_drop_a_trailing_answer(tokenizer):
    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    assert encode_prompts(tokenizer, [chat]) == encode_prompts(tokenizer, ["Hi"])
    assert torch.tensor(encode_prompts(tokenizer, ["Hi"])[0]).numel() > 3  # the chat template was applied


@pytest.mark.slow
def test_smollm2_speculative_output_is_identical_to_plain():
    """The embedded model with its distilled draft (built on first use) and with prompt lookup."""
    from budgetune.infer.draft import embedded_draft_path, load_draft
    from budgetune.models import load_model, load_tokenizer

    tok = load_tokenizer("smollm2-135m")
    model = load_model("smollm2-135m").eval()
    draft = load_draft(str(embedded_draft_path("smollm2-135m")), model, tok)
    prompts = ["What is the capital of France?", REPEAT[0]]
    plain = generate(model, tok, prompts, max_new_tokens=24)
    for spec in (Speculation(kind="draft", draft=draft, draft_tokens=3), Speculation(kind="prompt-lookup")):
        fast = generate(model, tok, prompts, max_new_tokens=24, speculation=spec)
        assert [r.text for r in fast] == [r.text for r in plain]
        assert sum(r.draft_accepted for r in fast) > 0
