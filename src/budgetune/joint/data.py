"""Data: whether to select, with which scorer and fraction, decided by selection/auto.py (the `scorer: auto` rule)
against the FLOPs left for selection and training once the evaluations are paid for.

auto prices scoring from the model's FLOP profile; here the model is built on the meta device (shapes only, no
weights, no initialisation), and training is priced with the method's own profile (a LoRA step skips the base's
weight gradients), so the fraction is what one pass of this run's training really covers.
"""

from __future__ import annotations

from .choices import CHOSEN, GIVEN

OFF = ("none", "off", "no")  # `--selection scorer=none`: train on the whole pool


def meta_model(cfg):
    """The model with its real shapes on the meta device: enough for a FLOP profile, nothing allocated."""
    import torch
    from transformers import AutoModelForCausalLM

    from ..models import load_config

    config = load_config(cfg.model.model, trust_remote_code=cfg.model.trust_remote_code,
                         allow_download=cfg.model.allow_download)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def choose(plan, cfg, given: set[str], data, *, left_flops: float | None, train_profile) -> dict:
    """Fill the plan's selection choice; returns the section the loop runs ({} for the whole pool)."""
    section = dict(cfg.selection or {})
    pool = list(data.train)
    if section and str(section.get("scorer", "")).lower() in OFF:
        plan.add("selection", f"none: all {len(pool)} examples", GIVEN, "--selection scorer=none", "--selection")
        return {}
    if section and section.get("scorer") != "auto":
        plan.add("selection", _describe(section, len(pool)), GIVEN, "--selection", "--selection")
        return section
    source = GIVEN if section else CHOSEN
    if left_flops is None:
        plan.add("selection", f"none: all {len(pool)} examples", source,
                 "no FLOP budget to size a subset against (give --max-flops)", "--selection")
        return {}
    if left_flops <= 0:
        plan.add("selection", f"none: all {len(pool)} examples", source,
                 "the planned evaluations take the whole FLOP budget: nothing is left to score with", "--selection")
        return {}
    from ..selection.auto import COST_SHARE
    from ..selection.auto import plan as auto_plan

    batch = int(cfg.train.micro_batch_size) * int(cfg.train.grad_accum)
    chosen = auto_plan(pool, list(data.scoring), meta_model(cfg), total_flops=left_flops, batch=batch,
                       cost_share=float(section.get("cost_share", COST_SHARE)), train_profile=train_profile)
    plan.numbers["selection_plan"] = chosen.to_dict()
    plan.flops["selection"] = float(chosen.predicted_flops)
    reason = chosen.reasons[-1]
    if chosen.section is None:
        plan.add("selection", f"none: all {len(pool)} examples", source, f"auto: {reason}", "--selection")
        return {}
    out = {**{k: v for k, v in section.items() if k not in ("scorer", "cost_share")}, **chosen.section}
    if isinstance(out.get("budget"), int) and out["budget"] < batch:
        # a short (time) budget covers less than one step: keep one step's examples, the least the loop trains on
        out["budget"] = min(batch, len(pool))
        reason += f"; raised to one optimizer step's {out['budget']} examples"
    plan.add("selection", _describe(out, len(pool)), source, f"auto: {chosen.reasons[0]}; {reason}", "--selection")
    return out


def _describe(section: dict, n: int) -> str:
    budget = section.get("budget")
    kept = f"{budget} of {n}"
    extra = "".join(f", {k} {section[k]}" for k in ("proxy", "sample") if section.get(k))
    return f"{section.get('scorer')}: {kept} examples{extra}"
