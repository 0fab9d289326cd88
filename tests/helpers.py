"""Small builders shared by tests: a tiny run config and a small slice of the embedded data."""

from __future__ import annotations

from budgetune.config import RunConfig
from budgetune.data import DataSplit, load_data


def tiny_run_config(model_path: str, out, **train) -> RunConfig:
    cfg = RunConfig()
    cfg.model.model = model_path
    cfg.out = str(out)
    cfg.report = False
    cfg.train.micro_batch_size = 4
    cfg.train.warmup_steps = 2
    cfg.train.lr = 1e-3
    cfg.train.eval_every = 3
    cfg.train.checkpoint_every = 2
    for key, value in train.items():
        setattr(cfg.train, key, value)
    return cfg


_CACHE: dict = {}


def small_split(tokenizer, n_train: int = 48, n_target: int = 8) -> DataSplit:
    """A slice of the real chatterbot-corpus data, kept short for speed."""
    if "split" not in _CACHE:
        from budgetune.config import DataConfig

        cfg = DataConfig()
        cfg.max_seq_len = 64
        _CACHE["split"] = load_data(cfg, tokenizer)
    split = _CACHE["split"]
    return DataSplit(split.train[:n_train], split.target[:n_target], split.source)


class Killed(Exception):
    """Raised from a run's on_step hook to stop it mid-run, as a kill would."""


def kill_at(step_to_die: int):
    """An on_step hook that stops the run once it reaches `step_to_die`."""
    def on_step(step, ledger):
        if step == step_to_die:
            raise Killed()
    return on_step
