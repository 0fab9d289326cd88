"""bench/gpu_memory_check.py's CPU-testable parts: its case list covers every method, its doc is written from
measured rows, and without CUDA it skips cleanly and writes nothing."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "gpu_memory_check.py"


@pytest.fixture(scope="module")
def check():
    spec = importlib.util.spec_from_file_location("gpu_memory_check", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_cases_cover_every_registered_method_including_qlora_and_8bit_adam(check):
    from budgetune.methods import registry

    methods = {c.method for c in check.cases()}
    assert methods == set(registry.names())
    assert {"qlora", "adamw8bit"} <= methods
    shapes = {(c.model, c.precision, c.batch, c.seq_len, c.checkpointing, c.padding) for c in check.cases()}
    assert len(shapes) == len(check.SHAPES)
    # a method that cannot run pure bf16 is not asked to
    assert not [c for c in check.cases() if c.method == "mezo" and c.precision == "bf16"]
    assert any(c.padding > 0 for c in check.cases()) and any(c.padding == 0 for c in check.cases())


def test_doc_reports_each_case_against_cuda(check):
    case = check.cases(quick=True)[0]
    gib = 2**30
    rows = [check.row_of(case, 2 * gib, 2 * gib + gib // 10, None, 1.0),
            check.row_of(case, 4 * gib, 3 * gib, 4 * gib, 1.0)]
    text = check.markdown(rows, "NVIDIA Test GPU", 3)
    assert text.startswith("# gpu_memory") and "NVIDIA Test GPU" in text
    assert "| 2.00 | 2.10 (+5.0%) | - |" in text  # (2.1 - 2) / 2
    assert "| 4.00 | 3.00 (-25.0%) | 4.00 (+0.0%) |" in text
    assert "1 under by more than 2%" in text and "worst 25.0%" in text


def test_without_cuda_it_skips_cleanly_and_writes_nothing(check, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    doc = Path(check.ROOT) / "docs" / "benchmarks" / "gpu_memory.md"
    before = doc.read_bytes() if doc.exists() else None
    assert check.main([]) == 0
    assert "skipped: no CUDA device" in capsys.readouterr().out
    assert (doc.read_bytes() if doc.exists() else None) == before
