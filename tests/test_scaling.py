"""Chinchilla fit, compute-optimal allocation, repeated-data value, and `budgetune scaling fit`."""

import json
import math

import numpy as np
import pytest

from budgetune import scaling
from budgetune.errors import UserError

TRUE = {"E": 1.8, "A": 400.0, "B": 1500.0, "alpha": 0.34, "beta": 0.30}


def points(noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for N in (1e7, 3e7, 1e8, 3e8, 1e9):
        for D in (1e8, 1e9, 1e10, 1e11):
            L = TRUE["E"] + TRUE["A"] / N ** TRUE["alpha"] + TRUE["B"] / D ** TRUE["beta"]
            out.append((N, D, L * math.exp(rng.normal(0, noise))))
    return out


def test_fit_recovers_the_law():
    N, D, L = zip(*points())
    fit = scaling.fit_chinchilla(N, D, L)
    assert fit.alpha == pytest.approx(TRUE["alpha"], rel=0.05)
    assert fit.beta == pytest.approx(TRUE["beta"], rel=0.05)
    assert fit.E == pytest.approx(TRUE["E"], rel=0.02)
    assert float(fit.predict(5e8, 5e10)) == pytest.approx(
        TRUE["E"] + TRUE["A"] / 5e8 ** 0.34 + TRUE["B"] / 5e10 ** 0.30, rel=1e-3)


def test_compute_optimal_matches_a_brute_force_search():
    C = 1e21
    n_opt, d_opt = scaling.compute_optimal(scaling.HOFFMANN_2022, C)
    assert 6 * n_opt * d_opt == pytest.approx(C, rel=1e-9)
    p = scaling.HOFFMANN_2022
    ns = np.logspace(7, 12, 20001)
    loss = p["E"] + p["A"] / ns ** p["alpha"] + p["B"] / (C / (6 * ns)) ** p["beta"]
    assert n_opt == pytest.approx(ns[np.argmin(loss)], rel=2e-3)


def test_repeated_data_loses_value():
    U = 1e9
    assert scaling.effective_data(U, 0.5 * U) == 0.5 * U
    four = scaling.effective_data(U, 4 * U) / (4 * U)
    forty = scaling.effective_data(U, 40 * U) / (40 * U)
    assert 0.9 < four < 1.0  # ~4 epochs are worth nearly fresh data
    assert forty < 0.45  # long repetition is worth far less
    assert scaling.effective_data(U, 1e6 * U) < U * (1 + scaling.R_D_STAR) + 1  # bounded by U·(1 + R*)


def test_fixed_model_size_fits_the_data_term_only():
    D = [1e5, 3e5, 1e6, 3e6, 1e7]
    L = [2.0 + 50.0 / d ** 0.4 for d in D]
    fit = scaling.fit_chinchilla([1.3e8] * 5, D, L)
    assert fit.fixed_n == 1.3e8 and fit.beta == pytest.approx(0.4, rel=0.05)
    with pytest.raises(UserError, match="same model size"):
        scaling.compute_optimal(fit, 1e18)


def test_cli_fits_a_csv_and_run_dirs(tmp_path, capsys):
    from budgetune.cli import main

    table = tmp_path / "points.csv"
    table.write_text("N,D,loss\n" + "".join(f"{n},{d},{l}\n" for n, d, l in points(noise=0.002)))
    assert main(["scaling", "fit", str(table), "--flops", "1e21", "--unique-tokens", "1e10", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_opt"] > 0 and 6 * out["n_opt"] * out["d_opt"] == pytest.approx(1e21, rel=1e-6)
    assert out["epochs"] == pytest.approx(out["d_opt"] / 1e10)

    run = tmp_path / "run"
    run.mkdir()
    rows = [{"kind": "eval", "tokens": 0, "train_flops": 0.0, "eval_loss": 5.0, "step": 0}]
    rows += [{"kind": "eval", "tokens": t, "train_flops": 4e8 * t, "eval_loss": 2.0 + 30.0 / t ** 0.5, "step": i}
             for i, t in enumerate([1000, 2000, 4000, 8000, 16000], 1)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["scaling", "fit", str(run)]) == 0
    text = capsys.readouterr().out
    assert "only the data term" in text and "compute-equivalent" in text


def test_cli_bad_input_is_one_line(tmp_path, capsys):
    from budgetune.cli import main

    bad = tmp_path / "bad.csv"
    bad.write_text("N,D\n1,2\n")
    assert main(["scaling", "fit", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert "needs numeric columns N, D and loss" in err and "\n" not in err
    assert main(["scaling", "fit", str(tmp_path / "missing")]) == 2


def test_run_dirs_of_one_model_fit_the_data_term_only(tmp_path, capsys):
    """Runs of one model whose compute-equivalent N wobbles with padding (train FLOPs per token not constant), and
    runs that store n_params: both are one model size, so no compute-optimal N is printed."""
    from budgetune.cli import main

    def run_dir(name, n_params, wobble):
        run = tmp_path / name
        run.mkdir()
        rows = [{"kind": "eval", "tokens": t, "train_flops": 6 * 1.35e8 * t * (1 + w), "eval_loss": 1.3 + 40.0 / t ** 0.45,
                 "step": i} for i, (t, w) in enumerate(zip([1000, 2000, 4000, 8000, 16000], wobble), 1)]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (run / "summary.json").write_text(json.dumps({"n_params": n_params} if n_params else {}))
        return str(run)

    legacy = run_dir("legacy", None, [0.03, -0.02, 0.01, -0.03, 0.02])
    assert main(["scaling", "fit", legacy, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["fitted"] == "data term only (one model size)" and "n_opt" not in out
    stored = run_dir("stored", 134515008, [0.0] * 5)
    assert main(["scaling", "fit", stored, run_dir("stored2", 134515008, [0.1] * 5)]) == 0
    text = capsys.readouterr().out
    assert "one model size (N = 1.35e+08 parameters)" in text and "compute-optimal for" not in text
    assert "L(D) = 1.3000 + 40 / D^0.4500" in text  # the curve the runs were built from
    assert "N: the parameter count stored" in text
