"""The run directory: config.json, metrics.jsonl, decisions.jsonl, ledger.json, checkpoints/, the result.

Which directory a run may write, and when, is decided here:
- `prepare` checks --out before any work and writes nothing: a fresh run takes a new or empty directory, its own
  unfinished run (same config, no checkpoint yet), or — with --overwrite — a previous *run* directory; anything else
  that is not empty (a user's directory, an earlier run) is refused in one line. A directory another process writes
  is refused too (runlock).
- `RunDir.open` is the first write, made once every input has been read and checked: it creates (or replaces) the
  directory, takes the writer's lock, removes what killed writes left behind (`.….tmp`) and writes config.json.
- `RunDir.resume_point` reads the checkpoint a --resume continues from (refusing a run that has none);
  `RunDir.start_logs` then truncates a resumed run's logs to its checkpoint or clears a fresh run's logs, and
  `stop_reason_on_resume` decides whether a resumed run trains on (a limit, not the governor, stopped it).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from .. import atomic, runlock
from ..atomic import read_jsonl  # also imported from here by the tests
from ..errors import UserError

_RUN_KEYS = {"model", "data", "train", "budget"}  # the sections of a saved config.json
_IGNORED = {runlock.LOCK}  # what an otherwise empty directory may hold
_PER_INVOCATION = ("resume", "overwrite", "out")  # config fields that are not part of the run's identity


class RunDir:
    def __init__(self, path: Path, *, writer: bool = True, fresh: bool = True, replace: bool = False):
        self.path = Path(path)
        self.writer = writer  # only the main process writes
        self.fresh = fresh
        self.replace = replace  # --overwrite of a previous run directory, done at open()
        self.default_name = False
        self.opened = False

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def decisions(self) -> Path:
        return self.path / "decisions.jsonl"

    def open(self, config: dict) -> None:
        """Create (or replace) the directory, lock it for this process, clean leftovers, write config.json."""
        if not self.writer or self.opened:
            return
        self.opened = True
        try:
            if self.replace:
                _replace_run(self.path)
            else:
                _make(self)
            runlock.acquire(self.path)
            for where in (self.path, self.path / "checkpoints"):
                atomic.clean_leftovers(where)
            atomic.clean_leftovers(self.path.parent, f".{self.path.name}.")  # an --overwrite cut short
        except PermissionError as e:
            raise UserError(f"{self.path}: cannot write here ({e.strerror}); choose another --out") from None
        self.write_json("config.json", config)

    def append(self, file: Path, record: dict) -> None:
        if not self.writer:
            return
        with open(file, "a", encoding="utf-8") as f:
            f.write(atomic.dumps(record, sort_keys=True) + "\n")
            f.flush()

    def truncate_after(self, step: int) -> None:
        """On resume, drop records written after the checkpoint, so nothing is logged twice."""
        if not self.writer:
            return
        for file in (self.metrics, self.decisions):
            if file.exists():
                kept = [r for r in read_jsonl(file) if r.get("step", 0) <= step]
                atomic.write_text(file, "".join(atomic.dumps(r, sort_keys=True) + "\n" for r in kept))

    def write_json(self, name: str, obj) -> None:
        if self.writer:
            atomic.write_json(self.path / name, obj)

    def resume_point(self, resume: bool) -> tuple[dict, dict, dict] | None:
        """(weights, method state, loop state) of the checkpoint a --resume continues from; None for a fresh run
        (or a --resume of a run killed before its first checkpoint, which starts again)."""
        from . import checkpoint

        found = checkpoint.load_latest(self.path) if resume and self.path.is_dir() else None
        if resume and found is None and (self.path / "ledger.json").exists():
            raise UserError(f"{self.path}: has no checkpoint to resume from; delete it or drop --resume")
        return found

    def start_logs(self, resumed_step: int | None) -> None:
        """A resumed run keeps its records up to its checkpoint; a fresh run starts with no metrics, decisions or
        outside charges (an unfinished run of the same config, restarted, may have left some)."""
        from ..budget import CHARGES

        if resumed_step is not None:
            self.truncate_after(resumed_step)
        elif self.writer:
            for f in (self.metrics, self.decisions, self.path / CHARGES):
                f.unlink(missing_ok=True)


def stop_reason_on_resume(reason: str | None) -> str | None:
    """The stop reason a resumed run starts with: the governor's decision stands; a limit's (steps, FLOPs, tokens,
    seconds) is cleared so the run trains on if the limit was raised (an unchanged one stops it again at once)."""
    if reason and not reason.startswith("governor"):
        return None
    return reason


def default_path(method: str, accelerator=None) -> Path:
    """runs/<method>-<time>[-N]: a name no directory has yet (every process of a run gets rank 0's)."""
    base = Path("runs") / f"{method}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    if accelerator is not None and accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        box = [str(path)]
        broadcast_object_list(box, from_process=0)
        path = Path(box[0])
    return path


def is_run(path: Path) -> bool:
    """A budgetune run directory: its config.json holds the run's sections."""
    try:
        saved = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(saved, dict) and _RUN_KEYS <= saved.keys()


def _content(path: Path) -> list[Path]:
    return [p for p in path.iterdir() if p.name not in _IGNORED and not p.name.endswith(atomic.TMP_SUFFIX)]


def _same_run(path: Path, config: dict) -> bool:
    """`path` is this very run, started before and stopped before its first checkpoint or result."""
    from .checkpoint import checkpoint_dirs

    if checkpoint_dirs(path) or (path / "summary.json").exists():
        return False
    try:
        saved = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    strip = lambda d: {k: v for k, v in d.items() if k not in _PER_INVOCATION}
    return strip(saved) == strip(config)


def _check_writable(path: Path) -> None:
    """`path` (which need not exist) can become a directory: no file on the way, the nearest parent writable."""
    for parent in [path, *path.parents]:
        if parent.exists():
            if not parent.is_dir():
                where = "is a file" if parent == path else f"is under {parent}, which is a file"
                raise UserError(f"--out {path} {where}; give a directory path for the run")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise UserError(f"--out {path}: {parent} is not writable; choose a directory you can write")
            return


def prepare(cfg, *, writer: bool = True, accelerator=None) -> RunDir:
    """Decide, before any work and without writing, where this run writes (see the module's docstring)."""
    from .. import config as config_mod

    if not cfg.out:
        run = RunDir(default_path(cfg.train.method, accelerator), writer=writer)
        _check_writable(run.path)
        run.default_name = True
        return run
    path = Path(cfg.out).expanduser()
    _check_writable(path)
    if not path.exists() or not _content(path):
        return RunDir(path, writer=writer)
    if not writer:
        return RunDir(path, writer=False, fresh=not cfg.resume)
    pid = runlock.holder(path)
    if pid is not None:
        raise runlock.refuse(path, pid)
    if not is_run(path):
        raise UserError(f"--out {path} is a directory that is not a budgetune run ({len(_content(path))} entries in "
                        f"it); nothing was changed: choose a new or empty directory for the run")
    if cfg.resume:
        from ..budget import read_charges

        for log in ("metrics.jsonl", "decisions.jsonl"):  # a damaged log fails now, before any work
            read_jsonl(path / log)
        read_charges(path)
        return RunDir(path, writer=writer, fresh=False)
    if getattr(cfg, "overwrite", False):
        return RunDir(path, writer=writer, replace=True)
    if _same_run(path, config_mod.to_dict(cfg)):
        return RunDir(path, writer=writer)
    raise UserError(f"--out {path} holds an earlier run; add --resume to continue it, --overwrite to replace it, "
                    f"or choose another --out")


def _make(run: RunDir) -> None:
    if not run.default_name:
        run.path.mkdir(parents=True, exist_ok=True)
        return
    while True:  # another run may have taken the default name since prepare()
        try:
            run.path.mkdir(parents=True)
            return
        except FileExistsError:
            stem = run.path.name.rsplit("-", 1)
            n = int(stem[1]) + 1 if len(stem) == 2 and stem[1].isdigit() and len(stem[1]) < 4 else 2
            base = stem[0] if n > 2 else run.path.name
            run.path = run.path.with_name(f"{base}-{n}")


def _replace_run(path: Path) -> None:
    """--overwrite: the previous run (checked by `prepare` to be a run) moves aside, a new directory takes its place,
    then the previous one is removed."""
    if not is_run(path):
        raise UserError(f"--out {path} is not a budgetune run; --overwrite replaces only a previous run directory")
    pid = runlock.holder(path)
    if pid is not None:
        raise runlock.refuse(path, pid)
    runlock.release(path)  # a lock this process held on the previous run moves away with it
    aside = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.replaced.", suffix=atomic.TMP_SUFFIX))
    os.replace(path, aside / path.name)
    path.mkdir()
    shutil.rmtree(aside, ignore_errors=True)
