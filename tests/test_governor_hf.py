"""The governor inside a real Hugging Face Trainer, on a tiny random model."""

import json

import pytest
import torch


class Rows(torch.utils.data.Dataset):
    def __init__(self, tokenizer, texts):
        self.rows = [tokenizer(t, truncation=True, max_length=32)["input_ids"] for t in texts]

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        ids = self.rows[i] + [0] * (32 - len(self.rows[i]))
        mask = [1] * len(self.rows[i]) + [0] * (32 - len(self.rows[i]))
        labels = [t if m else -100 for t, m in zip(ids, mask)]
        return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask), "labels": torch.tensor(labels)}


def trainer_for(model, tokenizer, out, callback, **kw):
    from transformers import Trainer, TrainingArguments

    texts = [f"The number {i} comes after {i - 1} and before {i + 1}." for i in range(40)]
    settings = dict(output_dir=str(out), per_device_train_batch_size=4, per_device_eval_batch_size=8,
                    learning_rate=1e-3, eval_strategy="steps", eval_steps=2, logging_steps=100, report_to=[],
                    use_cpu=True, save_strategy="steps", save_steps=2, seed=0,
                    restore_callback_states_from_checkpoint=True)
    args = TrainingArguments(**{**settings, **kw})
    return Trainer(model=model, args=args, train_dataset=Rows(tokenizer, texts[:32]),
                   eval_dataset=Rows(tokenizer, texts[32:]), callbacks=[callback])


def test_callback_stops_trainer_and_resume_restores_it(tiny_model, tiny_config_path, tokenizer, tmp_path):
    from budgetune.governor.hf import GovernorCallback
    from budgetune.models import load_model

    # patience=1 with a huge min_delta stops at the second evaluation: a stop we can predict exactly.
    cb = GovernorCallback("patience", {"patience": 1, "min_delta": 100.0})
    trainer = trainer_for(tiny_model, tokenizer, tmp_path / "a", cb, max_steps=12)
    trainer.train()
    assert trainer.state.global_step == 4  # evaluations at steps 2 and 4; the second says stop
    lines = [json.loads(x) for x in (tmp_path / "a" / "decisions.jsonl").read_text().splitlines()]
    assert [d["action"] for d in lines] == ["continue", "stop"]
    assert lines[-1]["flops"] > lines[0]["flops"] > 0  # analytic FLOPs grow with training

    # The checkpoint at step 2 holds the governor's state; a resumed Trainer continues it, not a fresh one.
    saved = json.loads((tmp_path / "a" / "checkpoint-2" / "trainer_state.json").read_text())
    stored = saved["stateful_callbacks"]["GovernorCallback"]
    assert stored["attributes"]["governor_state"]["counter"] == 0 and stored["attributes"]["train_flops"] > 0
    cb2 = GovernorCallback("patience", {"patience": 1, "min_delta": 100.0})
    trainer2 = trainer_for(load_model(tiny_config_path, seed=0), tokenizer, tmp_path / "a", cb2, max_steps=12)
    trainer2.train(resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-2"))
    assert trainer2.state.global_step == 4  # restored best loss: one more evaluation without gain stops it


@pytest.mark.slow
def test_marginal_governor_runs_in_trainer(tiny_model, tokenizer, tmp_path):
    from budgetune.governor.hf import GovernorCallback

    cb = GovernorCallback("marginal", {"min_evals": 3}, flops="trainer")
    trainer = trainer_for(tiny_model, tokenizer, tmp_path / "m", cb, max_steps=10, save_strategy="no")
    trainer.train()
    assert len(cb.decisions) == 5
    assert all(d["action"] in ("continue", "stop") for d in cb.decisions)
    assert cb.decisions[-1]["budget_spent"] == pytest.approx(1.0)


def test_patience_matches_hugging_face_early_stopping():
    from transformers import TrainerControl, TrainerState, TrainingArguments
    from transformers.trainer_callback import EarlyStoppingCallback

    from budgetune.budget import Budget, Ledger
    from budgetune.governor import make

    losses = [3.0, 2.5, 2.4, 2.45, 2.41, 2.39, 2.395, 2.40, 2.38, 2.5, 2.6, 2.7]
    args = TrainingArguments(output_dir="unused", metric_for_best_model="eval_loss", greater_is_better=False,
                             load_best_model_at_end=True, eval_strategy="steps", save_strategy="steps",
                             report_to=[])
    for patience, delta in ((1, 0.0), (2, 0.0), (3, 0.005)):
        hf = EarlyStoppingCallback(early_stopping_patience=patience, early_stopping_threshold=delta)
        state, control = TrainerState(), TrainerControl()
        ours = make("patience", {"patience": patience, "min_delta": delta})
        for i, loss in enumerate(losses):
            hf.on_evaluate(args, state, control, metrics={"eval_loss": loss})
            if state.best_metric is None or loss < state.best_metric:  # what Trainer does after an evaluation
                state.best_metric = loss
            d = ours.decide({"eval_loss": loss, "flops": float(i + 1)}, Ledger(), Budget(max_flops=100.0))
            assert (d.action == "stop") == control.should_training_stop, (patience, delta, i)
            if control.should_training_stop:
                break
