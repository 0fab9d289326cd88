"""The evaluation plan of the default `budgetune run` (no flags): evaluation FLOPs as a share of its budget, from
the real model's FLOP profile and the default held-out set (no training needed: the plan is made from these)."""

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
    from budgetune.models import load_model, load_tokenizer
    from budgetune.train import governed
    from budgetune.train.loop import make_budget

    cfg = config_mod.default_run_config()
    tokenizer = load_tokenizer(cfg.model.model)
    data = load_data(cfg.data, tokenizer)
    model = load_model(cfg.model.model)
    whole = whole_eval_flops(model, data.target, cfg.train.eval_batch_size)
    budget = make_budget(cfg)
    plan = governed.start(cfg, make("marginal", {}, budget), budget, whole_flops=whole,
                          n_examples=len(data.target), announce=False)
    # The same run before this change: 4 whole-set evaluations in the order the examples come (unsorted batches).
    from budgetune.flops import forward_flops, profile_from_model

    p = profile_from_model(model)
    ex, b = data.target, cfg.train.eval_batch_size
    unsorted = sum(forward_flops(p, len(ex[i:i + b]), max(e.n_tokens for e in ex[i:i + b]))
                   for i in range(0, len(ex), b))
    out = {"budget": budget.max_flops, "heldout": len(data.target), "whole_eval_flops": whole,
           "whole_eval_flops_unsorted": unsorted, "plan": {k: v for k, v in plan.items() if k != "sample"},
           "before_share": 4 * unsorted / budget.max_flops}
    print(json.dumps(out, indent=1))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "governor_evalshare.json").write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
