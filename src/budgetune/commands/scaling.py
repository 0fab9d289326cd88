"""`budgetune scaling fit RUNS...`: fit a Chinchilla law to runs and recommend how to spend a compute budget."""

from __future__ import annotations

import json
import math

HELP = ("scaling laws: fit L(N, D) = E + A/N^alpha + B/D^beta to run directories or a CSV/JSON of N, D, loss, and "
        "print the compute-optimal model size and data for a budget (C = 6ND), with the value of repeated data")


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="scaling_verb", metavar="ACTION", required=True)
    fit = sub.add_parser("fit", help="fit the law and print the recommendation", description=HELP)
    fit.add_argument("runs", nargs="+", metavar="RUNS",
                     help="run directories (metrics.jsonl, summary.json) or tables with columns N, D, loss")
    fit.add_argument("--flops", type=float, default=None,
                     help="compute budget to plan for (FLOPs); default: 10x the largest run")
    fit.add_argument("--unique-tokens", type=float, default=None,
                     help="unique training tokens available: shows what repeating them is worth (Muennighoff 2023)")
    fit.add_argument("--json", action="store_true", help="print the result as JSON")


def main(args) -> int:
    from dataclasses import asdict

    from .. import scaling
    from ..errors import check_number

    check_number(getattr(args, "flops", None), "--flops", above=0)
    check_number(getattr(args, "unique_tokens", None), "--unique-tokens", above=0)
    points, notes = scaling.load_points(args.runs)
    N, D, L = zip(*points) if points else ((), (), ())
    fit = scaling.fit_chinchilla(N, D, L)
    budget = args.flops or 10 * max(6 * n * d for n, d in zip(N, D))
    out = {"fit": asdict(fit), "points": len(points), "notes": notes, "flops": budget}
    lines = [f"fitted {len(points)} points ({'; '.join(notes) or 'from tables'})"]
    if fit.fixed_n is not None:
        lines.append(f"all runs have one model size (N = {fit.fixed_n:.3g} parameters): only the data term "
                     f"L(D) is fitted, and no compute-optimal model size can be given; add runs of other model "
                     f"sizes for that")
        out["fitted"] = "data term only (one model size)"
        lines.append(f"L(D) = {fit.E:.4f} + {fit.B:.4g} / D^{fit.beta:.4f}")
        d_at = _tokens_for_loss(fit, budget, N[0])
        out["tokens_at_budget"] = d_at
        lines.append(f"at {budget:.3g} FLOPs ({d_at:.3g} tokens at 6·N per token): predicted loss "
                     f"{float(fit.predict(N[0], d_at)):.4f}; the data term then buys "
                     f"{100 * _marginal_10pct(fit, d_at):.2f}% loss for another 10% of compute")
    else:
        lines.append(f"L(N, D) = {fit.E:.4f} + {fit.A:.4g} / N^{fit.alpha:.4f} + {fit.B:.4g} / D^{fit.beta:.4f}")
        n_opt, d_opt = scaling.compute_optimal(fit, budget)
        out.update(n_opt=n_opt, d_opt=d_opt, loss_opt=float(fit.predict(n_opt, d_opt)))
        lines.append(f"compute-optimal for {budget:.3g} FLOPs: N = {n_opt:.3g} parameters, D = {d_opt:.3g} tokens "
                     f"({d_opt / n_opt:.1f} tokens per parameter), predicted loss {out['loss_opt']:.4f}")
        d_at = d_opt
    if args.unique_tokens:
        eff = scaling.effective_data(args.unique_tokens, d_at)
        epochs = d_at / args.unique_tokens
        out.update(epochs=epochs, effective_tokens=eff)
        lines.append(f"with {args.unique_tokens:.3g} unique tokens that is {epochs:.1f} epochs, worth {eff:.3g} fresh "
                     f"tokens ({100 * eff / d_at:.0f}%; R_D* = {scaling.R_D_STAR})")
    print(json.dumps(out, indent=2, default=_nan) if args.json else "\n".join(lines))
    return 0


def _tokens_for_loss(fit, flops: float, n: float) -> float:
    return flops / (6.0 * n)


def _marginal_10pct(fit, d: float) -> float:
    now = fit.E + fit.B / d**fit.beta
    return (now - (fit.E + fit.B / (1.1 * d) ** fit.beta)) / now


def _nan(v):
    return None if isinstance(v, float) and math.isnan(v) else str(v)
