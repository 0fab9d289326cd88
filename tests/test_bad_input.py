"""The bad-input corpus: every verb, every case one line on stderr, exit 2, no traceback, and the directory the
command was pointed at byte-identical afterwards (nothing created, nothing half-written, nothing removed).

The CLI runs in-process (budgetune.cli.main) so the corpus stays fast; every case fails before any training.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import TINY_LLAMA
from helpers import small_split, tiny_run_config

from budgetune import cli


def snapshot(root: Path) -> dict:
    """Every path under `root` with the sha256 of its bytes (None for a directory)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = None
        for f in filenames:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = hashlib.sha256(Path(p).read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_config_path, tokenizer):
    """A finished two-step LoRA run of the tiny model on the embedded data (copied by the cases that need one)."""
    from budgetune.train.loop import train

    root = tmp_path_factory.mktemp("finished")
    cfg = tiny_run_config(tiny_config_path, root / "run", max_steps=2)
    train(cfg, tokenizer=tokenizer, data=small_split(tokenizer), progress=False)
    return root / "run"


@pytest.fixture
def ws(tmp_path, tiny_config_path, finished):
    """A workspace: the tiny model's config, model files good and bad, data and prompt files, a copy of a finished
    run, a user's directory and a plain file."""
    w = tmp_path / "ws"
    w.mkdir()
    (w / "model.json").write_text(Path(tiny_config_path).read_text())
    (w / "garbage.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + os.urandom(200))
    (w / "nosize.json").write_text(json.dumps({"model_type": "llama", "vocab_size": 49152}))
    (w / "typo.json").write_text(json.dumps({**TINY_LLAMA, "model_type": "lamma"}))
    (w / "broken.json").write_text('{"model_type": "llama", "hidden_size": ')
    (w / "obj_prompt.jsonl").write_text(json.dumps({"prompt": {"text": "hi"}, "response": "hello"}) + "\n")
    (w / "num_response.jsonl").write_text(json.dumps({"prompt": "how many?", "response": 42}) + "\n")
    (w / "bad_prompts.jsonl").write_text('{"prompt": "fine"}\n{not json\n')
    (w / "file.txt").write_text("a plain file\n")
    user = w / "mine"
    (user / "adapter").mkdir(parents=True)
    (user / "adapter" / "notes.bin").write_bytes(b"the user's bytes")
    (user / "config.json").write_text('{"my": "settings"}')
    (user / "metrics.jsonl").write_text('{"mine": 1}\n')
    shutil.copytree(finished, w / "run", ignore=shutil.ignore_patterns(".lock"))
    for name, damage in (("run_badcfg", "config"), ("run_badweights", "weights"), ("run_badlog", "log"),
                         ("run_badcharges", "charges")):
        d = w / name
        shutil.copytree(finished, d, ignore=shutil.ignore_patterns(".lock"))
        if damage == "config":
            (d / "config.json").write_text('{"model": {"model": ')
        elif damage == "weights":
            for ck in (d / "checkpoints").iterdir():
                f = ck / "weights.safetensors"
                f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])
        elif damage == "log":
            lines = (d / "metrics.jsonl").read_text().splitlines()
            lines.insert(1, '{"kind": "train", "st')
            (d / "metrics.jsonl").write_text("\n".join(lines) + "\n")
        else:
            (d / "charges.json").write_text('{"not": "a list"}')
    (w / "c_inf.yaml").write_text("budget:\n  max_flops: .inf\n")
    (w / "c_nan.yaml").write_text("train:\n  lr: .nan\n")
    (w / "c_typo.yaml").write_text("train:\n  lrr: 1e-3\n")
    (w / "c_syntax.yaml").write_text("train: [1, 2\n")
    (w / "c_neg.yaml").write_text("data:\n  max_seq_len: -5\n")
    (w / "c_bool.yaml").write_text("train:\n  micro_batch_size: true\n")
    return w


def RUN(*extra, out="new"):
    """A `run` of the tiny model into WS/<out> (WS is replaced by the workspace path)."""
    return ["run", "--model", "WS/model.json", "--generation-eval", "0", "--max-steps", "2", "--no-report",
            *(["--out", f"WS/{out}"] if out else []), *extra]


