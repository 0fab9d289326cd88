"""How deep to decode under a FLOP budget per token: full depth, or an early-exit rule (infer/early_exit.py) whose
predicted FLOPs fit. Pure functions of a ModelSpec (no torch), so `budgetune plan --inference` answers at once.

The FLOP model is early exit's own (budgetune.flops' conventions; CALM, Schuster et al. 2022, §3.3 for the K/V
fill): a decoded token that runs l of L layers at context c, with k confidence checks, costs
    l·(2·N_layer + 4·c·d_attn) + (L − l)·2·(N_k + N_v) + k·2·N_head
(N_layer: one decoder layer's matrix weights; N_k + N_v: its K and V projections; N_head: the LM head, counted when
tied since its product runs). A rule's expected FLOPs per token need the share of tokens that exit at each of its
layers; that is a property of the model and the data, not of its config, so the plan uses the shares measured by
bench/early_exit.py (docs/benchmarks/early_exit.md) where this model was measured, and otherwise can only bound a
rule: between every token exiting at its first layer and none exiting (full depth plus every check). A rule is
chosen only on a prediction: measured shares, or a worst case that fits.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DepthCosts:
    """Per-token pieces of adaptive-depth decoding, from a FlopProfile (a model) or a ModelSpec (a config)."""

    layer_params: float  # matrix parameters of one decoder layer (mean over layers)
    kv_params: int  # K and V projection parameters of one layer
    head_params: int  # LM head parameters (counted even when tied: the product runs)
    n_layers: int
    attn_dim: int


def token_flops(c: DepthCosts, context: int, layers_run: int, checks: int) -> float:
    """FLOPs of one decoded token that ran `layers_run` layers and `checks` head passes, attending over `context`
    cached tokens (this one included). Full depth with one head pass equals flops.decode_flops_per_token."""
    run = layers_run * (2.0 * c.layer_params + 4.0 * context * c.attn_dim)
    return run + (c.n_layers - layers_run) * 2.0 * c.kv_params + checks * 2.0 * c.head_params


def costs_from_spec(spec) -> DepthCosts | None:
    """The FLOP pieces from a config's shape; None where the decoder has no separate K and V projections (early
    exit supports Llama-family decoders only)."""
    by_name = {lin.name: lin for lin in spec.layer_linears}
    if "k_proj" not in by_name or "v_proj" not in by_name:
        return None
    weights = sum(lin.in_features * lin.out_features for lin in spec.layer_linears)
    kv = sum(by_name[n].in_features * by_name[n].out_features for n in ("k_proj", "v_proj"))
    return DepthCosts(weights, kv, spec.vocab * spec.hidden, spec.n_layers, spec.n_heads * spec.head_dim)


def expected_token_flops(c: DepthCosts, exit_layers, shares: dict, context: int) -> float:
    """Mean FLOPs per decoded token of a rule trying `exit_layers` (ascending) when a share `shares[l]` of tokens
    leaves at layer l: a token leaving at the i-th exit layer paid i checks; the rest run every layer and pay every
    check plus the final head pass."""
    layers = sorted(exit_layers)
    total, left = 0.0, 1.0
    for i, layer in enumerate(layers):
        q = float(shares.get(layer, 0.0))
        total += q * token_flops(c, context, layer, i + 1)
        left -= q
    return total + left * token_flops(c, context, c.n_layers, len(layers) + 1)


@dataclass(frozen=True)
class MeasuredRule:
    """An early-exit rule as bench/early_exit.py measured it on one model (greedy, held-out chatterbot prompts)."""

    exit_layers: tuple[int, ...]
    threshold: float
    shares: dict  # exit layer → share of decoded tokens that left there
    identical: str  # prompts whose whole output equalled full-depth greedy output
    prefix_share: float  # mean share of the full-depth output reproduced before the first differing token
    agrees: dict  # exit layer → teacher-forced share of fired exits whose token is the full-depth token


# docs/benchmarks/early_exit.md (3 prompts, 69 decoded tokens after the first): the per-layer shares follow exactly
# from the recorded mean depth and exited share (7 + 14, 27 + 22 and 18 of the 69 tokens).
MEASURED = {
    "SmolLM2-135M-Instruct": (
        MeasuredRule((20, 26), 0.9, {20: 7 / 69, 26: 14 / 69}, "0/3", 0.28, {20: 0.50, 26: 0.83}),
        MeasuredRule((20, 26), 0.7, {20: 27 / 69, 26: 22 / 69}, "0/3", 0.28, {20: 0.52, 26: 0.69}),
        MeasuredRule((26,), 0.8, {26: 18 / 69}, "0/3", 0.28, {26: 0.73}),
    ),
}


def _rule_text(r) -> str:
    return f"--early-exit {','.join(map(str, r.exit_layers))} --exit-threshold {r.threshold:g}"


def break_even_share(c: DepthCosts, layer: int, context: int, budget: float) -> float | None:
    """Share of tokens that must exit at `layer` (a one-layer rule) for its mean FLOPs to fit `budget`; None when
    even every token exiting there does not fit."""
    stay = token_flops(c, context, c.n_layers, 2)
    leave = token_flops(c, context, layer, 1)
    if leave > budget:
        return None
    return 0.0 if stay <= budget else (stay - budget) / (stay - leave)


def plan_depth(spec, budget: float, context: int, measured=None) -> tuple[list[str], dict]:
    """(text lines, JSON-ready dict) of the depth to decode at under `budget` FLOPs per decoded token at `context`
    tokens: full depth when it fits (its output is the model's own greedy output); otherwise the measured rule with
    the highest agreement with full depth whose predicted FLOPs fit; otherwise none, with what it would take."""
    c = costs_from_spec(spec)
    full = None if c is None else token_flops(c, context, c.n_layers, 1)
    obj = {"flops_per_token_budget": float(budget), "context": int(context), "full_depth_flops_per_token": full,
           "candidates": [], "choice": None, "why": ""}
    if c is None:
        obj["why"] = f"{spec.name} has no separate K/V projections: early exit is for Llama-family decoders only"
        return [f"depth under {budget:.3g} FLOPs/token: {obj['why']}"], obj
    rules = MEASURED.get(spec.name, ()) if measured is None else measured
    fits = []
    for r in rules:
        predicted = expected_token_flops(c, r.exit_layers, r.shares, context)
        row = {"rule": _rule_text(r), "exit_layers": list(r.exit_layers), "threshold": r.threshold,
               "predicted_flops_per_token": predicted, "vs_full": predicted / full, "fits": predicted <= budget,
               "exited": sum(r.shares.values()), "identical_outputs": r.identical, "prefix_share": r.prefix_share,
               "agrees_when_fired": {str(k): v for k, v in r.agrees.items()}}
        obj["candidates"].append(row)
        if row["fits"]:
            fits.append((r.prefix_share, min(r.agrees.values()), -predicted, row))
    head = 2.0 * c.head_params / (2.0 * c.layer_params)
    if full <= budget:
        obj["choice"] = "full depth"
        cheaper = [row for row in obj["candidates"] if row["vs_full"] < 1]
        obj["why"] = (f"full depth fits ({full:.3g} ≤ {budget:.3g} FLOPs/token) and is the model's own greedy "
                      f"output; " + (f"{len(cheaper)} measured rule(s) would be cheaper but change the output"
                                     if cheaper else "no measured early-exit rule is cheaper than full depth here"
                                     if rules else "early exit could only change the output"))
    elif fits:
        best = max(fits, key=lambda t: t[:3])[3]
        obj["choice"] = best["rule"]
        obj["why"] = (f"full depth ({full:.3g}) exceeds the budget; this rule is predicted at "
                      f"{best['predicted_flops_per_token']:.3g} from its measured exit shares, with the highest "
                      f"measured agreement with full depth of those that fit ({best['identical_outputs']} identical "
                      f"outputs, {best['prefix_share']:.0%} before the first difference)")
    else:
        # The lowest exit layer measured (its agreement is known), else the middle layer.
        lowest = min((min(r.exit_layers) for r in rules), default=c.n_layers // 2)
        need = break_even_share(c, lowest, context, budget)
        obj["why"] = (f"nothing fits: full depth needs {full:.3g} FLOPs/token"
                      + (f" and every measured rule more ({min(r['predicted_flops_per_token'] for r in obj['candidates']):.3g} at best)"
                         if rules else ", and this model's exit shares were not measured (a rule cannot be predicted)")
                      + (f"; a rule exiting at layer {lowest} fits only if at least {need:.0%} of tokens leave there"
                         if need is not None else f"; not even every token leaving at layer {lowest} fits"))
    obj["check_cost_in_layers"] = head
    lines = [(f"depth under {budget:.3g} FLOPs per decoded token at context {context}: "
              f"{obj['choice'] or 'none fits'}"),
             (f"  full depth: {full:.3g} FLOPs/token ({c.n_layers} layers; one confidence check = one head pass "
              f"≈ {head:.1f} layers)")]
    for row in obj["candidates"]:
        agree = ", ".join(f"L{k} {v:.0%}" for k, v in row["agrees_when_fired"].items())
        lines.append(f"  {row['rule']}: predicted {row['predicted_flops_per_token']:.3g} ({row['vs_full']:.2f}× full, "
                     f"{row['exited']:.0%} of tokens exit; {'fits' if row['fits'] else 'over'}); measured vs full "
                     f"depth: {row['identical_outputs']} identical outputs, {row['prefix_share']:.0%} before the "
                     f"first difference, exit token = full-depth token when fired: {agree}")
    if rules:
        lines.append("  (exit shares and agreement measured by bench/early_exit.py, docs/benchmarks/early_exit.md)")
    lines.append(f"  why: {obj['why']}")
    return lines, obj
