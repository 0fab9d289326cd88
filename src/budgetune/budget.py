"""What a run may spend (Budget) and what it has spent (Ledger).

The ledger is saved in the run directory and inside every checkpoint. On resume the checkpoint's copy wins,
so work done after the last checkpoint is redone and counted once, never twice. Work done on a run by other
commands (`budgetune eval`, `generate --adapter`) is never redone, so it is also kept apart, one record per
command in RUN_DIR/charges.json; the ledger counts how many of those it holds and a resumed run folds in the rest.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import atomic
from .errors import UserError

PHASES = ("selection", "train", "eval", "inference")


@dataclass
class Budget:
    """Limits on a run; any limit left as None is not enforced."""

    max_flops: float | None = None
    max_tokens: int | None = None
    max_seconds: float | None = None
    max_memory_bytes: int | None = None
    # The throughput a seconds budget is planned at (FLOP/s): turns max_seconds into work before any is measured
    # (train/timing.py). Not a limit.
    flops_per_second: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_flops", "max_tokens", "max_seconds", "max_memory_bytes", "flops_per_second"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise UserError(f"budget field '{name}' is {value}; give a positive number or leave it unset")

    def exhausted(self, ledger: Ledger) -> str | None:
        """The reason the budget is spent, or None while something is left."""
        if self.max_flops is not None and ledger.total_flops >= self.max_flops:
            return f"flop budget spent ({ledger.total_flops:.3g} of {self.max_flops:.3g} FLOPs)"
        if self.max_tokens is not None and ledger.tokens.get("train", 0) >= self.max_tokens:
            return f"token budget spent ({ledger.tokens['train']} of {self.max_tokens} tokens)"
        if self.max_seconds is not None and ledger.seconds >= self.max_seconds:
            return f"time budget spent ({ledger.seconds:.0f} of {self.max_seconds:.0f} s)"
        return None

    def fraction_spent(self, ledger: Ledger) -> float:
        """Largest fraction spent over the limits that are set (0 when none is set)."""
        fractions = [0.0]
        if self.max_flops:
            fractions.append(ledger.total_flops / self.max_flops)
        if self.max_tokens:
            fractions.append(ledger.tokens.get("train", 0) / self.max_tokens)
        if self.max_seconds:
            fractions.append(ledger.seconds / self.max_seconds)
        return min(1.0, max(fractions))

    def remaining_flops(self, ledger: Ledger) -> float | None:
        return None if self.max_flops is None else max(0.0, self.max_flops - ledger.total_flops)

    def planning_flops(self, ledger: Ledger | None = None) -> float | None:
        """The FLOPs the run can spend: max_flops, or what the seconds left buy at flops_per_second when that is
        less (the time budget binds); None when neither is known."""
        spent_flops, spent_seconds = (ledger.total_flops, ledger.seconds) if ledger is not None else (0.0, 0.0)
        by_time = None
        if self.max_seconds is not None and self.flops_per_second:
            by_time = spent_flops + max(0.0, self.max_seconds - spent_seconds) * self.flops_per_second
        known = [v for v in (self.max_flops, by_time) if v is not None]
        return min(known) if known else None


@dataclass
class Ledger:
    """FLOPs and tokens spent by phase, optimizer steps taken, and wall seconds of work (in all, and by phase:
    the PHASES and "plan", the plan's timed throughput probe)."""

    flops: dict[str, float] = field(default_factory=lambda: {p: 0.0 for p in PHASES})
    tokens: dict[str, int] = field(default_factory=lambda: {p: 0 for p in PHASES})
    steps: int = 0
    seconds: float = 0.0
    phase_seconds: dict[str, float] = field(default_factory=dict)
    external: int = 0  # records of charges.json (work by other commands) already counted here

    def charge(self, phase: str, flops: float, tokens: int = 0) -> None:
        if phase not in PHASES:
            raise ValueError(f"unknown ledger phase {phase!r}; one of {PHASES}")
        self.flops[phase] = self.flops.get(phase, 0.0) + float(flops)
        self.tokens[phase] = self.tokens.get(phase, 0) + int(tokens)

    def add_seconds(self, phase: str, seconds: float) -> None:
        """Wall seconds of work, counted against the time budget and kept by phase (the plan's measured rates)."""
        self.seconds += float(seconds)
        self.phase_seconds[phase] = self.phase_seconds.get(phase, 0.0) + float(seconds)

    @property
    def total_flops(self) -> float:
        return float(sum(self.flops.values()))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["total_flops"] = self.total_flops
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Ledger:
        return cls(
            flops={p: float(d.get("flops", {}).get(p, 0.0)) for p in PHASES},
            tokens={p: int(d.get("tokens", {}).get(p, 0)) for p in PHASES},
            steps=int(d.get("steps", 0)),
            seconds=float(d.get("seconds", 0.0)),
            external=int(d.get("external", 0)),
            phase_seconds={str(k): float(v) for k, v in (d.get("phase_seconds") or {}).items()},
        )

    def save(self, path: str | Path) -> None:
        atomic.write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> Ledger:
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, ValueError) as e:
            raise UserError(f"{path}: cannot read the ledger ({e}); remove the run directory to start over") from None


CHARGES = "charges.json"


def fold_outside(ledger: Ledger, records: list[dict]) -> None:
    """Add the charges records the ledger does not hold yet (those past `ledger.external`)."""
    for r in records[ledger.external:]:
        for phase in PHASES:
            ledger.charge(phase, r["flops"].get(phase, 0.0), r["tokens"].get(phase, 0))
        # the time budget covers work outside the loop too; its seconds go to the phase that did most of its FLOPs
        flops = r["flops"]
        ledger.add_seconds(max(flops, key=lambda p: flops[p]) if any(flops.values()) else "eval",
                           float(r.get("seconds") or 0.0))
    ledger.external = max(ledger.external, len(records))


def read_charges(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / CHARGES
    if not path.exists():
        return []
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(records, list) or not all(isinstance(r.get("flops"), dict) for r in records):
            raise ValueError("not a list of charges")
    except (OSError, ValueError, AttributeError) as e:
        raise UserError(f"{path}: cannot read the charges record ({e}); remove it to drop those charges") from None
    return records
