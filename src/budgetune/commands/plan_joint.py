"""`budgetune plan --data ... --max-flops ...`: the plan `budgetune run` makes for these budgets (budgetune.joint),
printed without training. The same code path as `run`; the flags map onto the run's own fields."""

from __future__ import annotations


def joint_main(args) -> int:
    import json

    from .. import config as config_mod
    from ..joint import make_plan
    from ..joint.show import table

    cfg = config_mod.default_run_config()
    given = set()
    cfg.model.model = args.model
    for value, (section, name) in ((args.data, ("data", "data")), (args.target, ("data", "target")),
                                   (args.max_flops, ("budget", "max_flops")),
                                   (getattr(args, "max_seconds", None), ("budget", "max_seconds")),
                                   (getattr(args, "flops_per_second", None), ("budget", "flops_per_second")),
                                   (args.gpu_memory, ("budget", "max_memory")),
                                   (args.seq_len, ("data", "max_seq_len")),
                                   (args.batch_size, ("train", "micro_batch_size"))):
        if value is not None:
            setattr(getattr(cfg, section), name, value)
            given.add(f"{section}.{name}")
    if args.precision != "auto":
        cfg.train.precision = args.precision
        given.add("train.precision")
    if args.method:
        if len(args.method) > 1:
            from ..errors import UserError

            raise UserError("with --data/--max-flops give one --method (the run's), or none to let the plan choose")
        cfg.train.method = args.method[0]
        given.add("train.method")
    if cfg.budget.max_seconds == 0.0:  # --max-seconds none
        cfg.budget.max_seconds = None
    config_mod.check(cfg)
    plan, _, _ = make_plan(cfg, given)
    if args.json:
        print(json.dumps(plan.to_json(), indent=2))
    else:
        print(table(plan))
    return 0
