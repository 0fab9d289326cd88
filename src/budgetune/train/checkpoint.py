"""Atomic, resumable checkpoints: trainable weights as safetensors, optimizer/method state as a torch file read
back with weights_only=True, and the loop's state (data position, ledger, governor) as JSON.

A checkpoint directory appears by one rename, so a run killed at any moment finds either the whole checkpoint or
none of it.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .. import atomic
from ..errors import UserError

_NAME = re.compile(r"^step-(\d{8})$")


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and _NAME.match(p.name))


def save(run_dir: Path, step: int, weights: dict[str, torch.Tensor], method_state: dict, state: dict,
         keep: int = 2, protect: int | None = None) -> Path:
    """Write step's checkpoint and drop all but the newest `keep` (the step `protect` names, the best evaluation's
    that train/best.py may restore, is kept as well)."""
    path = Path(run_dir) / "checkpoints" / f"step-{step:08d}"
    with atomic.atomic_dir(path) as tmp:
        # safetensors refuses tensors that share storage (tied embeddings): store contiguous copies.
        save_file({k: v.detach().contiguous().clone() for k, v in weights.items()}, str(tmp / "weights.safetensors"))
        torch.save(method_state, tmp / "state.pt")
        atomic.write_json(tmp / "state.json", state)
    for old in checkpoint_dirs(run_dir)[:-max(1, keep)]:
        if protect is None or old.name != f"step-{protect:08d}":
            shutil.rmtree(old, ignore_errors=True)
    return path


def load_step(run_dir: Path, step: int) -> tuple[dict, dict] | None:
    """(weights, method state) of step's checkpoint, or None when it is not on disk."""
    path = Path(run_dir) / "checkpoints" / f"step-{step:08d}"
    return _read(path)[:2] if path.is_dir() else None


def load_latest(run_dir: Path) -> tuple[dict, dict, dict] | None:
    """(weights, method state, loop state) of the newest checkpoint, or None when there is none."""
    dirs = checkpoint_dirs(run_dir)
    if not dirs:
        return None
    return _read(dirs[-1])


def _read(path: Path) -> tuple[dict, dict, dict]:
    """(weights, method state, loop state) of one checkpoint directory, or the one-line error for a damaged one."""
    try:
        weights = load_file(str(path / "weights.safetensors"))
        method_state = torch.load(path / "state.pt", weights_only=True, map_location="cpu")
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
        if not isinstance(state, dict) or not isinstance(state.get("loop"), dict) or "ledger" not in state:
            raise ValueError("state.json is not a checkpoint state")
    except Exception as e:  # noqa: BLE001 — safetensors, torch and json each raise their own types for a damaged file
        raise UserError(f"{path}: damaged checkpoint ({type(e).__name__}); delete it to resume from the one before") from None
    return weights, method_state, state
