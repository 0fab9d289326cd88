"""Part 4 of the governor benchmark (bench/governor.py --governed): suite runs trained again for real with a governor
in the loop and decay on stop (train.cooldown_fraction), compared with their recorded fixed runs and with the policies
replayed on those runs. The cooldown changes the trajectory after the stop, so these cannot be replayed.
"""

from __future__ import annotations

import json
import os
import statistics
import time

from governor import OUT, POLICIES, RUNS

# Real governed reruns with decay on stop (train.cooldown_fraction, default 0.2): the cooldown changes the
# trajectory after the stop, so these cannot be replayed. Runs in priority order: suite C (4x budget, where stopping
# matters most), then the suite A/B runs on which the replayed marginal governor stopped before the budget's end;
# on the others it never stops, so a governed run is the fixed run itself.
GOVERNED = {"marginal + cooldown": ("marginal", {}, "marginal"),  # governor, options, its replayed policy
            "patience-3 + cooldown": ("patience", {"patience": 3}, "patience-3")}
GOVERNED_RUNS = ["long-trivia-lora-2e-4", "long-trivia-lora-1e-3", "long-trivia-full-3e-5", "long-emotion-lora-2e-4",
                 "long-emotion-lora-1e-3", "long-coding-ai-lora-5e-4", "emotion-lora-1e-3", "trivia-lora-1e-3",
                 "emotion-lora-2e-4", "small-emotion-lora-1e-3", "small-trivia-lora-1e-3", "small-emotion-lora-2e-4"]
ALL_GOVERNED = GOVERNED_RUNS + [r[0] for r in RUNS if r[0] not in GOVERNED_RUNS]  # --runs may add the rest


def _slug(label: str) -> str:
    return label.replace(" + ", "-").replace(" ", "-")


def run_governed(args, setting) -> None:
    """Each chosen suite run again, with the settings and budget `setting` gives it, a governor and decay on stop."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from budgetune.config import RunConfig
    from budgetune.data import load_data
    from budgetune.governor import make
    from budgetune.models import load_model, load_tokenizer
    from budgetune.train.loop import make_budget, train

    tokenizer = load_tokenizer("smollm2-135m")
    data = load_data(RunConfig().data, tokenizer)
    for label in args.governed:
        gname, options, _ = GOVERNED[label]
        for name in args.runs or GOVERNED_RUNS:
            run_dir = OUT / "governor_governed" / _slug(label) / name
            if (run_dir / "summary.json").exists():
                print(f"{label} {name}: run already", flush=True)
                continue
            cfg, split = setting(name, args, data, run_dir)
            t0 = time.perf_counter()
            result = train(cfg, model=load_model("smollm2-135m"), tokenizer=tokenizer, data=split,
                           governor=make(gname, options, make_budget(cfg)), progress=False)
            print(f"{label} {name}: loss {result.before_loss:.4f} -> {result.after_loss:.4f}, "
                  f"{result.ledger.total_flops:.3g} FLOPs, {result.ledger.steps} steps, "
                  f"{time.perf_counter() - t0:.0f} s; {result.stop_reason[:80]}", flush=True)


def load_governed(curves: dict) -> list[dict]:
    """One row per finished governed run, compared with its recorded fixed run."""
    rows = []
    for label in GOVERNED:
        for name in ALL_GOVERNED:
            run_dir = OUT / "governor_governed" / _slug(label) / name
            if not (run_dir / "summary.json").exists() or name not in curves:
                continue
            summary = json.loads((run_dir / "summary.json").read_text())
            metrics = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
            decisions = [json.loads(x) for x in (run_dir / "decisions.jsonl").read_text().splitlines() if x.strip()]
            evals = [e for e in metrics if e.get("kind") == "eval"]
            fixed = curves[name]["evals"]
            stop = next((d for d in decisions if d["action"] == "stop"), None)
            cool = next((d for d in decisions if d["action"] == "cooldown" and not d["done"]), None)
            stop_eval = next(i for i, e in enumerate(evals) if e["step"] == stop["step"]) if stop else None
            # Up to the stop the governed run is the fixed run (same seed, schedule and data): check it is.
            upto = stop_eval if stop_eval is not None else len(evals) - 1
            same = max((abs(a["eval_loss"] - b["eval_loss"]) for a, b in zip(evals[:upto + 1], fixed[:upto + 1])),
                       default=0.0)
            losses = [e["eval_loss"] for e in fixed]
            o_loss = min(losses)
            f_loss, f_flops = losses[-1], fixed[-1]["flops"]
            loss, flops = summary["after_loss"], summary["ledger"]["total_flops"]
            if stop is None:
                # Never stopped: it is the fixed run. (A few runs were recorded before the loop costed each batch
                # before running it and overran their budget by a step; a rerun ends a step earlier, which is no
                # saving of the governor's.)
                loss, flops = f_loss, f_flops
            rows.append({"run": name, "policy": label, "flops": flops, "loss": loss, "flops_vs_fixed": flops / f_flops,
                         "loss_vs_fixed": (loss - f_loss) / f_loss, "regret": (loss - o_loss) / o_loss,
                         "oracle_loss": o_loss, "fixed_loss": f_loss, "fixed_flops": f_flops,
                         "stop_eval": stop_eval, "stop_share": stop["flops"] / f_flops if stop else None,
                         "cooldown_flops": cool["cooldown_flops"] if cool else 0.0,
                         "cooldown_steps": summary["steps"] - stop["step"] if stop else 0,
                         "pre_stop_max_diff": same, "stop_reason": summary["stop_reason"]})
    return rows


def _within_one_percent(curve: dict) -> tuple[float, float]:
    """(FLOPs, loss) of the first evaluation within 1% of the fixed run's final loss: the cheapest stop that any
    stopping rule without a cooldown could make while meeting the issue's loss target on this run."""
    final = curve["evals"][-1]["eval_loss"]
    e = next(e for e in curve["evals"] if e["eval_loss"] <= 1.01 * final)
    return e["flops"], e["eval_loss"]


