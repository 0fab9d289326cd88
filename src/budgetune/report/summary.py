"""What a run's numbers mean: one line per metric, a warning where a metric moved the wrong way, the generation
evaluation read back from the run directory, and the JSON summary of `run --json` / `train --json`."""

from __future__ import annotations

import json
from pathlib import Path

GENERATION_FILE = "generation_eval.json"  # the same file `budgetune eval RUN_DIR` writes

# One line each, shown on the page and under the printed summary.
EXPLAIN = {
    "held-out loss": ("mean cross-entropy (nats) of the reference answers' tokens on held-out prompts, the model "
                      "reading the reference: lower is better, and it is what training optimises"),
    "token accuracy": ("share of those reference-answer tokens the model predicts exactly as its next token "
                       "(teacher-forced, greedy): higher is better; it moves with the loss"),
    "F1": ("word overlap between the model's own greedy answer (at most 32 new tokens) and the reference, SQuAD-"
           "style: higher is better; noisy with few prompts and harsh on answers that are right but worded "
           "differently"),
    "ROUGE-L": "longest common word subsequence of the greedy answer and the reference (F-measure): higher is better",
    "FLOPs": "floating-point operations spent, by phase (selection, training, evaluation, inference): the budget",
}

# Whether a higher value is better, for the warnings.
HIGHER_IS_BETTER = {"held-out loss": False, "token accuracy": True, "F1": True, "ROUGE-L": True}


def verdict(metric: str, before, after) -> str | None:
    """A one-line warning when `metric` moved the wrong way, with what it usually means; None otherwise."""
    if before is None or after is None or after == before:
        return None
    worse = (after < before) if HIGHER_IS_BETTER[metric] else (after > before)
    if not worse:
        return None
    if metric == "held-out loss":
        return ("held-out loss rose: the fine-tune fits held-out answers worse than the base model; lower the "
                "learning rate, or give more (or cleaner) data")
    if metric == "token accuracy":
        return "token accuracy fell: the fine-tune predicts fewer reference tokens than the base model"
    return (f"{metric} fell while training: greedy answers scored against one reference each are a noisy, harsh "
            f"measure; read it beside held-out loss and token accuracy, and the examples below")


def read_generation(run_dir: Path) -> tuple[dict | None, dict | None]:
    path = Path(run_dir) / GENERATION_FILE
    if not path.exists():
        return None, None
    data = json.loads(path.read_text(encoding="utf-8"))
    return data.get("before"), data.get("after")


def _scores(g: dict | None) -> dict | None:
    if not g:
        return None
    return {k: g.get(k) for k in ("f1", "rougeL", "token_accuracy", "n", "flops")}


def json_summary(result, report, before: dict | None, after: dict | None, wall: float) -> dict:
    """`run --json`: the run's summary.json plus the generation scores, the report's path and the wall time."""
    summary = json.loads((Path(result.run_dir) / "summary.json").read_text(encoding="utf-8"))
    return {**summary, "run_dir": str(result.run_dir), "ledger": result.ledger.to_dict(),
            "generation": {"before": _scores(before), "after": _scores(after)} if after else None,
            "report": str(report) if report else None, "wall_seconds": wall}


def explain_lines(result, before: dict | None, after: dict | None) -> list[str]:
    """Under the printed summary: what each metric shown means, and a warning for one that moved the wrong way."""
    shown = ["held-out loss"] + (["token accuracy", "F1", "ROUGE-L"] if after else [])
    lines = [f"  {m:<15}{EXPLAIN[m]}" for m in shown]
    pairs = {"held-out loss": (result.before_loss, result.after_loss)}
    if before and after:
        pairs.update({"token accuracy": (before.get("token_accuracy"), after.get("token_accuracy")),
                      "F1": (before.get("f1"), after.get("f1")), "ROUGE-L": (before.get("rougeL"), after.get("rougeL"))})
    warnings = [w for m, (b, a) in pairs.items() if (w := verdict(m, b, a))]
    return ["", "what the numbers mean:"] + lines + [f"  note: {w}" for w in warnings]
