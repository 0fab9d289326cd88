"""Charging work done outside the training loop (eval, generate) to a run's ledger, under the run directory's
writer lock: the record goes to charges.json and is folded into ledger.json (budget.fold_outside), both replaced
whole. Kept apart from budget.py, which knows nothing of run directories or locks."""

from __future__ import annotations

from pathlib import Path

from . import atomic
from .budget import CHARGES, Ledger, fold_outside, read_charges
from .runlock import hold, holder, refuse


def charge_outside(ledger_path: str | Path, spent: Ledger, command: str, extra: dict | None = None) -> Ledger:
    """Add `spent`, the work of one command outside the training loop, to the ledger at `ledger_path` and to the
    charges record beside it; returns the updated ledger. Both files are replaced whole (temp name, then rename),
    under the run directory's writer lock."""
    path = Path(ledger_path)
    with hold(path.parent):
        ledger = Ledger.load(path) if path.exists() else Ledger()
        records = read_charges(path.parent)
        records.append({"command": command, "flops": spent.flops, "tokens": spent.tokens, "seconds": spent.seconds,
                        **(extra or {})})
        atomic.write_json(path.parent / CHARGES, records)
        fold_outside(ledger, records)
        ledger.save(path)
    return ledger


def check_outside(ledger_path: str | Path) -> None:
    """Read the ledger and charges record `charge_outside` will update, so a bad file fails before any work."""
    path = Path(ledger_path)
    pid = holder(path.parent) if path.parent.is_dir() else None
    if pid is not None:  # the run is being written: its writer keeps the ledger
        raise refuse(path.parent, pid)
    if path.exists():
        Ledger.load(path)
    read_charges(path.parent)