# (case id, argv with WS for the workspace, a fragment the one line must hold, the directory that must not change)
CASES = [
    # run: numbers checked finite and in range
    ("lr-nan", RUN("--lr", "nan"), "not a finite number", "."),
    ("lr-inf", RUN("--lr", "inf"), "not a finite number", "."),
    ("lr-1e400", RUN("--lr", "1e400"), "not a finite number", "."),
    ("lr-negative", RUN("--lr", "-1"), "'train.lr'", "."),
    ("lr-zero", RUN("--lr", "0"), "'train.lr'", "."),
    ("lr-1e38", RUN("--lr", "1e38"), "'train.lr'", "."),
    ("lr-text", RUN("--lr", "abc"), "not a valid float", "."),
    ("max-flops-nan", RUN("--max-flops", "nan"), "not a finite number", "."),
    ("max-flops-1e400", RUN("--max-flops", "1e400"), "not a finite number", "."),
    ("max-flops-negative", RUN("--max-flops", "-5"), "max_flops", "."),
    ("max-tokens-zero", RUN("--max-tokens", "0"), "max_tokens", "."),
    ("max-seconds-inf", RUN("--max-seconds", "inf"), "not a finite number", "."),
    ("max-seq-len-negative", RUN("--max-seq-len", "-5"), "'data.max_seq_len'", "."),
    ("max-seq-len-one", RUN("--max-seq-len", "1"), "'data.max_seq_len'", "."),
    ("checkpoint-every-negative", RUN("--checkpoint-every", "-1"), "'train.checkpoint_every'", "."),
    ("keep-checkpoints-zero", RUN("--keep-checkpoints", "0"), "'train.keep_checkpoints'", "."),
    ("heldout-fraction", RUN("--heldout-fraction", "1.5"), "'data.heldout_fraction'", "."),
    ("decay-fraction", RUN("--decay-fraction", "2"), "'train.decay_fraction'", "."),
    ("micro-batch-zero", RUN("--micro-batch-size", "0"), "micro_batch_size", "."),
    ("grad-accum-zero", RUN("--grad-accum", "0"), "grad_accum", "."),
    ("warmup-negative", RUN("--warmup-steps", "-1"), "warmup_steps", "."),
    ("weight-decay-negative", RUN("--weight-decay", "-0.1"), "weight_decay", "."),
    ("max-steps-zero", RUN("--max-steps", "0"), "max_steps", "."),
    ("max-steps-fraction", RUN("--max-steps", "2.5"), "not a valid int", "."),
    ("eval-every-negative", RUN("--eval-every", "-2"), "eval_every", "."),
    ("seed-negative", RUN("--seed", "-1"), "'train.seed'", "."),
    ("retries-negative", RUN("--nonfinite-retries", "-1"), "nonfinite_retries", "."),
    ("generation-eval-negative", RUN("--generation-eval", "-1"), "generation_eval", "."),
    ("max-memory-text", RUN("--max-memory", "lots"), "not a size", "."),
    ("max-memory-dots", RUN("--max-memory", "..GiB"), "not a size", "."),
    ("method-unknown", RUN("--method", "nope"), "unknown method 'nope'", "."),
    ("method-option-no-equals", RUN("-o", "r8"), "not KEY=VALUE", "."),
    ("method-option-unknown", RUN("-o", "rank=4"), "has no option 'rank'", "."),
    ("selection-not-json", RUN("--selection", "{scorer"), "not valid JSON", "."),
    ("unknown-flag", RUN("--lrr", "1"), "unrecognized arguments", "."),
    # run: where it may write
    ("out-is-a-file", RUN(out="file.txt"), "is a file", "."),
    ("out-under-a-file", RUN(out="file.txt/run"), "which is a file", "."),
    ("out-user-directory", RUN(out="mine"), "not a budgetune run", "."),
    ("overwrite-user-directory", RUN("--overwrite", out="mine"), "not a budgetune run", "."),
    ("out-earlier-run", RUN(out="run"), "holds an earlier run", "."),
    ("resume-without-out", RUN("--resume", out=None), "--resume needs", "."),
    ("resume-not-a-run", ["run", "--resume", "--out", "WS/nothing-here"], "not a run directory", "."),
    ("resume-user-directory", ["run", "--resume", "--out", "WS/mine"], "not a run directory", "."),
    ("resume-corrupt-config", ["run", "--resume", "--out", "WS/run_badcfg"], "not valid JSON", "."),
    ("resume-truncated-weights", ["run", "--resume", "--out", "WS/run_badweights"], "damaged checkpoint", "."),
    ("resume-damaged-metrics", ["run", "--resume", "--out", "WS/run_badlog"], "metrics.jsonl:2", "."),
    ("resume-damaged-charges", ["run", "--resume", "--out", "WS/run_badcharges"], "charges record", "."),
    # run: models and data
    ("gguf-missing", RUN("--model", "WS/absent.gguf"), "no such GGUF file", "."),
    ("gguf-garbage", RUN("--model", "WS/garbage.gguf"), "not a readable GGUF", "."),
    ("config-without-size", RUN("--model", "WS/nosize.json"), "'hidden_size' is missing", "."),
    ("config-unknown-type", RUN("--model", "WS/typo.json"), "did you mean llama", "."),
    ("config-not-json", RUN("--model", "WS/broken.json"), "not a valid JSON config", "."),
    ("model-not-cached", RUN("--model", "no-such-org/no-such-model"), "not in the local Hugging Face cache", "."),
    ("dtype-unknown", RUN("--dtype", "float8"), "dtype 'float8'", "."),
    ("data-missing", RUN("--data", "WS/absent.jsonl"), "absent.jsonl", "."),
    ("data-prompt-object", RUN("--data", "WS/obj_prompt.jsonl", "--target", "WS/obj_prompt.jsonl"),
     "not text", "."),
    ("data-response-number", RUN("--data", "WS/num_response.jsonl", "--target", "WS/num_response.jsonl"),
     "not text", "."),
    # train CONFIG.yaml
    ("yaml-inf", ["train", "WS/c_inf.yaml", "--out", "WS/new"], "not a finite number", "."),
    ("yaml-nan", ["train", "WS/c_nan.yaml", "--out", "WS/new"], "not a finite number", "."),
    ("yaml-typo", ["train", "WS/c_typo.yaml", "--out", "WS/new"], "did you mean lr", "."),
    ("yaml-syntax", ["train", "WS/c_syntax.yaml", "--out", "WS/new"], "not valid YAML", "."),
    ("yaml-negative", ["train", "WS/c_neg.yaml", "--model", "WS/model.json", "--out", "WS/new"],
     "max_seq_len", "."),
    ("yaml-bool-as-int", ["train", "WS/c_bool.yaml", "--out", "WS/new"], "not a valid int", "."),
    ("yaml-missing", ["train", "WS/absent.yaml"], "no such config file", "."),
    # generate
    ("generate-batch-zero", ["generate", "--prompt", "Hi", "--batch-size", "0"], "--batch-size", "."),
    ("generate-budget-nan", ["generate", "--prompt", "Hi", "--flops-budget", "nan"], "--flops-budget", "."),
    ("generate-budget-negative", ["generate", "--prompt", "Hi", "--flops-budget", "-1"], "--flops-budget", "."),
    ("generate-new-tokens-zero", ["generate", "--prompt", "Hi", "--max-new-tokens", "0"], "--max-new-tokens", "."),
    ("generate-draft-tokens-zero", ["generate", "--prompt", "Hi", "--draft-tokens", "0"], "--draft-tokens", "."),
    ("generate-gguf-garbage", ["generate", "--model", "WS/garbage.gguf", "--prompt", "Hi"],
     "not a readable GGUF", "."),
    ("generate-gguf-missing", ["generate", "--model", "WS/absent.gguf", "--prompt", "Hi"], "no such GGUF", "."),
    ("generate-file-missing", ["generate", "--file", "WS/absent.jsonl"], "no such prompt file", "."),
    ("generate-file-bad-line", ["generate", "--file", "WS/bad_prompts.jsonl"], "bad_prompts.jsonl:2", "."),
    ("generate-speculative", ["generate", "--prompt", "Hi", "--speculative", "magic"], "not known", "."),
    ("generate-empty-prompt", ["generate", "--prompt", "  "], "--prompt is empty", "."),
    ("generate-adapter-missing", ["generate", "--adapter", "WS/nothing", "--prompt", "Hi"],
     "no such run directory", "."),
    ("generate-adapter-corrupt", ["generate", "--adapter", "WS/run_badcfg", "--prompt", "Hi"], "not valid JSON",
     "."),
    ("generate-ledger-damaged", ["generate", "--prompt", "Hi", "--ledger", "WS/run_badcharges/ledger.json"],
     "charges record", "."),
    # eval
    ("eval-limit-negative", ["eval", "WS/run", "--limit", "-1"], "--limit", "."),
    ("eval-batch-zero", ["eval", "WS/run", "--batch-size", "0"], "--batch-size", "."),
    ("eval-new-tokens-zero", ["eval", "WS/run", "--max-new-tokens", "0"], "--max-new-tokens", "."),
    ("eval-missing", ["eval", "WS/nothing"], "no such run directory", "."),
    ("eval-corrupt-config", ["eval", "WS/run_badcfg"], "not valid JSON", "."),
    ("eval-user-directory", ["eval", "WS/mine"], "mine", "."),
    # select
    ("select-out-directory", ["select", "--scorer", "random", "--budget", "5", "--out", "WS/mine"],
     "is a directory", "."),
    ("select-out-under-file", ["select", "--scorer", "random", "--budget", "5", "--out", "WS/file.txt/s.jsonl"],
     "which is a file", "."),
    ("select-max-seq-len", ["select", "--scorer", "random", "--budget", "5", "--out", "WS/s.jsonl",
                            "--max-seq-len", "-5"], "--max-seq-len", "."),
    ("select-dedup", ["select", "--scorer", "random", "--budget", "5", "--out", "WS/s.jsonl", "--dedup", "2"],
     "--dedup", "."),
    ("select-budget", ["select", "--scorer", "random", "--budget", "lots", "--out", "WS/s.jsonl"], "lots", "."),
    ("select-scorer", ["select", "--scorer", "nope", "--budget", "5", "--out", "WS/s.jsonl"], "nope", "."),
    # plan
    ("plan-memory-text", ["plan", "--model", "WS/model.json", "--gpu-memory", "lots"], "not a size", "."),
    ("plan-seq-len-zero", ["plan", "--model", "WS/model.json", "--gpu-memory", "24GiB", "--seq-len", "0"],
     "--seq-len", "."),
    ("plan-mfu-zero", ["plan", "--model", "WS/model.json", "--gpu-memory", "24GiB", "--mfu", "0"], "--mfu", "."),
    ("plan-tflops-nan", ["plan", "--model", "WS/model.json", "--gpu-memory", "24GiB", "--tflops", "nan"],
     "--tflops", "."),
    ("plan-gguf-garbage", ["plan", "--model", "WS/garbage.gguf", "--gpu-memory", "24GiB"], "garbage.gguf", "."),
    ("plan-config-without-size", ["plan", "--model", "WS/nosize.json", "--gpu-memory", "24GiB"], "nosize.json",
     "."),
    # scaling, report
    ("scaling-flops-nan", ["scaling", "fit", "WS/run", "--flops", "nan"], "--flops", "."),
    ("report-missing", ["report", "WS/nothing"], "nothing", "."),
]


def test_corpus_is_large_and_covers_every_verb():
    assert len(CASES) >= 60
    assert len({c[0] for c in CASES}) == len(CASES)
    verbs = {c[1][0] for c in CASES}
    assert verbs >= {"run", "train", "plan", "select", "scaling", "generate", "eval", "report"}


@pytest.mark.parametrize("case,argv,needle,touched", CASES, ids=[c[0] for c in CASES])
def test_bad_input_one_line_exit_2_nothing_touched(ws, capsys, case, argv, needle, touched):
    argv = [a.replace("WS", str(ws)) for a in argv]
    root = ws / touched
    before = snapshot(root)
    try:
        rc = cli.main(argv)
    except SystemExit as e:  # argparse refusing a flag
        rc = e.code
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.strip() and "warn" not in line.lower()]
    assert rc == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert needle in lines[0], lines[0]
    assert len(lines[0]) < 600, lines[0]  # long lists are cut to the closest few
    assert snapshot(root) == before
