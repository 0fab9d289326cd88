"""Experiment trackers (`report_to: tensorboard | wandb | mlflow | none`) through accelerate's tracker classes.

Every record the run directory receives (training steps, evaluations, governor decisions) is forwarded, so the
dashboard shows the same numbers as metrics.jsonl and decisions.jsonl; at the end the ledger is logged by phase.
Offline-safe by default: TensorBoard writes event files under RUN_DIR/tensorboard; W&B runs in offline mode (files
under RUN_DIR/wandb) unless the user is logged in or sets WANDB_MODE; MLflow writes to ./mlruns unless
MLFLOW_TRACKING_URI points at a server. Only the main process logs.
"""

from __future__ import annotations

import atexit
import os
from pathlib import Path

from .errors import UserError

# name → (accelerate tracker class, importable module it needs, pyproject extra that installs it)
TRACKERS = {
    "tensorboard": ("TensorBoardTracker", "tensorboard", "tensorboard"),
    "wandb": ("WandBTracker", "wandb", "wandb"),
    "mlflow": ("MLflowTracker", "mlflow", "mlflow"),
}
NAMES = ("none", *TRACKERS)


def check(name: str | None) -> str:
    """The tracker name, validated; a one-line error naming the extra when its package is missing."""
    import importlib.util

    name = (name or "none").strip().lower()
    if name not in NAMES:
        raise UserError(f"--report-to '{name}' is not known; use one of {', '.join(NAMES)}")
    if name != "none" and importlib.util.find_spec(TRACKERS[name][1]) is None:
        raise UserError(f"--report-to {name} needs the {TRACKERS[name][1]} package; install it with "
                        f"`pip install 'budgetune[{TRACKERS[name][2]}]'`, or use --report-to none")
    return name


def _flat(values: dict, prefix: str = "") -> dict:
    """Numbers (and short strings) only, nested keys joined with '/': what every tracker accepts."""
    out = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, bool):
            out[name] = int(value)
        elif isinstance(value, (int, float)):
            out[name] = value
        elif isinstance(value, dict):
            out.update(_flat(value, name + "/"))
    return out


class Tracker:
    """One accelerate tracker, or nothing (report_to none, or a process other than the main one)."""

    def __init__(self, name: str, run_dir: Path, config: dict | None = None, *, enabled: bool = True):
        self.name = name
        self.inner = None
        self.closed = False
        if name == "none" or not enabled:
            return
        from accelerate import tracking

        run_dir = Path(run_dir)
        run_name = run_dir.name
        if name == "tensorboard":
            self.inner = tracking.TensorBoardTracker(run_name, run_dir / "tensorboard")
        elif name == "wandb":
            if not os.environ.get("WANDB_MODE") and not _wandb_logged_in():
                os.environ["WANDB_MODE"] = "offline"
            os.environ.setdefault("WANDB_DIR", str(run_dir))
            self.inner = tracking.WandBTracker("budgetune", name=run_name, dir=str(run_dir))
        elif name == "mlflow":
            self.inner = tracking.MLflowTracker(experiment_name="budgetune", run_name=run_name)
        self.inner.start()
        if config:
            self.inner.store_init_configuration(_hparams(config))
        atexit.register(self.end)

    def log(self, values: dict, step: int | None = None) -> None:
        if self.inner is not None and not self.closed:
            flat = _flat(values)
            if flat:
                self.inner.log(flat, step=step)

    def record(self, file: Path, record: dict) -> None:
        """A record appended to metrics.jsonl (train/eval) or decisions.jsonl, logged under its kind."""
        step = record.get("step")
        kind = record.get("kind") or ("decision" if Path(file).stem == "decisions" else "run")
        values = {k: v for k, v in record.items() if k not in ("kind", "step")}
        if kind == "decision":
            self.log({f"governor/{k}": v for k, v in values.items()}, step)
            self.text("governor/decision", f"step {step}: {record.get('action')} — {record.get('reason')}", step)
        else:
            self.log({f"{kind}/{k}": v for k, v in values.items()}, step)

    def text(self, tag: str, text: str, step: int | None = None) -> None:
        if self.inner is None or self.closed:
            return
        if self.name == "tensorboard":
            self.inner.writer.add_text(tag, text, global_step=step)
        elif self.name == "wandb":
            self.inner.log({tag: text}, step=step)
        elif self.name == "mlflow":
            import mlflow

            mlflow.log_text(text, f"{tag.replace('/', '_')}_{step}.txt")

    def ledger(self, ledger: dict, step: int | None = None) -> None:
        """The ledger by phase: FLOPs and tokens of each, and the totals."""
        values = {f"ledger/flops/{p}": v for p, v in ledger.get("flops", {}).items()}
        values.update({f"ledger/tokens/{p}": v for p, v in ledger.get("tokens", {}).items()})
        values.update({"ledger/total_flops": ledger.get("total_flops", 0.0), "ledger/seconds": ledger.get("seconds", 0.0)})
        self.log(values, step)

    def end(self) -> None:
        if self.inner is not None and not self.closed:
            self.closed = True
            self.inner.finish()


def _wandb_logged_in() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path.home() / ".netrc"
    try:
        return "api.wandb.ai" in netrc.read_text(encoding="utf-8")
    except OSError:
        return False


def _hparams(config: dict) -> dict:
    """The run config flattened to the scalar hyperparameters trackers store (None as text)."""
    out = {}

    def walk(d: dict, prefix: str) -> None:
        for key, value in d.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            elif isinstance(value, (bool, int, float, str)):
                out[f"{prefix}{key}"] = value
            elif value is None:
                out[f"{prefix}{key}"] = "none"
            else:
                out[f"{prefix}{key}"] = str(value)

    walk(config, "")
    return out


_LIVE: dict[str, Tracker] = {}


def live(run_dir) -> Tracker:
    """The tracker a training run in this process opened for run_dir (a no-op one if none), so work done after the
    loop (the generation evaluation) lands on the same dashboard."""
    return _LIVE.get(str(Path(run_dir)), Tracker("none", Path(run_dir)))


def attach(cfg, accelerator, run) -> Tracker:
    """The run's tracker, fed every record the run directory appends (one call in the training loop)."""
    from . import config as config_mod

    tracker = Tracker(check(getattr(cfg, "report_to", "none")), run.path, config_mod.to_dict(cfg),
                      enabled=accelerator.is_main_process)
    _LIVE[str(run.path)] = tracker
    if tracker.inner is not None:
        append = run.append

        def append_and_log(file, record):
            append(file, record)
            tracker.record(file, record)

        run.append = append_and_log
    return tracker
