"""The run directory: config.json, metrics.jsonl, decisions.jsonl, ledger.json, checkpoints/, the result."""

from __future__ import annotations

import json
from pathlib import Path

from .. import atomic


class RunDir:
    def __init__(self, path: Path, *, writer: bool = True):
        self.path = Path(path)
        self.writer = writer  # only the main process writes
        if writer:
            self.path.mkdir(parents=True, exist_ok=True)

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def decisions(self) -> Path:
        return self.path / "decisions.jsonl"

    def append(self, file: Path, record: dict) -> None:
        if not self.writer:
            return
        with open(file, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
            f.flush()

    def truncate_after(self, step: int) -> None:
        """On resume, drop records written after the checkpoint, so nothing is logged twice."""
        if not self.writer:
            return
        for file in (self.metrics, self.decisions):
            if file.exists():
                kept = [line for line in file.read_text(encoding="utf-8").splitlines()
                        if line.strip() and json.loads(line).get("step", 0) <= step]
                atomic.write_text(file, "".join(line + "\n" for line in kept))

    def write_json(self, name: str, obj) -> None:
        if self.writer:
            atomic.write_json(self.path / name, obj)


def read_jsonl(path: Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
