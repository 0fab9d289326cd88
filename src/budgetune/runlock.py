"""One writer per run directory: an advisory lock (fcntl.flock on RUN_DIR/.lock) held while a process writes.

The kernel drops a flock when its holder dies, so a lock file left by a killed process never blocks the next start;
the process id written in it names the holder in the refusal, and a dead holder is reported as taken over.
Locks are re-entrant within one process (the training loop and the commands it calls share one).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .errors import UserError

try:
    import fcntl
except ImportError:  # not POSIX: no advisory locks, one writer is the user's to keep
    fcntl = None

LOCK = ".lock"
_held: dict[str, int] = {}  # resolved run directory -> open file descriptor holding its lock


def _key(directory: Path) -> str:
    return str(Path(directory).resolve())


def holder(directory: str | os.PathLike) -> int | None:
    """The process id that holds the lock on `directory` now, or None when nobody (else) does."""
    directory = Path(directory)
    path = directory / LOCK
    if fcntl is None or _key(directory) in _held or not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _pid(path) or -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _pid(path: Path) -> int | None:
    try:
        return int(path.read_text(encoding="utf-8").split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def refuse(directory: Path, pid: int) -> UserError:
    who = f"process {pid}" if pid > 0 else "another process"
    return UserError(f"{directory}: in use by {who} (a run directory has one writer); wait for it to finish, "
                     f"or choose another --out")


def acquire(directory: str | os.PathLike) -> None:
    """Take the lock on `directory` (which exists) for this process, or refuse in one line."""
    directory = Path(directory)
    key = _key(directory)
    if fcntl is None or key in _held:
        return
    path = directory / LOCK
    previous = _pid(path) if path.exists() else None
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise refuse(directory, _pid(path) or -1) from None
    if previous and previous != os.getpid() and not _alive(previous):
        print(f"budgetune: note: {directory} was last written by process {previous}, which is no longer running; "
              f"taking over its stale lock", file=sys.stderr)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _held[key] = fd


def release(directory: str | os.PathLike) -> None:
    fd = _held.pop(_key(directory), None)
    if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


class hold:
    """`with hold(dir):` the lock for a short write by a command (eval, generate); kept if already held."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.mine = False

    def __enter__(self):
        if self.directory.is_dir() and _key(self.directory) not in _held:
            acquire(self.directory)
            self.mine = True
        return self

    def __exit__(self, *exc):
        if self.mine:
            release(self.directory)
        return False
