"""The governor's page of a run report: held-out loss against FLOPs with the decisions marked, and G_t against the
price it had to clear."""

from __future__ import annotations

import json
from pathlib import Path

COLORS = {"stop": "tab:red", "refresh": "tab:green", "reallocate": "tab:purple", "cooldown": "tab:orange"}


def _jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def decision_figure(run_dir):
    """A matplotlib Figure for run_dir (metrics.jsonl, decisions.jsonl), or None when it has no evaluations."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    run_dir = Path(run_dir)
    evals = [r for r in _jsonl(run_dir / "metrics.jsonl") if r.get("kind") == "eval"]
    if not evals:
        return None
    decisions = _jsonl(run_dir / "decisions.jsonl")
    gated = [d for d in decisions if d.get("optimistic_gain") is not None and d.get("price") is not None]
    fig = Figure(figsize=(8, 6.5 if gated else 3.6), layout="constrained")
    axes = fig.subplots(2 if gated else 1, 1, sharex=True, squeeze=False)[:, 0]
    ax = axes[0]
    ax.plot([e["flops"] for e in evals], [e["eval_loss"] for e in evals], "o-", color="tab:blue", ms=3,
            label="held-out loss")
    for d in decisions:
        if d.get("action") == "cooldown" and not d.get("done"):
            continue  # it starts where the stop is marked; its end is marked
        if d.get("action") in COLORS:
            ax.axvline(d["flops"], color=COLORS[d["action"]], ls="--", lw=1)
            ax.annotate(d["action"], (d["flops"], ax.get_ylim()[1]), color=COLORS[d["action"]], fontsize=8,
                        rotation=90, va="top", ha="right")
    ax.set_ylabel("held-out loss")
    ax.set_title(f"{run_dir.name}: loss vs FLOPs and the governor's decisions")
    ax.legend(loc="upper right", fontsize=8)
    if gated:
        g = axes[1]
        x = [d["flops"] for d in gated]
        g.plot(x, [100 * d["gain_next"] for d in gated], "o-", ms=3, label="predicted gain of the next horizon (%)")
        g.plot(x, [100 * d["optimistic_gain"] for d in gated], ":", label="with +z·sd (compared)")
        g.plot(x, [100 * d["price"] for d in gated], "k--", label="price (threshold, rising)")
        g.set_yscale("symlog", linthresh=0.1)
        g.set_ylabel("relative loss reduction (%)")
        g.legend(loc="upper right", fontsize=8)
    axes[-1].set_xlabel("FLOPs spent (all phases)")
    return fig
