"""The report's "Plan against outcome" table, drawn from summary.json's plan_vs_spent (written by
budgetune.joint.outcome): the report reads run files only."""

from __future__ import annotations

import html


def _g(v) -> str:
    return "-" if v is None else f"{v:.3g}"


def to_html(result: dict | None) -> str:
    """The report's table of the same comparison."""
    if not result:
        return ""
    e = html.escape
    rows = "".join(f"<tr><td>{p}</td><td>{_g(r['planned'])}</td><td>{_g(r['spent'])}</td></tr>"
                   for p, r in result["phases"].items() if r["planned"] is not None or r["spent"])
    rows += "".join(f"<tr><td>of which {p}: the generation evaluation</td><td>-</td><td>{v:.3g}</td></tr>"
                    for p, v in result["outside"].items())
    m = result["memory"]
    mem = ""
    if m.get("planned"):
        measured = f"{m['measured'] / 2**30:.2f} GiB ({e(m['measured_what'])})" if m.get("measured") else "-"
        mem = f"<p>peak memory: planned {m['planned'] / 2**30:.2f} GiB, measured {measured}</p>"
    return (f"<h2>Plan against outcome</h2><table><tr><th>phase</th><th>planned FLOPs</th><th>spent FLOPs</th></tr>"
            f"{rows}</table>{_seconds(result)}{mem}")


def _seconds(result: dict) -> str:
    """Planned against spent seconds per phase, for a run with a time budget (the probe is phase "plan")."""
    if not result.get("seconds"):
        return ""
    rows = "".join(f"<tr><td>{p}</td><td>{_g(r['planned'])}</td><td>{_g(r['spent'])}</td></tr>"
                   for p, r in result["seconds"].items() if r["planned"] or r["spent"])
    t = result["seconds_total"]
    rows += f"<tr><td>all</td><td>{_g(t['planned'])}</td><td>{_g(t['spent'])}</td></tr>"
    if result.get("outside_seconds"):
        rows += (f"<tr><td>of which the generation evaluation</td><td>-</td>"
                 f"<td>{_g(result['outside_seconds'])}</td></tr>")
    budget = f" of a {t['budget']:g} s budget" if t.get("budget") else ""
    return (f"<table><tr><th>phase</th><th>planned seconds{budget}</th><th>spent seconds</th></tr>{rows}</table>")
