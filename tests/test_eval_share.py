"""A governed run whose held-out data is split into dev and test (as the default run's is): the governor's side is
the planned dev sample throughout, the reported loss is the whole test set before and after, and evaluation stays
within its share of the budget, all from the ledger."""

import json

import pytest
from helpers import small_split, tiny_run_config

from budgetune.data import DataSplit
from budgetune.governor import make
from budgetune.train.loop import train


def test_dev_is_the_sample_throughout_and_test_is_whole_before_and_after(tmp_path, tiny_config_path, tokenizer):
    from budgetune.flops import profile_from_model
    from budgetune.train.evalplan import evaluation_flops

    base = small_split(tokenizer, n_target=24)
    data = DataSplit(base.train, base.target[:8], base.source, dev=base.target[8:24])
    cfg = tiny_run_config(tiny_config_path, tmp_path / "run", eval_every=0, checkpoint_every=0)
    cfg.budget.max_flops = 3e11
    result = train(cfg, tokenizer=tokenizer, data=data, governor=make("marginal", {"eval_min_sample": 4}),
                   progress=False)
    lines = [json.loads(x) for x in (result.run_dir / "decisions.jsonl").read_text().splitlines()]
    plan = lines[0]
    assert plan["action"] == "plan" and plan["origin_on_sample"] and 4 <= plan["sample_size"] < len(data.dev)
    evals = [e for e in (json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines())
             if e["kind"] == "eval"]
    assert evals[0]["step"] == 0 and len(evals) >= 2
    assert all(e["eval_indices"] == plan["sample"] for e in evals)  # no whole-dev evaluation at all
    # The reported losses are the test set's, evaluated whole: two evaluations priced by their batch shapes.
    test_flops = evaluation_flops(profile_from_model(result.extra["model"]), [e.n_tokens for e in data.test],
                                  cfg.train.eval_batch_size)
    assert result.ledger.flops["eval"] == pytest.approx(sum(e["eval_flops"] for e in evals) + 2 * test_flops)
    assert result.ledger.flops["eval"] <= cfg.train.eval_share * cfg.budget.max_flops * 1.01
    assert result.after_loss != evals[-1]["eval_loss"]
    # The response-token accuracy came from the same test forwards, on every response token of the test set.
    acc = result.extra["token_accuracy"]
    scored = sum(sum(1 for t in e.labels[1:] if t != -100) for e in data.test)
    assert acc["before"]["tokens"] == acc["after"]["tokens"] == scored
    assert acc["after"]["flops"] == 0.0
    # ... and is what plain greedy decoding gives, one unpadded example at a time
    import torch

    model, right = result.extra["model"], 0
    with torch.no_grad():
        for e in data.test:
            guess = model(input_ids=torch.tensor([e.input_ids])).logits[0, :-1].argmax(-1).tolist()
            right += sum(g == t for g, t in zip(guess, e.labels[1:], strict=True) if t != -100)
    assert acc["after"]["accuracy"] == pytest.approx(right / scored, abs=1e-9)
