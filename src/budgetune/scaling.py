"""Scaling laws: fit L(N, D) = E + A/N^α + B/D^β from runs, compute-optimal N and D for a budget, repeated data.

- The fit follows Hoffmann et al. 2022 ("Training Compute-Optimal Large Language Models", Appendix D.2): minimise the
  Huber loss (δ = 1e-3) between log L and LSE(a − α·log N, b − β·log D, e) with L-BFGS, where
  A = e^a, B = e^b, E = e^e. When every run has the same N (fine-tuning one model), only L(D) = E' + B/D^β is
  identifiable and that is what is fitted (E' absorbs A/N^α).
- Compute-optimal allocation for C = 6·N·D (Hoffmann eq. 4): N* = G·(C/6)^(β/(α+β)), D* = (C/6)^(α/(α+β))/G with
  G = (α·A / (β·B))^(1/(α+β)).
- Repeated data (Muennighoff et al. 2023, "Scaling Data-Constrained Language Models", eq. 5): with U unique tokens
  seen D/U times, the effective data is D' = U + U·R*·(1 − exp(−R/R*)), R = D/U − 1, R* ≈ 15.4: about 4 epochs are
  worth nearly fresh data and returns vanish towards 16.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .errors import UserError

HOFFMANN_2022 = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
R_D_STAR = 15.4  # Muennighoff et al. 2023


@dataclass(frozen=True)
class ChinchillaFit:
    E: float
    A: float
    B: float
    alpha: float
    beta: float
    n_points: int
    objective: float
    fixed_n: float | None = None  # the one N of all runs when only the data term could be fitted

    def predict(self, N, D):
        N, D = np.asarray(N, dtype=float), np.asarray(D, dtype=float)
        model = 0.0 if self.fixed_n is not None else self.A / N**self.alpha
        return self.E + model + self.B / D**self.beta


def _huber(r: np.ndarray, delta: float) -> np.ndarray:
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r**2, delta * (a - 0.5 * delta))


def fit_chinchilla(N, D, L, *, delta: float = 1e-3) -> ChinchillaFit:
    from scipy.optimize import minimize

    N, D, L = (np.asarray(v, dtype=float) for v in (N, D, L))
    ok = (N > 0) & (D > 0) & (L > 0) & np.isfinite(L)
    N, D, L = N[ok], D[ok], L[ok]
    # One model size: sizes within 5% of each other (compute-equivalent N of runs of one model differ by padding)
    # cannot separate the model term from the constant, so only the data term is fitted.
    fixed_n = len(N) > 0 and float(np.ptp(np.log(N))) < math.log(1.05)
    need = 3 if fixed_n else 5
    if len(L) < need:
        raise UserError(f"scaling fit needs at least {need} (N, D, loss) points with positive values; got {len(L)}")
    logN, logD, logL = np.log(N), np.log(D), np.log(L)

    def objective(p):
        # p = (a, b, alpha, beta, e); with a fixed N the model term is left out (a = −inf).
        a, b, alpha, beta, e = p if not fixed_n else (-np.inf, p[0], 0.0, p[1], p[2])
        terms = np.stack([a - alpha * logN, b - beta * logD, np.full_like(logN, e)])
        top = terms.max(axis=0)
        w = np.exp(terms - top)
        pred = top + np.log(w.sum(axis=0))
        w /= w.sum(axis=0)  # d pred / d term_k
        r = pred - logL
        h = np.where(np.abs(r) <= delta, r, delta * np.sign(r))  # Huber derivative
        value = float(np.sum(_huber(r, delta)))
        grad = [np.sum(h * w[1]), np.sum(-h * w[1] * logD), np.sum(h * w[2])]
        if fixed_n:
            return value, np.array(grad)
        return value, np.array([np.sum(h * w[0]), grad[0], np.sum(-h * w[0] * logN), grad[1], grad[2]])

    # Starts: for fixed exponents the law is linear in (E, A, B), so a grid over (α, β) solved by non-negative least
    # squares finds the basin cheaply; the best few are then polished on Hoffmann's Huber-on-log objective. (Hoffmann
    # ran L-BFGS from every point of a 5-D grid; this reaches the same optimum with a handful of optimisations.)
    from scipy.optimize import nnls
    from threadpoolctl import threadpool_limits

    exponents = np.linspace(0.05, 1.5, 30)
    starts = []
    with threadpool_limits(limits=1):  # BLAS threads only spin on problems this small
        for alpha in ([0.0] if fixed_n else exponents):
            for beta in exponents:
                cols = [np.ones_like(L), D**-beta] + ([] if fixed_n else [N**-alpha])
                X = np.stack(cols, axis=1)
                norm = X.max(axis=0)
                coef, res = nnls(X / norm, L)
                coef = np.maximum(coef / norm, 1e-12)
                E0, B0 = coef[0], coef[1]
                p0 = [math.log(B0), beta, math.log(E0)] if fixed_n else \
                    [math.log(coef[2]), math.log(B0), alpha, beta, math.log(E0)]
                starts.append((res, p0))
        starts.sort(key=lambda t: t[0])
        best = None
        for _, p0 in starts[:4]:
            res = minimize(objective, np.asarray(p0, dtype=float), jac=True, method="L-BFGS-B")
            if best is None or res.fun < best.fun - 1e-15:
                best = res
    if fixed_n:
        b, beta, e = best.x
        return ChinchillaFit(math.exp(e), 0.0, math.exp(b), math.nan, float(beta), len(L), float(best.fun),
                             float(np.exp(np.mean(logN))) if np.ptp(N) else float(N[0]))
    a, b, alpha, beta, e = best.x
    return ChinchillaFit(math.exp(e), math.exp(a), math.exp(b), float(alpha), float(beta), len(L), float(best.fun))


def compute_optimal(fit: ChinchillaFit | dict, flops: float) -> tuple[float, float]:
    """(N*, D*) minimising E + A/N^α + B/D^β subject to 6·N·D = flops (Hoffmann et al. 2022, eq. 4)."""
    p = asdict(fit) if isinstance(fit, ChinchillaFit) else dict(fit)
    if p.get("fixed_n") is not None or not math.isfinite(p["alpha"]):
        raise UserError("the runs all have the same model size, so the split between N and D cannot be fitted; "
                        "add runs of other model sizes, or read the data term alone")
    alpha, beta, A, B = p["alpha"], p["beta"], p["A"], p["B"]
    G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
    return G * (flops / 6.0) ** (beta / (alpha + beta)), (flops / 6.0) ** (alpha / (alpha + beta)) / G


def effective_data(unique_tokens: float, tokens: float, r_star: float = R_D_STAR) -> float:
    """Muennighoff et al. 2023 eq. 5: what `tokens` drawn from `unique_tokens` repeated are worth in fresh tokens."""
    if unique_tokens <= 0:
        raise UserError(f"unique tokens must be positive; got {unique_tokens}")
    if tokens <= unique_tokens:
        return float(tokens)
    repeats = tokens / unique_tokens - 1.0
    return unique_tokens + unique_tokens * r_star * (1.0 - math.exp(-repeats / r_star))


def base_params(model) -> int:
    """Parameters of the model being fine-tuned, adapters excluded: the N of L(N, D). A 4-bit weight counts its
    unpacked shape (bitsandbytes packs two values per byte)."""
    n = 0
    for name, p in model.named_parameters():
        if "lora_" in name:
            continue
        shape = getattr(getattr(p, "quant_state", None), "shape", None)
        n += int(np.prod(shape)) if shape is not None else p.numel()
    return n


# -- loading points -------------------------------------------------------------------------------------------
def load_points(paths) -> tuple[list[tuple[float, float, float]], list[str]]:
    """(N, D, loss) points from run directories or CSV/JSON/JSONL tables, and notes on how N was obtained."""
    points, notes = [], []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            got, note = _from_run_dir(path)
            points += got
            if note not in notes:
                notes.append(note)
        elif path.is_file():
            points += _from_table(path)
        else:
            raise UserError(f"{path}: no such run directory or table; give run dirs or a CSV/JSON of N, D, loss")
    return points, notes


def _from_run_dir(path: Path):
    metrics = path / "metrics.jsonl"
    if not metrics.exists():
        raise UserError(f"{path}: not a run directory (no metrics.jsonl); give a run dir or a CSV of N, D, loss")
    evals = [json.loads(x) for x in metrics.read_text(encoding="utf-8").splitlines() if x.strip()]
    evals = [e for e in evals if e.get("kind") == "eval" and e.get("tokens", 0) > 0 and e.get("eval_loss")]
    summary = _read_json(path / "summary.json")
    n = summary.get("n_params") or summary.get("params")
    note = "N: the parameter count stored in each run's summary"
    if not n and evals:
        # A run from before n_params was stored: the compute-equivalent size N = C/(6·D) of the C = 6·N·D
        # convention, one value per run (from its last evaluation), since the model did not change size mid-run.
        last = evals[-1]
        n = last["train_flops"] / (6.0 * last["tokens"])
        note = "N is compute-equivalent, train FLOPs / (6 · train tokens): the run stores no n_params"
    return [(float(n), float(e["tokens"]), float(e["eval_loss"])) for e in evals], note


def _from_table(path: Path):
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
    elif path.suffix.lower() == ".jsonl":
        rows = [json.loads(x) for x in text.splitlines() if x.strip()]
    else:
        try:
            rows = json.loads(text)
        except ValueError as e:
            raise UserError(f"{path}: not valid JSON ({e}); give a list of {{N, D, loss}} objects") from None
        rows = rows.get("points", rows) if isinstance(rows, dict) else rows
    out = []
    for i, row in enumerate(rows, 1):
        try:
            out.append((float(row["N"]), float(row["D"]), float(row["loss"])))
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{path}: row {i} needs numeric columns N, D and loss; got {row}") from None
    return out


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
