"""The generate and eval verbs end to end on a tiny model, and their one-line errors for bad input."""

from __future__ import annotations

import json

import pytest

from budgetune.cli import main


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_empty_prompt_file_is_one_line(tmp_path, capsys):
    empty = tmp_path / "prompts.jsonl"
    empty.write_text("\n")
    code, _, err = _run(capsys, "generate", "--file", str(empty))
    assert code == 2 and "empty" in err and len(err.strip().splitlines()) == 1


def test_budget_below_prefill_is_one_line(tiny_config_path, capsys):
    code, _, err = _run(capsys, "generate", "--model", tiny_config_path, "--prompt", "hello there",
                        "--flops-budget", "1000")
    assert code == 2 and "prefill" in err and len(err.strip().splitlines()) == 1


def test_draft_with_another_tokenizer_is_one_line(tiny_config_path, tmp_path, capsys):
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    other = tmp_path / "other-draft"
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"<unk>": 0, "hi": 1}, "<unk>")),
                                  unk_token="<unk>", eos_token="<unk>")
    tok.save_pretrained(other)
    code, _, err = _run(capsys, "generate", "--model", tiny_config_path, "--prompt", "hi", "--max-new-tokens", "2",
                        "--speculative", f"draft:{other}")
    assert code == 2 and "tokenizer differs" in err and len(err.strip().splitlines()) == 1


def test_generate_json_for_a_prompt_file(tiny_config_path, tmp_path, capsys):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('"What is up?"\n{"prompt": "Name a fruit"}\n'
                       '{"messages": [{"role": "user", "content": "Hi"}]}\n')
    code, out, _ = _run(capsys, "generate", "--model", tiny_config_path, "--file", str(prompts),
                        "--max-new-tokens", "3", "--speculative", "prompt-lookup", "--json")
    assert code == 0
    result = json.loads(out)
    assert len(result["results"]) == 3 and result["summary"]["flops"] > 0
    assert all(1 <= r["new_tokens"] <= 3 and r["kv_cache_bytes"] > 0 for r in result["results"])


@pytest.fixture
def run_dir(tiny_config_path, tmp_path):
    from peft import LoraConfig, get_peft_model

    from budgetune.models import load_model

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"model": {"model": tiny_config_path, "dtype": "float32"},
                                                 "data": {"data": "chatterbot"}}))
    model = get_peft_model(load_model(tiny_config_path, seed=0),
                           LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    model.save_pretrained(run / "adapter")
    return run


def test_generate_with_adapter_charges_the_run_ledger(run_dir, capsys):
    code, out, _ = _run(capsys, "generate", "--adapter", str(run_dir), "--prompt", "Hi", "--max-new-tokens", "3")
    assert code == 0 and "FLOPs" in out
    ledger = json.loads((run_dir / "ledger.json").read_text())
    assert ledger["flops"]["inference"] > 0


def test_eval_scores_before_and_after(run_dir, capsys):
    code, out, _ = _run(capsys, "eval", str(run_dir), "--limit", "2", "--max-new-tokens", "3")
    assert code == 0 and "before" in out and "after" in out
    saved = json.loads((run_dir / "generation_eval.json").read_text())
    assert saved["before"]["n"] == saved["after"]["n"] == 2
    # a random LoRA update changes the model, so at least one answer should differ
    before = [s["output"] for s in saved["before"]["samples"]]
    after = [s["output"] for s in saved["after"]["samples"]]
    assert before != after
    assert json.loads((run_dir / "ledger.json").read_text())["flops"]["eval"] > 0
