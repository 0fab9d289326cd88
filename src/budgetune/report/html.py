"""report.html: one self-contained page (plots embedded as PNG), built only from files in the run directory, so
`budgetune report RUN_DIR` rebuilds the page `run` wrote, byte for byte.

Read: summary.json, ledger.json, metrics.jsonl, decisions.jsonl, config.json, and where present
generation_eval.json (before/after answers), selection.scores.jsonl (the pool's scores) and memory.json (planned
and measured bytes by term)."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from .. import atomic
from ..atomic import read_jsonl
from . import figures
from .summary import EXPLAIN, read_generation, verdict

SELECTION_SCORES = "selection.scores.jsonl"
MEMORY_FILE = "memory.json"
STYLE = ("body{font-family:system-ui,sans-serif;max-width:920px;margin:2em auto;padding:0 1em;color:#222}"
         "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;"
         "vertical-align:top}img{max-width:100%}.wrong-way{color:#a40000;font-weight:600}.explain{color:#555;"
         "font-size:.9em}")


def _png(fig) -> str:
    buf = io.BytesIO()
    # No metadata: the same figure always gives the same bytes.
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def write_report(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    page = render(run_dir)
    path = run_dir / "report.html"
    atomic.write_text(path, page)
    return path


def render(run_dir: Path) -> str:
    e = html.escape
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    decisions = read_jsonl(run_dir / "decisions.jsonl")
    summary = _json(run_dir / "summary.json")
    ledger = _json(run_dir / "ledger.json")
    config = _json(run_dir / "config.json")
    before, after = read_generation(run_dir)
    parts = [(f"<h1>budgetune run</h1><p><code>{e(str(run_dir))}</code> · method <b>{e(str(summary.get('method')))}"
              f"</b> · model {e(str(summary.get('model')))} · stopped: {e(str(summary.get('stop_reason')))}</p>"),
             "<h2>Results</h2>", _results(summary, before, after),
             "<h2>Held-out loss against compute</h2>", _png(figures.loss_figure(metrics, decisions))]
    if config.get("governor") or any(d.get("gain_next") is not None for d in decisions):
        parts.append("<h2>Governor</h2>")
        gain = figures.gain_figure(decisions)
        if gain is not None:
            parts.append(_png(gain))
        parts.append(_decisions(decisions))
    elif any(d.get("action") != "continue" for d in decisions):
        parts += ["<h2>Decisions</h2>", _decisions(decisions)]
    parts += ["<h2>Compute by phase</h2>"]
    phases = figures.phase_figure(ledger)
    if phases is not None:
        parts.append(_png(phases))
    parts.append(_ledger_table(ledger))
    if summary.get("plan_vs_spent"):
        from .plan_outcome import to_html

        parts.append(to_html(summary["plan_vs_spent"]))
    memory = _json(run_dir / MEMORY_FILE)
    if memory and (fig := figures.memory_figure(memory)) is not None:
        parts += ["<h2>Memory: planned and measured</h2>", _png(fig), _memory_table(memory)]
    scores = read_jsonl(run_dir / SELECTION_SCORES)
    if scores and (fig := figures.selection_figure(scores)) is not None:
        chosen = sum(1 for s in scores if s.get("selected"))
        parts += ["<h2>Data selection</h2>", _png(fig),
                  (f"<p>{chosen} of {len(scores)} pool examples selected "
                   f"({e(json.dumps(config.get('selection') or {}, sort_keys=True))})</p>")]
    if after:
        parts.append(_generation(before, after))
    return ("<!doctype html><html><head><meta charset='utf-8'><title>budgetune report</title>"
            f"<style>{STYLE}</style></head><body>" + "".join(parts) + "</body></html>\n")


def _fmt(v, spec: str = ".4f") -> str:
    return "–" if v is None else format(v, spec)


def _results(summary: dict, before: dict | None, after: dict | None) -> str:
    """Each metric before and after, its change, one line on what it means, and a warning when it moved the wrong
    way."""
    rows = [("held-out loss", summary.get("before_loss"), summary.get("after_loss"), ".4f")]
    if after:
        b = before or {}
        rows += [("token accuracy", b.get("token_accuracy"), after.get("token_accuracy"), ".3f"),
                 ("F1", b.get("f1"), after.get("f1"), ".3f"), ("ROUGE-L", b.get("rougeL"), after.get("rougeL"), ".3f")]
    out = [("<table class='results'><tr><th>metric</th><th>before</th><th>after</th><th>change</th>"
            "<th>what it means</th></tr>")]
    for name, b, a, spec in rows:
        if b is None and a is None:
            continue
        change = f"{(a - b) / abs(b):+.1%}" if a is not None and b else "–"
        warn = verdict(name, b, a)
        note = f"<div class='wrong-way'>⚠ {html.escape(warn)}</div>" if warn else ""
        out.append(f"<tr><td>{name}</td><td>{_fmt(b, spec)}</td><td>{_fmt(a, spec)}</td><td>{change}</td>"
                   f"<td><span class='explain'>{html.escape(EXPLAIN[name])}</span>{note}</td></tr>")
    out.append("</table>")
    if after:
        out.append(f"<p class='explain'>generated answers: {after.get('n')} held-out prompts, at most "
                   f"{after.get('max_new_tokens')} new tokens each</p>")
    return "".join(out)


def _decisions(decisions: list[dict]) -> str:
    if not decisions:
        return "<p>No decisions recorded.</p>"
    rows = "".join(f"<tr><td>{d.get('step')}</td><td>{d.get('flops', 0):.3g}</td>"
                   f"<td>{html.escape(str(d.get('action')))}</td><td>{html.escape(str(d.get('reason', '')))}</td></tr>"
                   for d in decisions)
    return f"<table class='decisions'><tr><th>step</th><th>FLOPs</th><th>action</th><th>reason</th></tr>{rows}</table>"


def _ledger_table(ledger: dict) -> str:
    if not ledger:
        return "<p>No ledger.</p>"
    rows = "".join(f"<tr><td>{p}</td><td>{ledger['flops'][p]:.4g}</td><td>{ledger['tokens'].get(p, 0)}</td></tr>"
                   for p in ledger["flops"])
    return (f"<table><tr><th>phase</th><th>FLOPs</th><th>tokens</th></tr>{rows}"
            f"<tr><th>total</th><th>{ledger['total_flops']:.4g}</th><th></th></tr></table>"
            f"<p class='explain'>{html.escape(EXPLAIN['FLOPs'])}; {ledger['steps']} optimizer steps, "
            f"{ledger['seconds']:.0f} s of work</p>")


def _memory_table(memory: dict) -> str:
    planned, measured = memory.get("planned") or {}, memory.get("measured") or {}
    rows = "".join(f"<tr><td>{t}</td><td>{_fmt(planned.get(t) and planned[t] / 2**30, '.2f')}</td>"
                   f"<td>{_fmt(measured.get(t) and measured[t] / 2**30, '.2f')}</td></tr>"
                   for t in figures.TERMS if planned.get(t) or measured.get(t))
    peak = memory.get("measured_peak")
    return (f"<table class='memory'><tr><th>term</th><th>planned GiB</th><th>measured GiB</th></tr>{rows}</table>"
            + (f"<p>measured peak: {peak / 2**30:.2f} GiB</p>" if peak else ""))


def _generation(before: dict | None, after: dict, k: int = 5) -> str:
    """The one 'Generated answers' section: the examples where the fine-tune changed F1 most, either way."""
    e = html.escape
    by_key = {(s["prompt"], s["reference"]): s for s in after.get("samples", [])}
    pairs = [(b, by_key[(b["prompt"], b["reference"])]) for b in (before or {}).get("samples", [])
             if (b["prompt"], b["reference"]) in by_key]
    pairs.sort(key=lambda p: (-abs(p[1]["f1"] - p[0]["f1"]), p[0]["prompt"]))
    if pairs:
        rows = "".join(f"<tr><td>{e(b['prompt'])}</td><td>{e(b['reference'])}</td><td>{e(b['output'])}</td>"
                       f"<td>{e(a['output'])}</td><td>{b['f1']:.2f} → {a['f1']:.2f}</td></tr>" for b, a in pairs[:k])
        table = ("<table class='gen-samples'><tr><th>prompt</th><th>reference</th><th>before</th><th>after</th>"
                 f"<th>F1</th></tr>{rows}</table>")
    else:
        rows = "".join(f"<tr><td>{e(a['prompt'])}</td><td>{e(a['reference'])}</td><td>{e(a['output'])}</td></tr>"
                       for a in after.get("samples", [])[:k])
        table = (f"<table class='gen-samples'><tr><th>prompt</th><th>reference</th><th>after</th></tr>{rows}</table>"
                 if rows else "<p>No generated examples.</p>")
    return ("<section class='generation-eval'><h2>Generated answers (held-out prompts)</h2>"
            "<p class='explain'>the examples where fine-tuning changed the answer's F1 the most, either way</p>"
            f"{table}</section>")
