"""Read instruction or text records from JSONL/JSON/CSV/Parquet files or a `datasets` directory.

Every bad input stops with one line naming the file, the line (or row) and the fix.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from ..errors import UserError

FORMATS = (".jsonl", ".json", ".csv", ".parquet")


def read_records(path: str | Path) -> list[tuple[int, dict]]:
    """(line or row number, record) pairs from a file or a saved `datasets` directory."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file or directory; check the path (or use the embedded 'chatterbot')")
    if path.is_dir():
        return _read_datasets_dir(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _read_parquet(path)
    if suffix not in FORMATS:
        raise UserError(f"{path}: unknown data format '{suffix}'; use one of {', '.join(FORMATS)} or a datasets directory")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: not UTF-8 text (byte {e.start}); re-save the file as UTF-8") from None
    if suffix == ".jsonl":
        return _read_jsonl(path, text)
    if suffix == ".json":
        return _read_json(path, text)
    return _read_csv(path, text)


def _read_jsonl(path: Path, text: str) -> list[tuple[int, dict]]:
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{number}: bad JSON ({e.msg} at column {e.colno}); each line must be one JSON object") from None
        if not isinstance(record, dict):
            raise UserError(f"{path}:{number}: a JSON {type(record).__name__}, not an object; each line must be one JSON object")
        out.append((number, record))
    return out


def _read_json(path: Path, text: str) -> list[tuple[int, dict]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: bad JSON ({e.msg} at column {e.colno}); fix the syntax") from None
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise UserError(f"{path}:1: expected a JSON list of objects (or an object holding one list)")
        data = lists[0]
    if not isinstance(data, list):
        raise UserError(f"{path}:1: expected a JSON list of objects")
    out = []
    for i, record in enumerate(data, 1):
        if not isinstance(record, dict):
            raise UserError(f"{path}: item {i} is a {type(record).__name__}, not an object; give a list of objects")
        out.append((i, record))
    return out


def _read_csv(path: Path, text: str) -> list[tuple[int, dict]]:
    reader = csv.DictReader(text.splitlines())
    # Row numbers count the header as line 1, like a spreadsheet.
    return [(i, dict(row)) for i, row in enumerate(reader, 2)]


def _read_parquet(path: Path) -> list[tuple[int, dict]]:
    import datasets

    try:
        ds = datasets.Dataset.from_parquet(str(path))
    except Exception as e:  # pyarrow raises several types for a broken file
        raise UserError(f"{path}: cannot read as Parquet ({type(e).__name__}); check the file is a Parquet table") from None
    return [(i, dict(r)) for i, r in enumerate(ds, 1)]


def _read_datasets_dir(path: Path) -> list[tuple[int, dict]]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception:
        raise UserError(f"{path}: a directory but not one saved by datasets' save_to_disk; pass a file or such a directory") from None
    if isinstance(ds, datasets.DatasetDict):
        split = "train" if "train" in ds else next(iter(ds))
        ds = ds[split]
    return [(i, dict(r)) for i, r in enumerate(ds, 1)]


def to_messages(path, number: int, record: dict, *, prompt_field: str, response_field: str,
                messages_field: str) -> list[dict]:
    """A record as chat messages; raise a one-line error naming the missing field."""
    messages = record.get(messages_field)
    if messages is not None:
        if (not isinstance(messages, list) or not messages
                or not all(isinstance(m, dict) and "role" in m and "content" in m for m in messages)):
            raise UserError(f"{path}:{number}: field '{messages_field}' must be a list of {{role, content}} objects")
        if not any(m["role"] == "assistant" for m in messages):
            raise UserError(f"{path}:{number}: field '{messages_field}' has no assistant message to learn from")
        if not all(isinstance(m["content"], str) and isinstance(m["role"], str) for m in messages):
            raise UserError(f"{path}:{number}: field '{messages_field}' has a role or content that is not text; "
                            f"write each message as {{\"role\": \"user\", \"content\": \"...\"}}")
        return [{"role": m["role"], "content": m["content"]} for m in messages]
    for name in (prompt_field, response_field):
        value = record.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            fields = ", ".join(sorted(record)) or "none"
            raise UserError(f"{path}:{number}: missing field '{name}' (fields here: {fields}); "
                            f"map your columns with --prompt-field/--response-field or give '{messages_field}'")
        if not isinstance(value, str):  # an object or a number is not an answer to learn, even stringified
            raise UserError(f"{path}:{number}: field '{name}' is a {type(value).__name__}, not text; give the "
                            f"{'prompt' if name == prompt_field else 'response'} as a string")
    return [{"role": "user", "content": str(record[prompt_field])},
            {"role": "assistant", "content": str(record[response_field])}]
