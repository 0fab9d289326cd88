"""Generation-based evaluation: SQuAD-style token F1, ROUGE-L, the held-out loop and the report fragment."""

from __future__ import annotations

import pytest

from budgetune.budget import Ledger
from budgetune.data import Example
from budgetune.infer.evaluate import (
    generation_eval,
    normalize_answer,
    samples_html,
    token_f1,
)


def test_token_f1_follows_squad():
    assert normalize_answer("The  Cat, sat!") == "cat sat"
    assert token_f1("the cat sat", "A cat sat.") == 1.0
    assert token_f1("dog", "cat") == 0.0
    # 2 shared words: precision 2/3, recall 2/4 → F1 = 2·(2/3)(1/2)/(2/3+1/2)
    assert token_f1("cat sat down", "cat sat on mat") == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert token_f1("", "") == 1.0 and token_f1("", "x") == 0.0


def _examples():
    qa = [("What is 2+2?", "Four."), ("Name a colour.", "Blue is a colour."), ("Say hi", "Hi there!")]
    out = [Example([1], [1], "c", messages=[{"role": "user", "content": q}, {"role": "assistant", "content": a}])
           for q, a in qa]
    out.append(Example([1, 2], [1, 2], "text"))  # plain text: nothing to answer, skipped
    return out


def test_generation_eval_scores_and_charges(tiny_model, tokenizer):
    ledger = Ledger()
    result = generation_eval(tiny_model, tokenizer, _examples(), max_new_tokens=6, limit=2, ledger=ledger)
    assert result["n"] == 2 and len(result["samples"]) == 2
    assert 0.0 <= result["f1"] <= 1.0 and 0.0 <= result["rougeL"] <= 1.0
    assert result["flops"] > 0 and ledger.flops["eval"] == pytest.approx(result["flops"])
    s = result["samples"][0]
    assert s["reference"] == "Four." and s["prompt"] == "What is 2+2?"
    assert s["f1"] == pytest.approx(token_f1(s["output"], s["reference"]))
    assert generation_eval(tiny_model, tokenizer, _examples()[3:])["n"] == 0


def test_samples_html_is_escaped_and_side_by_side():
    sample = {"prompt": "<b>q</b>", "reference": "ref", "output": "old", "f1": 0.0, "rougeL": 0.0}
    before = {"f1": 0.1, "rougeL": 0.2, "n": 1, "samples": [sample]}
    after = {"f1": 0.5, "rougeL": 0.6, "n": 1, "samples": [{**sample, "output": "new & better", "f1": 1.0}]}
    page = samples_html(before, after)
    assert "&lt;b&gt;q&lt;/b&gt;" in page and "<b>q</b>" not in page
    assert "old" in page and "new &amp; better" in page
    assert page.index("0.100") < page.index("0.500")


def test_a_peft_wrapped_model_is_metered(tiny_model, tokenizer):
    """`budgetune run` evaluates the LoRA-wrapped model it trained; its passes must still be counted."""
    from peft import LoraConfig, get_peft_model

    wrapped = get_peft_model(tiny_model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    result = generation_eval(wrapped, tokenizer, _examples(), max_new_tokens=3, limit=1)
    assert result["n"] == 1 and result["flops"] > 0 and result["tokens"] > 0
