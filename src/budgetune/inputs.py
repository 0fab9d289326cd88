"""The tokenizer and the tokenized split a run trains on, loaded once: the joint plan reads them before any weight
is loaded and hands the same objects to the loop's set-up, which loads them itself only when run without a plan."""

from __future__ import annotations

from .errors import UserError


def load_inputs(cfg, tokenizer=None, data=None):
    """(tokenizer, data): the ones given, else loaded from the config; an empty held-out target is refused."""
    from . import models

    if tokenizer is None:
        tokenizer = models.load_tokenizer(cfg.model.model, trust_remote_code=cfg.model.trust_remote_code,
                                          allow_download=cfg.model.allow_download)
    if data is None:
        from .data import load_data

        data = load_data(cfg.data, tokenizer)
    if not data.target:
        raise UserError("the held-out target set is empty; give --target or a larger --heldout-fraction")
    return tokenizer, data
