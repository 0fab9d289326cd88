"""`budgetune select`: files written, --json summary, and one-line errors for bad input."""

from __future__ import annotations

import json

import pytest

from budgetune.cli import main

ROWS = [{"prompt": f"Question number {i}?", "response": "Answer " + "word " * (i % 5 + 1), "category": "c"}
        for i in range(20)]


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture
def files(tmp_path):
    return write(tmp_path / "pool.jsonl", ROWS), write(tmp_path / "target.jsonl", ROWS[:3]), tmp_path


def test_select_writes_subset_scores_and_summary(files, capsys):
    pool, target, tmp = files
    out = tmp / "subset.jsonl"
    code = main(["select", "--data", pool, "--target", target, "--scorer", "length", "--budget", "25%",
                 "--out", str(out), "--json", "--model", "none"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"scorer", "selected", "pool", "tokens", "flops"} <= set(summary)
    assert summary["selected"] == 5 and summary["pool"] == 20 and summary["scorer"] == "length"
    subset = [json.loads(l) for l in out.read_text().splitlines()]
    assert len(subset) == 5 and all(r["messages"][1]["role"] == "assistant" for r in subset)
    assert min(r["score"] for r in subset) >= max(json.loads(l)["score"] for l in
                                                  (tmp / "subset.jsonl.scores.jsonl").read_text().splitlines()
                                                  if not json.loads(l)["selected"])
    assert json.loads((tmp / "subset.jsonl.summary.json").read_text())["selected"] == 5
    # the subset reads back as data
    assert main(["select", "--data", str(out), "--target", target, "--scorer", "random", "--budget", "2",
                 "--out", str(tmp / "again.jsonl"), "--model", "none"]) == 0


@pytest.mark.parametrize("extra, message", [
    (["--budget", "0"], "selects nothing"),
    (["--budget", "150%"], "over 100%"),
    (["--budget", "5%", "--scorer", "loss"], "needs a model"),
    (["--budget", "5%", "--scorer", "wat"], "unknown scorer"),
])
def test_bad_input_is_one_line(files, capsys, extra, message):
    pool, target, tmp = files
    args = ["select", "--data", pool, "--target", target, "--scorer", "random", "--out", str(tmp / "o.jsonl"),
            "--model", "none"] + extra
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_empty_target_and_missing_fields(files, capsys):
    pool, _, tmp = files
    empty = write(tmp / "empty.jsonl", [])
    assert main(["select", "--data", pool, "--target", empty, "--scorer", "dsir", "--budget", "5%",
                 "--out", str(tmp / "o.jsonl"), "--model", "none"]) == 2
    assert "empty" in capsys.readouterr().err
    broken = write(tmp / "broken.jsonl", [{"prompt": "hi"}])
    assert main(["select", "--data", broken, "--target", pool, "--scorer", "random", "--budget", "5%",
                 "--out", str(tmp / "o.jsonl"), "--model", "none"]) == 2
    err = capsys.readouterr().err.strip()
    assert "missing field 'response'" in err and len(err.splitlines()) == 1
