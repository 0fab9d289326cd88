"""Two CPU processes under `accelerate launch` (gloo): the run finishes and its ledger counts global work."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = str(Path(__file__).with_name("ddp_train.py"))


def _launch(args, out, timeout=420):
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "result.json").read_text())


@pytest.mark.skipif(shutil.which("accelerate") is None, reason="accelerate CLI not installed")
def test_two_process_run_counts_global_flops(tmp_path, tiny_config_path):
    single = _launch([sys.executable, SCRIPT, str(tmp_path / "one"), tiny_config_path], tmp_path / "one")
    double = _launch(["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                      "--mixed_precision", "no", "--dynamo_backend", "no", SCRIPT, str(tmp_path / "two"),
                      tiny_config_path], tmp_path / "two")
    assert double["world"] == 2 and single["world"] == 1
    # Same global batches in the same order: every token counted once across both processes.
    assert double["ledger"]["tokens"]["train"] == single["ledger"]["tokens"]["train"]
    assert double["ledger"]["tokens"]["eval"] == single["ledger"]["tokens"]["eval"]
    # Per-process padding differs a little; a rank-local count would be about half.
    ratio = double["ledger"]["flops"]["train"] / single["ledger"]["flops"]["train"]
    assert 0.8 < ratio <= 1.0
    assert double["ledger"]["steps"] == single["ledger"]["steps"] == 3
