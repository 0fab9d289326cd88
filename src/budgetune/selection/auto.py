"""`selection: {scorer: auto}`: choose the scorer, proxy and fraction for the FLOP budget at hand from the scorers'
cost models, and say why.

The rule (Yin & Rush, ICLR 2025, "Compute-Constrained Data Selection": a costly selector pays only when the model
it trains is several times the selector's compute):
1. Fraction: what one pass of the training budget covers, `f = training FLOPs / FLOPs of one pass over the pool`
   (repeated data is worth less than fresh, Muennighoff et al. 2023; the selection benchmark found one pass over
   the selection best and four passes over a smaller one worst). `f >= 1` means the budget already trains on every
   example once: no selection.
2. Scorer: a candidate is affordable when its predicted FLOPs are at most `cost_share` (20 %) of the training FLOPs
   left after it. With target (dev) examples, a model-free scorer targets them: the hashed n-gram classifier of dev
   against pool (from 4 dev examples), else DSIR (2 FLOPs per hashed feature per example); without, IFD on the
   proxy over a sample, carried to the pool by the n-gram predictor, when affordable; otherwise none, since a
   random subset only drops data.
3. Wall time: the scorer's predicted work over this machine's measured throughputs (selection/costs.py: one
   timed forward batch, and for warm-up scorers one timed training step and LoRA copy), so a user sees the
   seconds before they are spent.

Each candidate's cost and the reason for the choice go into the plan (`plan()` returns it; the loop writes it to
RUN_DIR/selection.summary.json, under `plan`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import UserError
from ..flops import profile_from_model, train_step_flops

COST_SHARE = 0.2
SAMPLE = 0.1  # share of the pool a model-based scorer reads under auto
PROXY_LAYERS = 4
BLOCKS = 0.95  # share of examples at the longest length from which every training step is taken to cost the same


@dataclass
class Plan:
    section: dict | None  # the selection section to run; None: train on the whole pool
    fraction: float
    predicted_flops: float
    train_flops: float
    reasons: list[str] = field(default_factory=list)
    candidates: list[dict] = field(default_factory=list)
    predicted_seconds: float | None = None

    def to_dict(self) -> dict:
        return {"section": self.section, "fraction": self.fraction, "predicted_scoring_flops": self.predicted_flops,
                "train_flops": self.train_flops, "predicted_scoring_seconds": self.predicted_seconds,
                "reasons": self.reasons,
                "candidates": [{**c, "share_of_training": None if c["share_of_training"] == float("inf")
                                else c["share_of_training"]} for c in self.candidates]}


def pass_flops(profile, pool, batch: int) -> float:
    """Training FLOPs of one pass over the pool in length-mixed batches (a seeded shuffle, as training orders)."""
    lengths = np.array([e.n_tokens for e in pool])[np.random.default_rng(0).permutation(len(pool))]
    return float(sum(train_step_flops(profile, len(lengths[i: i + batch]), int(lengths[i: i + batch].max()))
                     for i in range(0, len(lengths), batch)))


def _proxy_profile(model, layers: int):
    from dataclasses import replace

    profile = profile_from_model(model)
    if layers >= profile.n_layers:
        return profile
    # The truncated copy keeps the embedding and head; only the decoder layers' matmuls shrink.
    head = model.get_output_embeddings().weight.numel()
    per_layer = (profile.matmul_params - head) / profile.n_layers
    return replace(profile, n_layers=layers, matmul_params=head + per_layer * layers)


def _share(cost: float, total: float) -> float:
    """Scoring cost as a share of the training FLOPs left after it; infinite when it eats the whole budget."""
    return cost / (total - cost) if total > cost else float("inf")


def whole_step_share(cost: float, total: float, pool, profile, batch: int) -> float | None:
    """When (nearly) every example has the longest length (text cut into blocks; only a pass's end scrap is
    shorter), every training step of any subset costs the same, a batch padded to that length, so training runs
    in whole steps and scoring costs the steps it displaces, not its FLOPs: the share of the whole steps left that
    it takes away (1.6e6 FLOPs of hashing can cost one of two steps). None when lengths vary (then which steps fit
    depends on the subset, and a FLOP of scoring displaces about a FLOP of training, as `_share` prices it)."""
    lengths = np.array([e.n_tokens for e in pool])
    longest = int(lengths.max())
    if np.mean(lengths == longest) < BLOCKS:
        return None
    step = train_step_flops(profile, batch, longest)
    whole = int(total // step)
    left = int(max(0.0, total - cost) // step)
    if left <= 0:
        return float("inf")
    return (whole - left) / left


def plan(pool, target, model, *, total_flops: float, batch: int, cost_share: float = COST_SHARE,
         proxy_layers: int = PROXY_LAYERS, sample: float = SAMPLE, train_profile=None) -> Plan:
    """The choice for `total_flops` (selection + training) on this pool; nothing is scored here.

    `train_profile` prices a training step as the method trains (LoRA's backward skips the frozen weights'
    gradients); unset, the model's own profile, which prices full fine-tuning and so errs toward smaller subsets."""
    if total_flops is None or total_flops <= 0:
        raise UserError("selection scorer 'auto' needs a FLOP budget to plan against; set --max-flops")
    if model is None:
        raise UserError("selection scorer 'auto' needs the model (its size prices the training); drop --model none")
    profile = profile_from_model(model)
    one_pass = pass_flops(train_profile or profile, pool, batch)
    candidates = []

    def fraction_after(cost: float) -> float:
        return (total_flops - cost) / one_pass

    f_none = total_flops / one_pass
    reasons = [(f"one pass over the {len(pool)}-example pool costs {one_pass:.3g} training FLOPs; the budget of "
                f"{total_flops:.3g} pays for {f_none:.2f} of a pass")]
    if f_none >= 1:
        reasons.append("the budget trains on every example at least once, so a subset could only drop data: "
                       "no selection")
        return Plan(None, 1.0, 0.0, total_flops, reasons, candidates)
    prompts = all(e.messages for e in pool)
    def price(cost: float) -> float:
        """A candidate's share of the training it leaves, in whole steps where this pool's steps cost the same."""
        quantised = whole_step_share(cost, total_flops, pool, train_profile or profile, batch)
        return _share(cost, total_flops) if quantised is None else quantised

    from . import registry

    for name, module in auto_candidates():  # each scorer's own cost model (predicted_flops in its file)
        if getattr(module, "NEEDS_TARGET", False) and len(target) < getattr(module, "MIN_TARGET", 1) \
                or getattr(module, "NEEDS_PROMPTS", False) and not prompts:
            continue
        if not module.NEEDS_MODEL:
            # the options auto runs it with (AUTO_OPTIONS), priced as run; a targeting scorer's work grows with its
            # target set too (the classifier fits on it)
            options = dict(getattr(module, "AUTO_OPTIONS", {}))
            priced = {"config": registry.REGISTRY.config(name, options)} if options else {}
            cost = module.predicted_flops(None, pool, target, **priced) if getattr(module, "NEEDS_TARGET", False) \
                else module.predicted_flops(None, pool)
            candidates.append({"scorer": name, "proxy": None, "predicted_flops": cost,
                               "share_of_training": price(cost), **({"options": options} if options else {})})
            continue
        proxy = _proxy_profile(model, proxy_layers)
        n = max(16, round(sample * len(pool)))
        cost = module.predicted_flops(proxy, pool[:n]) * 1.0
        candidates.append({"scorer": name, "proxy": proxy_layers, "sample": sample, "predicted_flops": cost,
                           "share_of_training": price(cost)})
        full_cost = module.predicted_flops(profile, pool)
        candidates.append({"scorer": name, "proxy": None, "predicted_flops": full_cost,
                           "share_of_training": price(full_cost)})
    affordable = [c for c in candidates if 0 <= c["share_of_training"] <= cost_share]
    for c in candidates:
        ok = c in affordable
        what = c["scorer"] + "".join(f" {k} {v}" for k, v in c.get("options", {}).items()) + (
            f" on a {c['proxy']}-layer proxy" if c.get("proxy") else "") + (
            f" over {c['sample']:.0%} of the pool" if c.get("sample") else "")
        share = c["share_of_training"]
        share_text = (f"{share:.1%} of the training it leaves" if share != float("inf")
                      else "more than the whole budget")
        reasons.append(f"{what}: {c['predicted_flops']:.3g} FLOPs, {share_text} "
                       f"({'affordable' if ok else f'over the {cost_share:.0%} share'})")
    # Model-free scorers first, in the order they declare (AUTO_ORDER: the one that found the target best in the
    # measured cases first), then the model-based ones in the order costed.
    order = {name: getattr(module, "AUTO_ORDER", 100) for name, module in auto_candidates()
             if not module.NEEDS_MODEL}
    free = set(order)
    choice = min((c for c in affordable if c["scorer"] in free), key=lambda c: order[c["scorer"]], default=None) \
        or next(iter(affordable), None)
    if choice is None:
        reasons.append("no scorer is affordable and a random subset only drops data: no selection")
        return Plan(None, 1.0, 0.0, total_flops, reasons, candidates)
    fraction = fraction_after(choice["predicted_flops"])
    section = {"scorer": choice["scorer"], "budget": max(1, round(fraction * len(pool)))}
    if choice.get("proxy"):
        section["proxy"] = choice["proxy"]
    if choice.get("sample"):
        section["sample"] = choice["sample"]
    if choice.get("options"):
        section["options"] = choice["options"]
    why = ("targets the dev examples at no model cost" if choice["scorer"] in free else
           "the cheapest affordable model-based scorer")
    reasons.append(f"chosen: {choice['scorer']} ({why}), keeping {section['budget']} examples ({fraction:.1%}): "
                   f"what one pass of the {total_flops - choice['predicted_flops']:.3g} training FLOPs covers")
    return Plan(section, fraction, choice["predicted_flops"], total_flops - choice["predicted_flops"], reasons,
                candidates)


