"""The evaluation plan of the default `budgetune run` (no flags): evaluation FLOPs as a share of its budget, from
the real model's FLOP profile and the default held-out set (no training needed: the plan is made from these).
`before_share` is what the two whole-dev and two whole-test evaluations alone would cost."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> int:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from governor_suite import OUT, whole_eval_flops

    from budgetune import config as config_mod
    from budgetune.data import load_data
    from budgetune.governor import make
    from budgetune.methods.base import TrainContext
    from budgetune.models import load_model, load_tokenizer
    from budgetune.precision import make_accelerator
    from budgetune.train import governed
    from budgetune.train.loop import make_budget

    cfg = config_mod.default_run_config()
    tokenizer = load_tokenizer(cfg.model.model)
    data = load_data(cfg.data, tokenizer)
    model = load_model(cfg.model.model)
    budget = make_budget(cfg)
    # The model as the loop holds it: the default method's adapters (generation runs before and after with them).
    from budgetune.methods import registry

    method = registry.get(cfg.train.method)
    stepper = method.prepare(model, registry.make_config(cfg.train.method, cfg.train.method_options),
                             TrainContext(accelerator=make_accelerator("fp32"), seed=0, precision="fp32"))
    plan = governed.start(cfg, make("marginal", {}, budget), budget, model=stepper.unwrapped, data=data,
                          announce=False)
    whole = whole_eval_flops(model, data.scoring, cfg.train.eval_batch_size)
    out = {"budget": budget.max_flops, "dev": len(data.dev), "test": len(data.test), "whole_dev_flops": whole,
           "plan": {k: v for k, v in plan.items() if k != "sample"},
           "before_share": (2 * whole + 2 * plan["reported_flops"]) / budget.max_flops}
    print(json.dumps(out, indent=1))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "governor_evalshare.json").write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
