"""The report's plots, each a pure function of records read from the run directory, returning a matplotlib Figure
(object API only: no pyplot state, so the same files always draw the same bytes)."""

from __future__ import annotations

COLORS = {"stop": "tab:red", "refresh": "tab:green", "reallocate": "tab:purple", "cooldown": "tab:orange"}
TERMS = ("weights", "gradients", "optimizer", "activations", "other")


def _figure(w: float, h: float):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), layout="constrained")


def loss_limits(values: list[float]) -> tuple[float, float]:
    """A loss axis that fits the held-out points with a margin, so a small change is visible."""
    lo, hi = min(values), max(values)
    pad = max(0.25 * (hi - lo), 0.01 * abs(hi), 1e-3)
    return lo - pad, hi + pad


def loss_figure(metrics: list[dict], decisions: list[dict]):
    """Held-out loss against cumulative FLOPs, training loss behind it, the governor's decisions as marked lines."""
    evals = [m for m in metrics if m.get("kind") == "eval"]
    trains = [m for m in metrics if m.get("kind") == "train"]
    fig = _figure(7.5, 4.2)
    ax = fig.subplots()
    if trains:
        # Its own (right) axis: per-step training loss is noisier and on another level than the held-out loss,
        # and sharing one axis flattens the held-out curve.
        right = ax.twinx()
        right.plot([m["flops"] for m in trains], [m["train_loss"] for m in trains], color="0.7", lw=1,
                   label="training loss, per step (right axis)")
        right.set_ylabel("training loss", color="0.45")
        right.tick_params(axis="y", colors="0.45")
        ax.set_zorder(right.get_zorder() + 1)
        ax.patch.set_visible(False)
    ax.plot([m["flops"] for m in evals], [m["eval_loss"] for m in evals], "o-", color="C0",
            label="held-out loss (left axis)")
    if evals:
        ax.set_ylim(*loss_limits([m["eval_loss"] for m in evals]))
    marked = set()
    for d in decisions:
        action = d.get("action")
        if action not in COLORS or (action == "cooldown" and not d.get("done")):
            continue  # a cooldown starts where the stop is marked; its end is marked
        label = f"governor: {action}" if action not in marked else None
        marked.add(action)
        ax.axvline(d["flops"], color=COLORS[action], ls="--", lw=1.2, label=label)
    ax.set_xlabel("cumulative FLOPs (all phases)")
    ax.set_ylabel("loss (nats / response token)")
    ax.grid(alpha=0.3)
    # Below the axes, so it never covers a curve or a decision line.
    fig.legend(loc="outside lower center", ncol=4, fontsize=8, frameon=False)
    return fig


def gain_figure(decisions: list[dict]):
    """The governor's predicted gain G_t of the next horizon against the price it had to clear, per evaluation;
    None when the decisions carry no gain (a governor without a learning-curve model)."""
    gated = [d for d in decisions if d.get("gain_next") is not None and d.get("price") is not None]
    if not gated:
        return None
    fig = _figure(7.5, 3.4)
    ax = fig.subplots()
    x = [d["flops"] for d in gated]
    ax.plot(x, [100 * d["gain_next"] for d in gated], "o-", ms=3, label="G_t: predicted gain of the next horizon")
    if any(d.get("optimistic_gain") is not None for d in gated):
        ax.plot(x, [100 * (d.get("optimistic_gain") or 0.0) for d in gated], ":", label="G_t + z·sd (compared)")
    ax.plot(x, [100 * d["price"] for d in gated], "k--", label="price (the gain it must clear)")
    for d in decisions:
        if d.get("action") == "stop":
            ax.axvline(d["flops"], color=COLORS["stop"], ls="--", lw=1)
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xlabel("cumulative FLOPs (all phases)")
    ax.set_ylabel("relative loss reduction (%)")
    ax.grid(alpha=0.3)  # a linear axis: every tick labelled, negative gains shown as they are
    fig.legend(loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    return fig


def phase_figure(ledger: dict):
    """FLOPs by phase (the ledger), as horizontal bars with their share."""
    phases = [(p, v) for p, v in ledger.get("flops", {}).items() if v]
    if not phases:
        return None
    total = sum(v for _, v in phases)
    fig = _figure(7.5, 0.5 + 0.45 * len(phases))
    ax = fig.subplots()
    ax.barh([p for p, _ in phases], [v for _, v in phases], color="C0")
    for i, (_, v) in enumerate(phases):
        ax.annotate(f" {v:.3g} ({v / total:.0%})", (v, i), va="center", fontsize=8)
    ax.set_xlim(0, 1.3 * max(v for _, v in phases))
    ax.invert_yaxis()
    ax.set_xlabel("FLOPs")
    return fig


def memory_figure(memory: dict):
    """Planned bytes by term beside the measured peak (memory.json: {planned: {term: bytes}, measured: ...})."""
    planned = memory.get("planned") or {}
    measured = memory.get("measured") or {}
    terms = [t for t in TERMS if planned.get(t) or measured.get(t)]
    if not terms:
        return None
    fig = _figure(7.5, 3.2)
    ax = fig.subplots()
    x = range(len(terms))
    ax.bar([i - 0.2 for i in x], [planned.get(t, 0) / 2**30 for t in terms], 0.4, label="planned")
    if any(measured.get(t) for t in terms):
        ax.bar([i + 0.2 for i in x], [measured.get(t, 0) / 2**30 for t in terms], 0.4, label="measured")
    if memory.get("measured_peak"):
        ax.axhline(memory["measured_peak"] / 2**30, color="tab:red", ls="--", label="measured peak (total)")
    ax.set_xticks(list(x), terms)
    ax.set_ylabel("GiB")
    fig.legend(loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    return fig


def selection_cut(values: list[float], chosen: list[float]) -> float | None:
    """The score threshold the selection amounts to: the lowest selected score when it kept the top of the pool,
    the highest when it kept the bottom; None for a strategy that spreads over scores (stratified, balanced)."""
    if sum(v >= min(chosen) for v in values) == len(chosen):
        return min(chosen)
    if sum(v <= max(chosen) for v in values) == len(chosen):
        return max(chosen)
    return None


def selection_figure(scores: list[dict]):
    """Histogram of the pool's scores, the selected ones over it, and the cut (the selected scores' edge)."""
    values = [s["score"] for s in scores if s.get("score") is not None]
    chosen = [s["score"] for s in scores if s.get("selected") and s.get("score") is not None]
    if not values:
        return None
    fig = _figure(7.5, 3.2)
    ax = fig.subplots()
    bins = 40
    span = (min(values), max(values)) if max(values) > min(values) else (min(values) - 0.5, max(values) + 0.5)
    ax.hist(values, bins=bins, range=span, color="0.7", label=f"pool ({len(values)})")
    if chosen:
        ax.hist(chosen, bins=bins, range=span, color="C0", label=f"selected ({len(chosen)})")
        cut = selection_cut(values, chosen)
        if cut is not None:
            ax.axvline(cut, color="tab:red", ls="--", label=f"cut at {cut:.3g}")
    ax.set_xlabel("score")
    ax.set_ylabel("examples")
    fig.legend(loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    return fig
