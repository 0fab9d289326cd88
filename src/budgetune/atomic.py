"""Write files and directories so that a crash never leaves a half-written result behind.

JSON is written strictly: a non-finite float (NaN, ±inf) becomes null, never the bare `NaN` that JSON readers reject.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import UserError

TMP_SUFFIX = ".tmp"  # every temporary name this module makes ends so; `clean_leftovers` removes them


def finite(obj: Any) -> Any:
    """`obj` with every non-finite float replaced by None (JSON null)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def dumps(obj: Any, **kw) -> str:
    """json.dumps that never writes NaN or Infinity (allow_nan=False after mapping them to null)."""
    return json.dumps(finite(obj), allow_nan=False, **kw)


def _tmp_file(path: Path) -> str:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    os.close(fd)
    return tmp


def _write_tmp(path: Path, text: str) -> str:
    tmp = _tmp_file(path)
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def write_text(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _write_tmp(path, text)
    try:
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_texts(files: Mapping[str | os.PathLike, str]) -> None:
    """Several files that belong together: every one is written to a temporary name first, then all are renamed,
    so a failure while writing leaves none of them changed."""
    done: list[tuple[str, Path]] = []
    try:
        for path, text in files.items():
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            done.append((_write_tmp(path, text), path))
    except BaseException:
        for tmp, _ in done:
            os.unlink(tmp)
        raise
    for tmp, path in done:
        os.replace(tmp, path)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, dumps(obj, indent=2, sort_keys=True) + "\n")


_RENAME_EXCHANGE = 2  # linux/fs.h


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where the system cannot."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    return fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0


def replace_dir(new: str | os.PathLike, path: str | os.PathLike) -> None:
    """Put directory `new` at `path`. An existing `path` is swapped out in one step where the system allows it (so
    there is no moment without it), then removed; elsewhere it is renamed aside first."""
    new, path = Path(new), Path(path)
    if not path.exists():
        os.replace(new, path)
        return
    if _exchange(new, path):  # `new` now holds the old directory
        shutil.rmtree(new, ignore_errors=True)
        return
    old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old.", suffix=TMP_SUFFIX))
    os.replace(path, old / path.name)
    os.replace(new, path)
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_dir(path: str | os.PathLike, *, replace: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces `path` in one rename.

    With replace=False an existing `path` (written meanwhile by another process) is kept and ours discarded.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX))
    try:
        yield tmp
        if path.exists() and not replace:
            shutil.rmtree(tmp)
        else:
            replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def clean_leftovers(directory: str | os.PathLike, prefix: str = ".") -> list[Path]:
    """Remove the temporary files and directories (`.NAME.….tmp`) that a killed write left in `directory`, those
    starting with `prefix` only; returns what was removed. Only names this module makes are touched."""
    directory = Path(directory)
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    for p in directory.iterdir():
        if p.name.startswith(prefix) and p.name.endswith(TMP_SUFFIX):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def read_jsonl(path: str | Path) -> list[dict]:
    """The records of a JSONL log. A torn last line (a write cut short by a kill) is dropped; a damaged line
    anywhere else is a one-line error."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text; the run directory is damaged") from None
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError
        except ValueError:
            if number == len(lines):
                break  # the last write was cut short; the resumed run rewrites it
            raise UserError(f"{path}:{number}: not a JSON record; the run directory is damaged (remove the line "
                            f"or start a new run)") from None
        records.append(record)
    return records
