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
    assert len(subset) == 5 and all(list(r) == ["prompt", "response", "category"] for r in subset)
    scores = [json.loads(l) for l in (tmp / "subset.jsonl.scores.jsonl").read_text().splitlines()]
    picked = [s["score"] for s in scores if s["selected"]]
    assert len(picked) == 5 and min(picked) >= max(s["score"] for s in scores if not s["selected"])
    # the longest answers (length scorer): rows 4, 9, 14, 19 have 5 words, then a 4-word row
    assert {json.loads(l)["prompt"] for l in out.read_text().splitlines()} >= {
        f"Question number {i}?" for i in (4, 9, 14, 19)}
    assert json.loads((tmp / "subset.jsonl.summary.json").read_text())["selected"] == 5
    # the subset reads back as data
    assert main(["select", "--data", str(out), "--target", target, "--scorer", "random", "--budget", "2",
                 "--out", str(tmp / "again.jsonl"), "--model", "none"]) == 0


def test_select_out_round_trips_the_input_records(tmp_path):
    # Odd field order, extra fields, non-ASCII text and the writer's own spacing: all kept as they were.
    lines = [json.dumps({"id": i, "response": f"Réponse numéro {i} " + "mot " * i, "meta": {"k": [i, None]},
                         "prompt": f"Question {i} — pourquoi?"}, ensure_ascii=i % 2 == 0,
                        separators=(",", ":") if i % 3 else (", ", ": "))
             for i in range(12)]
    pool = tmp_path / "pool.jsonl"
    pool.write_text("\n".join(lines) + "\n", encoding="utf-8")
    target = write(tmp_path / "target.jsonl", ROWS[:4])
    out = tmp_path / "subset.jsonl"
    assert main(["select", "--data", str(pool), "--target", target, "--scorer", "length", "--budget", "50%",
                 "--out", str(out), "--model", "none"]) == 0
    written = out.read_text(encoding="utf-8").splitlines()
    assert len(written) == 6 and set(written) <= set(lines)
    # the longest six responses are those of records 6..11
    assert sorted(json.loads(l)["id"] for l in written) == list(range(6, 12))
    # a JSON (not JSONL) input: the same records, fields in the same order
    as_json = tmp_path / "pool.json"
    as_json.write_text(json.dumps([json.loads(l) for l in lines], ensure_ascii=False), encoding="utf-8")
    assert main(["select", "--data", str(as_json), "--target", target, "--scorer", "length", "--budget", "50%",
                 "--out", str(tmp_path / "j.jsonl"), "--model", "none"]) == 0
    records = [json.loads(l) for l in (tmp_path / "j.jsonl").read_text(encoding="utf-8").splitlines()]
    originals = {r["id"]: r for r in map(json.loads, lines)}
    assert all(list(r.items()) == list(originals[r["id"]].items()) for r in records) and len(records) == 6


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
