"""Tokenised training examples: chat-template formatting, loss masked to the response, truncation, collation."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

IGNORE = -100


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]  # IGNORE outside the tokens the model learns to produce
    category: str | None = None
    messages: list[dict] | None = None  # the chat form, for instruction data
    text: str | None = None  # the plain text, for text data
    uid: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def n_tokens(self) -> int:
        return len(self.input_ids)

    @property
    def n_target_tokens(self) -> int:
        return sum(1 for t in self.labels[1:] if t != IGNORE)


def uid_of(obj) -> str:
    return hashlib.sha1(repr(obj).encode("utf-8")).hexdigest()[:16]


def _template(tokenizer, messages, *, generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def chat_example(tokenizer, messages: list[dict], max_seq_len: int, category: str | None = None) -> Example:
    """Format with the tokenizer's chat template; only assistant turns are learned.

    The template is rendered turn by turn and the text between consecutive renderings tokenised as one segment, so
    each segment's tokens are known to belong to the prompt or to a response.
    """
    ids: list[int] = []
    labels: list[int] = []
    rendered = ""
    for i, message in enumerate(messages):
        if message["role"] == "assistant":
            head = _template(tokenizer, messages[:i], generation_prompt=True) if i else ""
            _extend(tokenizer, ids, labels, head[len(rendered):], learn=False)
            full = _template(tokenizer, messages[: i + 1], generation_prompt=False)
            _extend(tokenizer, ids, labels, full[len(head):], learn=True)
            rendered = full
    tail = _template(tokenizer, messages, generation_prompt=False)[len(rendered):]
    if tail:
        _extend(tokenizer, ids, labels, tail, learn=False)
    return Example(ids[:max_seq_len], labels[:max_seq_len], category, messages=messages, uid=uid_of(messages))


def _extend(tokenizer, ids: list[int], labels: list[int], text: str, *, learn: bool) -> None:
    if not text:
        return
    tokens = tokenizer(text, add_special_tokens=False)["input_ids"]
    ids += tokens
    labels += tokens if learn else [IGNORE] * len(tokens)


def text_examples(tokenizer, text: str, max_seq_len: int, category: str | None = None,
                  title: str | None = None) -> list[Example]:
    """Cut a plain text into blocks of max_seq_len tokens; every token is learned."""
    tokens = tokenizer(text, add_special_tokens=False)["input_ids"]
    out = []
    for start in range(0, len(tokens), max_seq_len):
        block = tokens[start: start + max_seq_len]
        if len(block) < 8:  # a scrap at the end teaches nothing and skews the mean loss
            continue
        out.append(Example(block, list(block), category, text=None, uid=uid_of((title, start)),
                           meta={"title": title, "offset": start}))
    return out


def collate(examples: list[Example], pad_id: int):
    """Right-pad to the longest example; padding is masked from attention and loss."""
    import torch

    width = max(e.n_tokens for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        n = e.n_tokens
        ids[row, :n] = torch.tensor(e.input_ids)
        labels[row, :n] = torch.tensor(e.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
