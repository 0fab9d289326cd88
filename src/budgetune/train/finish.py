"""A run's finish: the final evaluation, the last checkpoint, the result (adapter or model), ledger.json and
summary.json."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import scaling
from ..budget import Ledger
from . import governed, guard, ranks
from .session import Session
from .testset import reported_loss, split_summary


@dataclass
class RunResult:
    run_dir: Path
    ledger: Ledger
    evals: list[dict]
    stop_reason: str
    artefact: Path | None
    before_loss: float | None
    after_loss: float | None
    extra: dict = field(default_factory=dict)

    @property
    def train_tokens_per_second(self) -> float | None:
        seconds = self.extra.get("train_seconds")
        return self.ledger.tokens["train"] / seconds if seconds else None


def finish(s: Session, evals: list[dict], evaluate: Callable, train_seconds: float) -> RunResult:
    """`evaluate(indices=None)` is the loop's held-out evaluation (charged and logged like every other)."""
    state, ledger, data, stepper, accelerator = s.state, s.ledger, s.data, s.stepper, s.accelerator
    if governed.final_dev_eval(state["eval_plan"], evals[-1], state["step"], data.apart):  # the whole set
        evals.append(evaluate())
    evals[-1]["final"] = True
    after_loss = reported_loss(stepper.model, data, ledger, s.pad_id, s.cfg, accelerator,
                               state.setdefault("token_accuracy", {}), "after") if data.apart \
        else evals[-1]["eval_loss"]
    s.save()
    artefact = None
    result_source = ranks.result_source(stepper)  # a sharded model is gathered whole first (every rank)
    if accelerator.is_main_process:
        artefact = save_result(s.run.path, result_source, s.tokenizer)
    accelerator.wait_for_everyone()
    ledger_dict = ledger.to_dict()
    s.run.write_json("ledger.json", ledger_dict)
    summary = {"before_loss": state["before_loss"], "after_loss": after_loss, **split_summary(data),
               "stop_reason": state["stop_reason"], "steps": ledger.steps, "ledger": ledger_dict,
               "artefact": str(artefact) if artefact else None, "method": s.cfg.train.method,
               "model": s.cfg.model.model, "processes": s.world, "train_seconds_this_session": train_seconds,
               "pool_size": len(s.pool), "target_size": len(data.target), "cooldown": state["cooldown"],
               "divergence": guard.divergence(_on_reported(evals, after_loss, state["step"], data.apart),
                                              state["before_loss"]), "rollbacks": state.get("rollbacks", 0)}
    summary.update(ranks.summary_fields(s.layout, s.plan))
    summary["n_params"] = scaling.base_params(stepper.model)  # the N of `budgetune scaling fit`
    s.run.write_json("summary.json", summary)
    s.tracker.ledger(ledger_dict, state["step"])
    return RunResult(s.run.path, ledger, evals, state["stop_reason"], artefact, state["before_loss"],
                     after_loss, {"train_seconds": train_seconds, "model": stepper.model,
                                  "tokenizer": s.tokenizer, "data": data,
                                  "token_accuracy": state.get("token_accuracy"),
                                  "sharded": s.layout["sharding"] != "none"})


def _on_reported(evals: list[dict], after_loss, step: int, apart: bool) -> list[dict]:
    """The evaluations as the divergence check reads them: with dev and test apart the losses before and after
    training are both the test set's, so the last one is the reported loss."""
    return [*evals, {"step": step, "eval_loss": after_loss}] if apart else evals


def save_result(run_dir: Path, stepper, tokenizer) -> Path:
    """The method's result ('adapter' or 'model') written to a temporary directory, then renamed into place."""
    import shutil
    import tempfile

    from ..atomic import replace_dir

    tmp = Path(tempfile.mkdtemp(dir=run_dir, prefix=".result.", suffix=".tmp"))
    try:
        kind = stepper.save_pretrained(tmp, tokenizer)
        final = run_dir / kind
        replace_dir(tmp, final)  # the new result in place before the old one is removed
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
