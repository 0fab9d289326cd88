"""report.html read at a glance, from files only: sections present once, warnings next to metrics that moved the
wrong way, legible axes and legends; checked on hand-written run directories."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest

from budgetune.report import figures
from budgetune.report.html import render


class Page(HTMLParser):
    """h2 headings, and the text of each results-table row."""

    def __init__(self, text: str):
        super().__init__()
        self.h2, self.rows, self.images = [], [], 0
        self._tag, self._row = None, None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self._tag = tag
        if tag == "tr":
            self._row = []
        if tag == "img":
            self.images += 1

    def handle_endtag(self, tag):
        if tag == "tr" and self._row is not None:
            self.rows.append(" ".join(self._row))
            self._row = None
        self._tag = None

    def handle_data(self, data):
        if self._tag == "h2":
            self.h2.append(data)
        if self._row is not None and data.strip():
            self._row.append(data.strip())


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def make_run(tmp_path, *, governor: bool, generation: bool = True, selection: bool = False, memory: bool = False):
    run = tmp_path / ("gov" if governor else "fixed")
    run.mkdir()
    evals = [(0, 0.0, 2.50), (10, 1e12, 2.47), (20, 2e12, 2.46)]
    metrics = [{"kind": "eval", "step": s, "flops": f, "eval_loss": l, "tokens": 100 * s, "train_flops": f}
               for s, f, l in evals]
    metrics += [{"kind": "train", "step": s, "flops": s * 1e11, "train_loss": 3.5 - 0.02 * s, "lr": 1e-4}
                for s in range(1, 21)]
    _jsonl(run / "metrics.jsonl", metrics)
    if governor:
        decisions = [{"step": 10, "flops": 1e12, "action": "continue", "reason": "gain 2% above price 1%",
                      "gain_next": 0.02, "price": 0.01, "optimistic_gain": 0.03},
                     {"step": 20, "flops": 2e12, "action": "stop", "reason": "gain 0.1% below price 1.2%",
                      "gain_next": 0.001, "price": 0.012, "optimistic_gain": 0.004}]
    else:
        decisions = [{"step": 10, "flops": 1e12, "action": "continue", "reason": "fixed budget"}]
    _jsonl(run / "decisions.jsonl", decisions)
    ledger = {"flops": {"selection": 0.0, "train": 1.8e12, "eval": 2e11, "inference": 0.0},
              "tokens": {"selection": 0, "train": 2000, "eval": 600, "inference": 0}, "total_flops": 2e12,
              "steps": 20, "seconds": 12.0}
    (run / "ledger.json").write_text(json.dumps(ledger))
    (run / "summary.json").write_text(json.dumps({"before_loss": 2.50, "after_loss": 2.46, "method": "lora",
                                                  "model": "tiny", "stop_reason": "flop budget spent"}))
    (run / "config.json").write_text(json.dumps({"governor": {"name": "marginal"} if governor else {},
                                                 "selection": {"scorer": "length", "budget": "50%"} if selection
                                                 else {}}))
    if generation:
        def sample(out, f1):
            return {"prompt": "Say hi", "reference": "hi there", "output": out, "f1": f1, "rougeL": f1}
        (run / "generation_eval.json").write_text(json.dumps({
            "before": {"f1": 0.30, "rougeL": 0.30, "token_accuracy": 0.40, "n": 1, "samples": [sample("hi there", 1.0)]},
            "after": {"f1": 0.20, "rougeL": 0.25, "token_accuracy": 0.45, "n": 1, "max_new_tokens": 32,
                      "samples": [sample("hello", 0.0)]}}))
    if selection:
        _jsonl(run / "selection.scores.jsonl", [{"uid": str(i), "score": float(i), "selected": i >= 5}
                                                for i in range(10)])
    if memory:
        (run / "memory.json").write_text(json.dumps({"planned": {"weights": 2**30, "activations": 2**29},
                                                     "measured_peak": 1.4 * 2**30}))
    return run


def test_page_sections_and_wrong_way_notes(tmp_path):
    page = Page(render(make_run(tmp_path, governor=True, selection=True, memory=True)))
    assert page.h2 == ["Results", "Held-out loss against compute", "Governor", "Compute by phase",
                       "Memory: planned and measured", "Data selection", "Generated answers (held-out prompts)"]
    row = {r.split(" ")[0]: r for r in page.rows}
    # F1 (0.30 → 0.20) and ROUGE-L fell: said next to them; loss fell and accuracy rose: no warning there.
    assert "⚠" in row["F1"] and "⚠" in row["ROUGE-L"]
    held_out = next(r for r in page.rows if r.startswith("held-out loss"))
    accuracy = next(r for r in page.rows if r.startswith("token accuracy"))
    assert "⚠" not in held_out and "⚠" not in accuracy
    assert "-1.6%" in held_out  # (2.46 − 2.50) / 2.50, by hand
    assert "cross-entropy" in held_out  # each metric explained in its row
    assert page.images == 5  # loss, gain, phases, memory, selection


def test_fixed_budget_run_has_no_governor_section(tmp_path):
    page = Page(render(make_run(tmp_path, governor=False, generation=False)))
    assert "Governor" not in page.h2 and "Decisions" not in page.h2
    assert page.h2.count("Generated answers (held-out prompts)") == 0


def test_loss_rising_is_flagged(tmp_path):
    run = make_run(tmp_path, governor=False, generation=False)
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "after_loss": 2.60}))
    held_out = next(r for r in Page(render(run)).rows if r.startswith("held-out loss"))
    assert "⚠ held-out loss rose" in held_out


def test_loss_axis_fits_the_held_out_points():
    metrics = [{"kind": "eval", "flops": 0.0, "eval_loss": 2.50}, {"kind": "eval", "flops": 1e11, "eval_loss": 2.45},
               {"kind": "train", "flops": 5e10, "train_loss": 3.75}, {"kind": "train", "flops": 9e10, "train_loss": 1.75}]
    low, high = figures.loss_figure(metrics, []).axes[0].get_ylim()
    assert 2.40 < low < 2.45 and 2.50 < high < 2.56  # not stretched to the training loss's 1.75–3.75


def test_gain_panel_ticks_and_legends_clear_of_the_plot():
    decisions = [{"flops": 1e12 * i, "gain_next": g, "price": p, "optimistic_gain": g * 1.5, "action": a}
                 for i, (g, p, a) in enumerate([(0.05, 0.001, "continue"), (0.01, 0.003, "continue"),
                                                (0.0005, 0.006, "stop")], 1)]
    fig = figures.gain_figure(decisions)
    fig.draw_without_rendering()
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert len(labels) >= 3
    loss = figures.loss_figure([{"kind": "eval", "flops": 0.0, "eval_loss": 2.5},
                                {"kind": "eval", "flops": 3e12, "eval_loss": 2.4}], decisions)
    for f in (fig, loss):
        f.draw_without_rendering()
        legend, axes = f.legends[0].get_window_extent(), f.axes[0].get_window_extent()
        assert legend.y1 <= axes.y0 + 1  # below the axes: covers no curve, label or decision line


@pytest.mark.parametrize("strategy,chosen,cut", [("top", range(5, 10), 5.0), ("bottom", range(3), 2.0),
                                                  ("spread", (0, 4, 9), None)])
def test_selection_cut(strategy, chosen, cut):
    values = [float(i) for i in range(10)]
    assert figures.selection_cut(values, [values[i] for i in chosen]) == cut


def test_memory_json_has_the_planned_terms(tmp_path, tiny_config_path):
    from types import SimpleNamespace

    from budgetune.config import RunConfig
    from budgetune.train.run_files import save_memory

    cfg = RunConfig()
    cfg.model.model, cfg.train.method, cfg.budget.max_memory = tiny_config_path, "full", "8GiB"
    path = save_memory(SimpleNamespace(run_dir=tmp_path), cfg)
    planned = json.loads(path.read_text())["planned"]
    # fp32 weights of the tiny Llama, counted by hand (see test_report_run.py): 4 B per parameter.
    per_layer = 2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 128 + 2 * 64
    assert planned["weights"] == 4 * (49152 * 64 + 2 * per_layer + 64)
    assert figures.memory_figure(json.loads(path.read_text())) is not None