def governed_summary(grows: list[dict], rows: list[dict], curves: dict) -> list[dict]:
    """Each real policy next to the replayed ones on the same runs: over the runs governed for real, and over the
    whole suite when every run is covered (a run on which the replayed governor never stops needs no rerun: with no
    stop, the governed run is the fixed run)."""
    out, shown = [], set()
    replayed = {(r["policy"], r["run"]): r for r in rows}
    suite = [r["run"] for r in rows if r["policy"] == "fixed"]
    fixed = {n: replayed[("fixed", n)] for n in suite}
    # A run whose replayed policy stops, if at all, only at the last recorded evaluation spends the fixed budget:
    # governed for real it is the fixed run itself. Real runs, where there are any, take precedence.
    covered = {label: {**{n: (fixed[n]["flops"], fixed[n]["loss"], fixed[n]["regret"]) for n in suite
                          if replayed[(GOVERNED[label][2], n)]["stop_eval"] == fixed[n]["stop_eval"]},
                       **{r["run"]: (r["flops"], r["loss"], r["regret"]) for r in grows if r["policy"] == label}}
               for label in GOVERNED}
    for label in GOVERNED:
        real = {r["run"] for r in grows if r["policy"] == label}
        sets = [(f"{label}: whole suite", suite),
                (f"{label}: suite C (4x budget)", [n for n in suite if n.startswith("long-")])] \
            if real and set(suite) <= set(covered[label]) else []
        sets.append((f"{label}: runs governed for real", [n for n in ALL_GOVERNED if n in real]))
        for set_name, names in sets:
            if not names or frozenset(names) in shown:  # the same runs, already compared under another name
                continue
            shown.add(frozenset(names))
            entries = [(f"{o} (real)", [covered[o][n] for n in names]) for o in [label] + [
                o for o in GOVERNED if o != label and set(names) <= set(covered[o])]]
            entries += [(f"{p} (replay)", [(replayed[(p, n)]["flops"], replayed[(p, n)]["loss"],
                                            replayed[(p, n)]["regret"]) for n in names]) for p, _, _ in POLICIES[1:]]
            entries.append(("oracle (hindsight)", [(fixed[n]["oracle_flops"], fixed[n]["oracle_loss"], 0.0)
                                                  for n in names]))
            entries.append(("cheapest stop within 1% (hindsight)", [
                (*_within_one_percent(curves[n]), (_within_one_percent(curves[n])[1] - fixed[n]["oracle_loss"])
                 / fixed[n]["oracle_loss"]) for n in names]))
            for policy, vals in entries:
                dloss = [(v[1] - fixed[n]["loss"]) / fixed[n]["loss"] for n, v in zip(names, vals)]
                out.append({"set": set_name, "runs": len(names), "policy": policy,
                            "flops_vs_fixed": sum(v[0] for v in vals) / sum(fixed[n]["flops"] for n in names),
                            "mean_loss_vs_fixed": statistics.mean(dloss), "worst_loss_vs_fixed": max(dloss),
                            "mean_regret": statistics.mean(v[2] for v in vals)})
    return out