def throughput(model, examples, batch: int = 16) -> float:
    """Forward FLOPs per second of `model` on this machine, from one timed batch (warm: the second of two)."""
    from .forward import token_stats

    sample = list(examples[:batch])
    token_stats(model, sample[: max(1, batch // 4)], batch_size=batch, progress=None)
    t0 = time.perf_counter()
    _, _, flops, _ = token_stats(model, sample, batch_size=batch, progress=None)
    return flops / max(time.perf_counter() - t0, 1e-9)


def predict_seconds(section: dict, model, pool, target, rates=None) -> float:
    """Wall seconds the planned scoring will take: hashing time per example measured on a few examples (DSIR), or
    the scorer's predicted work (its `predicted_work`: forward FLOPs, training FLOPs, LoRA copies) over this
    machine's measured rates (selection/costs.py; `rates` reuses a measurement)."""
    from . import registry
    from .costs import measure_rates

    name = section["scorer"]
    module = registry.get(name)
    if not module.NEEDS_MODEL and hasattr(module, "predict_seconds"):
        return module.predict_seconds(pool, target)
    if not hasattr(module, "predicted_work"):
        timed = [n for n in registry.names() if hasattr(registry.get(n), "predicted_work")]
        raise UserError(f"no wall-time model for scorer '{name}' yet; the models cover {', '.join(timed)}")
    from .proxy import proxy_for

    scorer_model, _ = proxy_for(model, section.get("proxy"))
    sample = section.get("sample")
    n = len(pool) if not sample else min(len(pool), max(16, round(float(sample) * len(pool)) if float(sample) <= 1
                                                     else int(sample)))
    work = module.predicted_work(scorer_model, pool[:n], target, registry.REGISTRY.config(name, section.get("options")))
    rates = rates or measure_rates(scorer_model, pool, batch=8, train=bool(work.train or work.copies))
    return rates.seconds(work)


def auto_candidates() -> list[tuple[str, object]]:
    """(name, module) of the registered scorers that declare AUTO = True and a cost model (predicted_flops)."""
    from . import registry

    return [(n, m) for n in registry.names() if getattr(m := registry.get(n), "AUTO", False)
            and hasattr(m, "predicted_flops")]
