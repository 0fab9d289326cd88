"""The command line: fast help, flags generated from the config, one-line errors with exit code 2."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from budgetune import cli
from budgetune.commands.options import add_config_flags, apply_flags
from budgetune.config import default_run_config, load_yaml


def _run(*argv, timeout=120):
    return subprocess.run([sys.executable, "-m", "budgetune.cli", *argv], capture_output=True, text=True,
                          timeout=timeout)


def test_help_is_fast_and_documents_fields():
    start = time.perf_counter()
    proc = _run("run", "--help")
    assert proc.returncode == 0
    assert "--max-flops" in proc.stdout and "stop when this many FLOPs" in proc.stdout
    assert "--method-option" in proc.stdout
    # transformers is never imported for --help (it alone takes seconds).
    check = _run("--help")
    assert check.returncode == 0
    assert time.perf_counter() - start < 60
    probe = subprocess.run([sys.executable, "-c", ("import sys, budgetune.cli as c; c.build_parser(); "
                            "print('transformers' in sys.modules, 'peft' in sys.modules)")],
                           capture_output=True, text=True, timeout=120)
    assert probe.stdout.strip() == "False False", probe.stderr


def test_flags_override_only_what_was_given():
    import argparse

    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    args = parser.parse_args(["--lr", "3e-4", "--max-flops", "1e12", "-o", "r=8", "--gradient-checkpointing"])
    cfg = apply_flags(default_run_config(), args)
    assert cfg.train.lr == 3e-4 and cfg.budget.max_flops == 1e12
    assert cfg.train.method_options == {"r": "8"} and cfg.train.gradient_checkpointing is True
    assert cfg.train.micro_batch_size == default_run_config().train.micro_batch_size


def test_yaml_config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  method: full\n  lr: 1e-5\nbudget:\n  max_flops: 1e12\n")
    cfg = load_yaml(path)
    assert cfg.train.method == "full" and cfg.train.lr == 1e-5 and cfg.budget.max_flops == 1e12


@pytest.mark.parametrize("yaml_text,needle", [
    ("train:\n  lrr: 1\n", "unknown field 'train.lrr'"),
    ("budget:\n  max_flops: lots\n", "field 'budget.max_flops'"),
    ("train: [1, 2\n", "not valid YAML"),
    ("nonsense: 1\n", "unknown section 'nonsense'"),
])
def test_bad_yaml_one_line(tmp_path, yaml_text, needle):
    path = tmp_path / "c.yaml"
    path.write_text(yaml_text)
    proc = _run("train", str(path))
    assert proc.returncode == 2
    assert needle in proc.stderr and str(path) in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


@pytest.mark.parametrize("argv,needle", [
    (["--method", "nope"], "unknown method 'nope'"),
    (["-o", "rank=4"], "has no option 'rank'"),
    (["-o", "r=0"], "r=0 must be at least 1"),
    (["--max-flops", "-5"], "max_flops"),
    (["--micro-batch-size", "0"], "micro_batch_size"),
    (["--model", "no-such-org/no-such-model"], "not in the local Hugging Face cache"),
])
def test_bad_flags_one_line(tmp_path, tiny_config_path, argv, needle):
    model = [] if "--model" in argv else ["--model", tiny_config_path]
    proc = _run("run", *model, "--out", str(tmp_path / "r"), "--generation-eval", "0", *argv, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_no_verb_prints_help():
    assert cli.main([]) == 2
