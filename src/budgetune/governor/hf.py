"""Any budgetune governor inside Hugging Face `Trainer`: a TrainerCallback that stops training when it says stop.

    from budgetune.governor.hf import GovernorCallback
    trainer = Trainer(..., callbacks=[GovernorCallback("marginal", {"threshold": 0.01}, max_flops=2e15)])

It reads the held-out loss from each evaluation and FLOPs either from our analytic count (default: every forward of
the model is counted with budgetune.flops, training and evaluation alike) or as Trainer counts `total_flos`
(`Trainer.floating_point_ops`: 6 · tokens · non-embedding parameters, training only; counted here at each forward
because Trainer folds its running count into `state.total_flos` only when it saves or logs). Its state (the governor's, with the FLOPs counted) is an `ExportableState`, so with
`TrainingArguments(restore_callback_states_from_checkpoint=True)` a resumed Trainer continues the same governor
instead of starting afresh (the loss of patience counters on resume is transformers#28544). The governor is
deterministic, and Trainer's eval loss is already gathered over processes, so every process takes the same action.
Refresh and reallocate decisions are logged but cannot be carried out by Trainer; training continues.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from ..budget import Budget, Ledger
from ..errors import UserError
from ..flops import forward_flops, profile_from_model, train_step_flops
from . import DEFAULT, make


class GovernorCallback(TrainerCallback, ExportableState):
    def __init__(self, governor: str = DEFAULT, options: dict | None = None, max_flops: float | None = None,
                 flops: str = "analytic", decisions_file: str | None = None):
        if flops not in ("analytic", "trainer"):
            raise UserError(f"GovernorCallback flops='{flops}' is not known; use 'analytic' or 'trainer'")
        self.governor_name = governor
        self.options = dict(options or {})
        self.max_flops = max_flops
        self.flops = flops
        self.decisions_file = decisions_file
        self.governor = make(governor, self.options, Budget(max_flops=max_flops) if max_flops else None)
        self.train_flops = 0.0
        self.eval_flops = 0.0
        self.decisions: list[dict] = []
        self._hook = None

    # -- ExportableState: what Trainer saves in trainer_state.json and restores on resume -------------------------
    def state(self) -> dict:
        return {"args": {"governor": self.governor_name, "options": self.options, "max_flops": self.max_flops,
                         "flops": self.flops, "decisions_file": self.decisions_file},
                "attributes": {"governor_state": self.governor.state_dict(), "train_flops": self.train_flops,
                               "eval_flops": self.eval_flops}}

    @property
    def governor_state(self) -> dict:
        return self.governor.state_dict()

    @governor_state.setter
    def governor_state(self, value: dict) -> None:
        self.governor.load_state_dict(value)

    # -- FLOP counting -----------------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if model is not None and self._hook is None:
            profile = profile_from_model(model)
            recompute = bool(getattr(model, "is_gradient_checkpointing", False))
            n_params = model.num_parameters(exclude_embeddings=True) if hasattr(model, "num_parameters") else 0

            def count(module, inputs, kw):
                ids = kw.get("input_ids", inputs[0] if inputs else None)
                if ids is None or ids.dim() != 2:
                    return
                b, s = ids.shape
                training = module.training and _grad_enabled()
                if self.flops == "trainer":
                    if training:  # Trainer.floating_point_ops, the formula behind state.total_flos
                        self.train_flops += 6.0 * ids.numel() * n_params
                elif training:
                    self.train_flops += train_step_flops(profile, b, s, recompute=recompute)
                else:
                    self.eval_flops += forward_flops(profile, b, s)

            self._hook = model.register_forward_pre_hook(count, with_kwargs=True)

    def on_train_end(self, args, state, control, **kwargs):
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    # -- decisions ---------------------------------------------------------------------------------------------
    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        loss = (metrics or {}).get("eval_loss")
        if loss is None or not math.isfinite(float(loss)):
            raise UserError("GovernorCallback needs eval_loss from Trainer.evaluate; give the Trainer an "
                            "eval_dataset (a held-out set) and an eval_strategy")
        ledger = Ledger()
        ledger.charge("train", self.train_flops)
        ledger.charge("eval", self.eval_flops)
        ledger.steps = int(state.global_step)
        budget = self._budget(ledger, state)
        evaluation = {"step": int(state.global_step), "eval_loss": float(loss), "flops": ledger.total_flops,
                      "train_flops": ledger.flops["train"]}
        decision = self.governor.decide(evaluation, ledger, budget)
        record = {"step": int(state.global_step), "flops": ledger.total_flops, "action": decision.action,
                  "reason": decision.reason, **decision.inputs}
        self.decisions.append(record)
        if state.is_world_process_zero:
            path = Path(self.decisions_file or Path(args.output_dir) / "decisions.jsonl")
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record, sort_keys=True, default=str) + "\n")
        if decision.action == "stop":
            control.should_training_stop = True
        return control

    def _budget(self, ledger: Ledger, state) -> Budget:
        if self.max_flops:
            return Budget(max_flops=self.max_flops)
        # No FLOP budget given: Trainer's max_steps is the budget, converted at the FLOPs per step so far.
        if state.max_steps and state.global_step and ledger.total_flops > 0:
            return Budget(max_flops=ledger.total_flops * state.max_steps / state.global_step)
        raise UserError("GovernorCallback needs a budget: pass max_flops= or give the Trainer max_steps / epochs")


def _grad_enabled() -> bool:
    import torch

    return torch.is_grad_enabled()
