"""`budgetune run` on the real embedded default (SmolLM2-135M-Instruct, chatterbot-corpus), a few steps."""

from __future__ import annotations

import subprocess
import sys


def test_run_on_the_embedded_default(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "budgetune.cli", "run", "--out", str(out), "--max-steps", "3",
                           "--micro-batch-size", "4", "--heldout-fraction", "0.01", "--generation-eval", "0",
                           "--checkpoint-every", "2", "--max-seconds", "none", "--max-flops", "none"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout
    for needle in ("held-out loss", "FLOPs", "train", "eval", "stopped      max_steps reached (3 steps)",
                   "report.html"):
        assert needle in text, text
    before, after = (float(x) for x in text.split("held-out loss")[1].split("(")[0].split("→"))
    assert after < before  # three LoRA steps on real data already lower the held-out loss
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page and "<h2>Compute by phase</h2>" in page
    assert (out / "adapter" / "adapter_model.safetensors").exists()
    assert (out / "metrics.jsonl").exists() and (out / "ledger.json").exists()
