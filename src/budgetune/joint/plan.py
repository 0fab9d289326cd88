"""The joint plan, made once before any weight is loaded: memory → compute → governor and evaluation → data."""

from __future__ import annotations

import copy

from ..inputs import load_inputs
from . import compute, governing, memory, seconds
from . import data as data_mod
from .choices import CHOSEN, JointPlan


def _spec(cfg):
    from ..memory.spec import spec_from_model_name

    return spec_from_model_name(cfg.model.model)


def make_plan(cfg, given: set[str], *, tokenizer=None, data=None):
    """(JointPlan, tokenizer, data) for `cfg`; raises UserError for a budget no plan can meet (nothing written)."""
    from .. import precision as precision_mod
    from ..train.setup import make_budget, validate

    validate(cfg)
    spec = _spec(cfg)
    tokenizer, data = load_inputs(cfg, tokenizer, data)
    plan = JointPlan()
    precision = precision_mod.for_run(cfg)
    layout = memory.choose(plan, cfg, given, spec, list(data.train), precision)
    work = apply(copy.deepcopy(cfg), plan)  # what follows prices the layout just chosen
    costs = compute.costs(work, spec, data, layout)
    compute.refuse_if_short(work, costs)
    rates = seconds.rates(work, given, data, tokenizer, costs, layout)  # a time budget: this machine's FLOP/s
    seconds.refuse_if_short(work, costs, rates, given)
    plan.numbers.update({k: v for k, v in costs.items() if k != "train_profile"})
    sized = seconds.planning_config(work, rates)  # the FLOPs the seconds buy, where fewer than --max-flops
    budget = make_budget(sized)
    plan.config["governor"] = governing.choose(plan, sized, given, data, costs, budget)
    seconds.fit_schedule(plan, work, rates, costs, len(data.scoring))
    left = seconds.left_flops(work, plan.flops["eval"], rates)
    plan.config["selection"] = data_mod.choose(plan, sized, given, data, left_flops=left,
                                               train_profile=costs["train_profile"])
    plan.flops.setdefault("selection", 0.0)
    plan.flops["inference"] = 0.0
    if left is not None:
        train = max(0.0, left - plan.flops["selection"])
        plan.flops["train"] = train
        step = _mean_step(work, data, costs["train_profile"])
        plan.numbers["mean_step"] = step
        plan.add("training", f"{train:.3g} FLOPs", CHOSEN,
                 f"what the budget leaves after evaluation and selection: about {train / step:.0f} steps at the "
                 f"whole pool's mean step cost", "--max-flops")
    else:
        plan.flops["train"] = None
        limits = [f"{k} {v:g}" for k, v in (("--max-tokens", cfg.budget.max_tokens),
                                              ("--max-seconds", cfg.budget.max_seconds),
                                              ("--max-steps", cfg.train.max_steps)) if v]
        plan.add("training", "until " + ", ".join(limits), CHOSEN, "no FLOP budget: the other limits stop it",
                 "--max-flops")
    seconds.record(plan, work, rates, costs)
    plan.numbers["model"] = spec.name
    plan.numbers["max_flops"] = cfg.budget.max_flops
    plan.numbers["max_seconds"] = cfg.budget.max_seconds
    return plan, tokenizer, data


def _mean_step(cfg, data, profile) -> float:
    """Mean FLOPs of one optimizer step over the pool in the loop's seeded order (selection/auto.pass_flops)."""
    from ..selection.auto import pass_flops

    per = int(cfg.train.micro_batch_size) * int(cfg.train.grad_accum)
    pool = list(data.train)
    return pass_flops(profile, pool, per) / max(1, -(-len(pool) // per))


def apply(cfg, plan: JointPlan):
    """Set the plan's choices on the run config (config.json then records them, so a resume keeps them)."""
    for key, value in plan.config.items():
        section, _, name = key.partition(".")
        if name:
            setattr(getattr(cfg, section), name, copy.deepcopy(value))
        else:
            setattr(cfg, section, copy.deepcopy(value))
    return cfg