def render(grows: list[dict], gsummary: list[dict]) -> list[str]:
    """The markdown section of the governed runs (empty when none has run)."""
    out: list[str] = []
    if not grows:
        return out
    out += ["", "## Decay on stop: governed runs for real", "",
            ("The same settings and budget as the recorded runs, trained again with the governor inside the loop "
            "and `train.cooldown_fraction: 0.2` (default): on a stop the learning rate decays linearly from its "
            "current value to 0 over 20% of the training FLOPs spent so far, then the final evaluation. Fixed, "
            "patience and the replayed marginal governor (no cooldown) are the rows above, on the same runs. "
            "\"same curve\" is the largest difference between the governed and the recorded fixed run's "
            "held-out losses up to the stop (0: the rerun reproduced the recorded run exactly). A run that "
            "never stops is counted as its fixed run: three runs were recorded before the loop costed each batch "
            "before running it and overran their budget by one step (trivia-full-3e-5, emotion-lora-1e-3, "
            "small-coding-ai-lora-5e-4), so their reruns end a step earlier, which is no saving of the "
            "governor's. \"cheapest stop within 1%\" stops each fixed run at its first evaluation within 1% "
            "of its final loss: the most any stopping rule without a cooldown could save at the target loss."), "",
            ("| run | policy | FLOPs vs fixed | stop decided at (eval, % of fixed FLOPs) | cooldown steps | final loss "
            "| loss vs fixed | regret vs oracle | same curve |"),
            "|---|---|---|---|---|---|---|---|---|"]
    for r in grows:
        stop = (f"eval {r['stop_eval']}, {100 * r['stop_share']:.0f}%" if r["stop_eval"] is not None
                else "no stop")
        out.append(f"| {r['run']} | {r['policy']} | {100 * r['flops_vs_fixed']:.0f}% | {stop} | "
                   f"{r['cooldown_steps']} | {r['loss']:.4f} | {100 * r['loss_vs_fixed']:+.2f}% | "
                   f"{100 * r['regret']:+.2f}% | {r['pre_stop_max_diff']:.1e} |")
    out += ["", ("| runs | n | policy | FLOPs vs fixed (sum) | loss vs fixed (mean) | "
                "loss vs fixed (worst run) | regret vs oracle (mean) |"), "|---|---|---|---|---|---|---|"]
    for g in gsummary:
        out.append(f"| {g['set']} | {g['runs']} | {g['policy']} | {100 * g['flops_vs_fixed']:.0f}% | "
                   f"{100 * g['mean_loss_vs_fixed']:+.2f}% | {100 * g['worst_loss_vs_fixed']:+.2f}% | "
                   f"{100 * g['mean_regret']:+.2f}% |")
    return out
