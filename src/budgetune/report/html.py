"""report.html: one self-contained page (plots embedded as PNG) with held-out loss against cumulative FLOPs,
the ledger, the stop reason and, where present, the governor's decisions and generated samples."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from .. import atomic
from ..train.rundir import read_jsonl


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def loss_figure(metrics: list[dict]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evals = [m for m in metrics if m.get("kind") == "eval"]
    trains = [m for m in metrics if m.get("kind") == "train"]
    fig, ax = plt.subplots(figsize=(7, 4))
    if trains:
        ax.plot([m["flops"] for m in trains], [m["train_loss"] for m in trains], color="0.75", lw=1,
                label="training loss (per step)")
    ax.plot([m["flops"] for m in evals], [m["eval_loss"] for m in evals], "o-", color="C0", label="held-out loss")
    ax.set_xlabel("cumulative FLOPs (all phases)")
    ax.set_ylabel("loss (nats / response token)")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def write_report(run_dir: Path, *, generation=(None, None)) -> Path:
    run_dir = Path(run_dir)
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    decisions = read_jsonl(run_dir / "decisions.jsonl")
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    ledger = json.loads((run_dir / "ledger.json").read_text(encoding="utf-8"))
    parts = [(f"<h1>budgetune run</h1><p><code>{html.escape(str(run_dir))}</code> · method "
             f"<b>{html.escape(str(summary.get('method')))}</b> · model {html.escape(str(summary.get('model')))}</p>"),
             "<h2>Held-out loss against compute</h2>", _png(loss_figure(metrics)),
             (f"<p>held-out loss {summary['before_loss']:.4f} → {summary['after_loss']:.4f}; stopped: "
             f"{html.escape(str(summary['stop_reason']))}</p>")]
    figure = _decision_figure(run_dir)
    if figure is not None:
        parts += ["<h2>Governor</h2>", _png(figure)]
    parts += ["<h2>Ledger</h2>", _ledger_table(ledger)]
    if decisions:
        rows = "".join(f"<tr><td>{d['step']}</td><td>{d['flops']:.3g}</td><td>{html.escape(d['action'])}</td>"
                       f"<td>{html.escape(d['reason'])}</td></tr>" for d in decisions)
        parts += [("<h2>Decisions</h2><table><tr><th>step</th><th>FLOPs</th><th>action</th><th>reason</th></tr>"
                  f"{rows}</table>")]
    before, after = generation
    if after:
        parts.append(_generation_section(before, after))
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>budgetune report</title><style>"
            "body{font-family:system-ui,sans-serif;max-width:900px;margin:2em auto;padding:0 1em}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
            "img{max-width:100%}</style></head><body>" + "".join(parts) + "</body></html>")
    path = run_dir / "report.html"
    atomic.write_text(path, page)
    return path


def _ledger_table(ledger: dict) -> str:
    rows = "".join(f"<tr><td>{p}</td><td>{ledger['flops'][p]:.4g}</td><td>{ledger['tokens'][p]}</td></tr>"
                   for p in ledger["flops"])
    return (f"<table><tr><th>phase</th><th>FLOPs</th><th>tokens</th></tr>{rows}"
            f"<tr><th>total</th><th>{ledger['total_flops']:.4g}</th><th></th></tr></table>"
            f"<p>{ledger['steps']} optimizer steps, {ledger['seconds']:.0f} s of work</p>")


def _decision_figure(run_dir: Path):
    try:
        from ..governor.plots import decision_figure
    except ImportError:
        return None
    return decision_figure(run_dir)


def _generation_section(before, after) -> str:
    try:
        from ..infer.evaluate import samples_html

        samples = samples_html(before, after)
    except ImportError:
        samples = ""
    head = "<h2>Generated answers (held-out prompts)</h2>"
    if before:
        head += (f"<p>token F1 {before['f1']:.3f} → {after['f1']:.3f}; ROUGE-L {before['rougeL']:.3f} → "
                 f"{after['rougeL']:.3f} over {after['n']} prompts</p>")
    return head + samples
