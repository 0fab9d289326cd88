"""The default governor: continue while the next FLOPs are predicted to buy enough held-out loss, else act.

At each evaluation it estimates the signal (governor/signal.py: an ensemble of learning-curve families fitted from
the evaluation before training) and compares the predicted relative loss reduction of the next `horizon` share of
the budget with a price that rises as the budget runs out:

    price(f) = threshold · (1 + price_rise · f),   f = share of the budget spent

"another 10% of the budget must buy 0.5% loss" is horizon=0.1, threshold=0.005 (the default, chosen with the other
defaults on part of the recorded suite by bench/governor_tune.py).

Rule "rest" (the default) prices the whole rest of the budget, not only its next 10%: the rest, a share r of the
budget, costs the per-horizon price integrated over it (trend.rest_price; at most `max_loss` when set), and a stop
needs both the curve families' predicted gain of the rest (mean + curve_z·sd) and the trend bound (governor/trend.py:
the recent slope extrapolated over the rest, which over-states what a convex falling curve still buys, at trend_z
standard errors of its optimistic edge) below that price. The trend bound is what keeps a slow steady decline after
a fast drop, which the families read as saturation, from being stopped. With confirm_by "trend" (the default)
each evaluation at which both agree is one confirmation (`confirm`, default 1), and one at which the rest clearly
pays resets the count. A rise needs no separate test: it is a trend with no gain.

Rule "next" (until 2026-12-02) and confirm_by "paired" (docs/governor.md) need, for a stop, the curve's predicted
gain of the next horizon below the price on a fit with at least `min_dof` degrees of freedom, and `confirm`
intervals of paired evidence on the same held-out examples (governor/noise.py), each starting where the last ended,
whose gain is below the price even at its optimistic edge; an inconclusive interval is extended.
When the data has drifted enough to make a refresh of the training subset worth its FLOPs, the action is "refresh"
instead of "stop" (drift comes from the data-selection side through evaluation["drift"]; with `refresh_probe` the
governor asks the refresher once per data window before it stops).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass

from ..errors import UserError
from . import noise as noise_mod
from .arms import allocate
from .bump import bump_hold
from .horizon import budget_axis
from .noise import sample_request
from .protocol import ArmView, Decision
from .signal import estimate
from .trend import rest_terms


@dataclass(kw_only=True)
class Config:
    threshold: float = 0.005  # relative loss reduction each `horizon` of the budget must buy
    horizon: float = 0.1  # share of the whole budget the threshold refers to
    price_rise: float = 1.0  # the price grows by this factor over the budget (1: doubles by the end)
    resume_threshold: float | None = None  # gain that resets a pending stop; unset: 1.5 × threshold
    z: float = 1.0  # optimism: standard deviations added to a measured (paired) gain before comparing
    curve_z: float | None = 0.0  # standard deviations added to the curve's predicted gain; unset: z
    min_evals: int = 4  # evaluations (since start or refresh) before any action
    min_spent: float = 0.0  # share of the budget spent before any action (a gate against early plateaus)
    min_dof: int = 1  # no action on a curve fit with fewer degrees of freedom (points − parameters)
    min_evals_between: int = 2  # evaluations between two actions
    confirm: int = 1  # confirmations before acting (confirm_by: paired intervals, or evaluations that agree)
    eval_points: int = 10  # evaluations the governor needs over the budget (declared; the run's plan shows them)
    eval_min_points: int = 4  # fewest evaluations it can work with when the evaluation share is tight
    eval_min_sample: int = 2  # fewest held-out examples per evaluation for a paired test
    eval_spacing: float = 1.0  # evaluation k of n falls at (k/(n+1))^spacing of the budget (>1: denser early)
    refresh_min_drift: float = 0.2  # drift (1 − rank correlation of data scores) that makes a refresh worth it
    refresh_probe: bool = False  # a refresher is attached: before stopping, ask it once whether new data pays
    max_refreshes: int = 2  # refreshes allowed in one run
    round_share: float = 0.5  # arms: share of the remaining FLOPs handed out per round while several arms live
    rule: str = "rest"  # "rest": the whole rest of the budget against its price; "next": the next `horizon`
    max_loss: float | None = None  # rule "rest": never stop while the rest is predicted to buy more than this share
    trend_z: float | None = 0.0  # rule "rest": standard deviations on the trend bound (governor/trend.py); unset: off
    trend_window: float = 0.8  # rule "rest": trailing share of the budget spent that the trend's line is fitted on
    confirm_by: str = "trend"  # "trend": evaluations at which curve and trend agree; "paired": paired intervals
    close_wait: bool = False  # confirm_by "trend": a stop within one standard error of its price waits for a larger sample
    bump_tolerance: float | None = None  # a stop waits while the loss stands this share above its best (bump.py)
    bump_wait: int = 2  # most evaluations in a row a stop waits out a bump

    def __post_init__(self):
        if not 0 < self.threshold < 1:
            raise UserError(f"governor option threshold={self.threshold} must be a share between 0 and 1, "
                            f"e.g. 0.01 for 'the next 10% of the budget must buy 1% lower loss'")
        if not 0 < self.horizon <= 1:
            raise UserError(f"governor option horizon={self.horizon} must be a share of the budget in (0, 1]")
        if self.resume_threshold is None:
            self.resume_threshold = 1.5 * self.threshold
        if self.resume_threshold < self.threshold:
            raise UserError(f"governor options contradict: resume_threshold={self.resume_threshold} is below "
                            f"threshold={self.threshold}; a pending stop must need a larger gain to be cancelled")
        if self.price_rise < 0 or self.z < 0 or (self.curve_z is not None and self.curve_z < 0):
            raise UserError("governor options price_rise, z and curve_z must be non-negative")
        for name in ("min_evals", "confirm", "min_dof", "eval_min_points", "eval_min_sample"):
            if getattr(self, name) < 1:
                raise UserError(f"governor option {name}={getattr(self, name)} must be at least 1")
        if self.eval_points < self.eval_min_points:
            raise UserError(f"governor option eval_points={self.eval_points} is below eval_min_points="
                            f"{self.eval_min_points}; raise eval_points")
        if self.min_evals_between < 0 or self.max_refreshes < 0:
            raise UserError("governor options min_evals_between and max_refreshes must be non-negative")
        if not 0.25 <= self.eval_spacing <= 4:
            raise UserError(f"governor option eval_spacing={self.eval_spacing} must be between 0.25 and 4 "
                            f"(1: evenly over the budget)")
        if self.rule not in ("next", "rest") or self.confirm_by not in ("paired", "trend"):
            raise UserError(f"governor options rule={self.rule!r} must be 'next' or 'rest' and confirm_by="
                            f"{self.confirm_by!r} 'paired' or 'trend'")
        if (self.max_loss is not None and not 0 < self.max_loss < 1) or not 0 < self.trend_window <= 1 \
                or (self.trend_z is not None and self.trend_z < 0) or not 0 <= self.min_spent < 1:
            raise UserError(f"governor options max_loss must be a share in (0, 1), trend_window in (0, 1], trend_z "
                            f"non-negative and min_spent in [0, 1) (got min_spent={self.min_spent})")
        if (self.bump_tolerance is not None and self.bump_tolerance < 0) or self.bump_wait < 0:
            raise UserError("governor options bump_tolerance and bump_wait must be non-negative")
        if not 0 < self.round_share <= 1:
            raise UserError(f"governor option round_share={self.round_share} must be in (0, 1]")


_PER_EXAMPLE = ("eval_sums", "eval_counts", "eval_indices")


class MarginalGain:
    name = "marginal"
    NEEDS_BUDGET = True  # it prices FLOPs against a FLOP, token or time budget
    Config = Config

    def __init__(self, config: Config | None = None):
        self.config = config or Config()
        self.reset()

    def reset(self) -> None:
        self.evals: list[dict] = []  # flops, eval_loss and the per-example losses of every evaluation seen
        self.window_start = 0  # index of the first evaluation of the current data (moves on refresh)
        self.below = 0  # confirmations so far
        self.anchor: int | None = None  # evaluation where the current interval of paired evidence starts
        self.last_action = -10**9  # evaluation index of the last non-continue action
        self.refreshes = 0
        self.pending_refresh = False  # a refresh was asked for at the previous evaluation
        self.probed = False  # the refresher was already asked about the current data
        self.held_at: int | None = None  # sample size at which a close stop last waited for a larger sample
        self.bump_waits = 0  # evaluations in a row at which a stop waited out a bump
        self.last_inputs: dict = {}

    def decisive_points(self) -> int:
        """The fewest evaluations between the one before training and the end at which this governor can act (the
        curve families' floor, curves.fewest_points, and min_evals): a plan that can afford fewer plans none."""
        from .curves import fewest_points

        c = self.config
        return max(c.eval_min_points, fewest_points(c.min_dof) - 1, c.min_evals - 1)

    def rule_text(self) -> str:
        """The stop rule in one line, for the plan the run prints."""
        c = self.config
        each = f"{100 * c.threshold:g}% lower held-out loss per {c.horizon:.0%} of the budget"
        if c.rule == "rest":
            by = "the curve families and the recent trend" if c.trend_z is not None else "the curve families"
            cap = f" (or less than {100 * c.max_loss:g}% in all)" if c.max_loss is not None else ""
            return f"stops when the rest of the budget is predicted (by {by}) to buy less than {each} it would use{cap}"
        return (f"stops when the next {c.horizon:.0%} of the budget is predicted to buy less than "
                f"{100 * c.threshold:g}% lower held-out loss")

    # -- one run ---------------------------------------------------------------------------------------------
    def decide(self, evaluation: dict, ledger, budget) -> Decision:
        c = self.config
        loss = evaluation.get("eval_loss")
        if loss is None or not math.isfinite(float(loss)):
            raise UserError("the marginal-gain governor needs a held-out loss at every evaluation; give --target "
                            "or a positive --heldout-fraction")
        flops_now = float(evaluation.get("flops", ledger.total_flops))
        kept = {"flops": flops_now, "eval_loss": float(loss)}
        kept.update({k: evaluation[k] for k in _PER_EXAMPLE if k in evaluation})
        self.evals.append(kept)
        now = len(self.evals) - 1
        if self.pending_refresh:
            # The loop called the refresher after our last decision and reports its answer in evaluation["drift"]
            # (the refresher's last report). No report: assume the data was swapped.
            info = evaluation.get("drift")
            swapped = not isinstance(info, dict) or bool(info.get("refresh", True))
            if swapped:
                self.refreshes += 1
                self.window_start = now  # new data, new curve
                self.below, self.anchor = 0, None
                self.probed = False
            self.pending_refresh = False
        total, remaining = budget_axis(budget, ledger, flops_now)
        if not math.isfinite(total):
            return self._emit("continue", "no budget has been spent yet", {"eval_loss": loss})

        window = self.evals[self.window_start:]
        losses = self._comparable_losses(window)
        gaps = [noise_mod.paired_gain(a, b) for a, b in itertools.pairwise(window)]
        ses = sorted(g[1] for g in gaps if g is not None and math.isfinite(g[1]))
        noise = ses[len(ses) // 2] if ses else 0.0
        sig = estimate([e["flops"] for e in window], losses, total=total, remaining=remaining, horizon=c.horizon,
                       noise=noise, min_dof=c.min_dof)
        spent = 1.0 - remaining / total
        price = c.threshold * (1.0 + c.price_rise * spent)
        resume = c.resume_threshold * (1.0 + c.price_rise * spent)
        # The horizon may be cut by the end of the budget; compare per full horizon so the price stays comparable.
        per_horizon = sig.horizon_flops / (c.horizon * total) if total > 0 else 0.0
        scale = 1.0 / per_horizon if per_horizon > 0 else 0.0
        curve_z = c.z if c.curve_z is None else c.curve_z
        optimistic = (sig.gain_next + curve_z * sig.gain_next_sd) * scale
        inputs = {"eval_loss": float(loss), **sig.to_inputs(), "optimistic_gain": _finite(optimistic),
                  "price": price, "resume_price": resume, "budget_spent": spent, "flops_left": remaining}
        n_window = len(window)
        if n_window < c.min_evals or spent < c.min_spent or sig.source != "fit" or sig.dof < c.min_dof:
            self.below, self.anchor = 0, None
            inputs["below_count"] = 0
            why = (f"{n_window} of {c.min_evals} evaluations" if n_window < c.min_evals else
                   f"{spent:.0%} of the budget spent, {c.min_spent:.0%} before any action" if spent < c.min_spent else
                   "no curve family has enough degrees of freedom" if sig.source != "fit" else
                   f"the fit has {sig.dof} degrees of freedom, {c.min_dof} needed")
            return self._emit("continue", f"gathering evaluations ({why})", inputs)
        left_txt = f"another {c.horizon:.0%} of the budget" if scale == 1.0 else "the rest of the budget"
        gain_txt = (f"{left_txt} is predicted to buy {100 * sig.gain_next:.2f}% ± {100 * sig.gain_next_sd:.2f}% "
                    f"lower loss (optimistic edge per {c.horizon:.0%} of the budget: {100 * optimistic:.2f}%)")
        if c.rule == "rest":
            optimistic, price, resume, gain_txt = self._rest_rule(window, losses, sig, total, remaining, spent,
                                                                  noise, curve_z, inputs)
        price_txt = "its price" if c.rule == "rest" else f"the price {100 * price:.2f}%"
        curve_says_stop = optimistic < price
        if c.confirm_by == "trend":
            hold = self._close_hold(evaluation, inputs) if curve_says_stop and c.close_wait else None
            if hold is not None:
                inputs.update(hold)
                inputs["below_count"] = self.below
                return self._emit("continue", f"{gain_txt}, below {price_txt} but within one standard error of it; "
                                              f"{hold['evidence']}", inputs)
            evidence = self._consecutive(curve_says_stop, optimistic > resume)
        else:
            evidence = self._interval_test(now, total, price, resume, optimistic)
        inputs.update(evidence)
        inputs["below_count"] = self.below
        if self.below < c.confirm or now - self.last_action <= c.min_evals_between:
            self.bump_waits = 0
            relation = "below" if curve_says_stop else "above"
            return self._emit("continue", f"{gain_txt}, {relation} {price_txt}; "
                                          f"{evidence['evidence']} ({self.below}/{c.confirm} confirmations)", inputs)
        refresh = self._refresh_value(evaluation, total, remaining, price)
        inputs.update(refresh)
        if refresh.get("refresh_worth"):
            self.pending_refresh, self.probed, self.last_action = True, True, now
            return self._emit("refresh", f"{gain_txt}, below {price_txt}; the data drifted "
                                         f"({refresh['drift']:.2f}) so a refresh is predicted to buy "
                                         f"{100 * refresh['refresh_gain']:.2f}%", inputs)
        if c.refresh_probe and not self.probed and refresh.get("drift") is None \
                and self.refreshes < c.max_refreshes:
            self.pending_refresh, self.probed = True, True
            return self._emit("refresh", f"{gain_txt}, below {price_txt}; before stopping, the "
                                         f"refresher measures drift and re-selects only if new data pays", inputs)
        bump = bump_hold(losses, c.bump_tolerance, self.bump_waits, c.bump_wait)
        self.bump_waits = self.bump_waits + 1 if bump is not None else 0
        if bump is not None:
            inputs.update(bump)
            return self._emit("continue", f"{gain_txt}, below {price_txt}; {bump['evidence']}", inputs)
        self.last_action = now
        how = (f"at {self.below} evaluation(s) where the curve and its trend agree" if c.confirm_by == "trend" else
               f"confirmed on {self.below} separate intervals of paired evidence")
        return self._emit("stop", f"{gain_txt}, below {price_txt}, {how}; {remaining:.3g} FLOPs left for "
                                  f"inference", inputs)

    def _rest_rule(self, window, losses, sig, total, remaining, spent, noise, curve_z, inputs):
        """Rule "rest" (trend.rest_terms); the prices come back per `horizon` so the paired intervals keep their
        meaning."""
        x = [(e["flops"] - window[0]["flops"]) / total for e in window]
        return rest_terms(self.config, x, losses, sig, rest=remaining / total, spent=spent, noise=noise,
                          curve_z=curve_z, inputs=inputs)

    def _consecutive(self, says_stop: bool, clearly_pays: bool) -> dict:
        """confirm_by "trend": each evaluation at which the rule says stop is one confirmation; one that clearly
        pays (above the resume price) resets the count, one in between neither counts nor resets."""
        if says_stop:
            self.below += 1
            return {"evidence": "the curve and its trend agree that the rest does not pay", "interval_gain": None,
                    "interval_se": None}
        if clearly_pays:
            self.below = 0
        return {"evidence": "the curve keeps paying", "interval_gain": None, "interval_se": None}

    def _close_hold(self, evaluation: dict, inputs: dict) -> dict | None:
        """A stop that one more standard error of the trend would cancel (rule "rest", confirm_by "trend") waits one
        evaluation for a larger sample (train/governed.enlarge grants what the evaluation share pays for), once per
        sample size: when the sample could not grow, the next evaluation decides on what it has."""
        size = len(evaluation.get("eval_sums") or ())
        se, gain, price = inputs.get("rest_gain_se"), inputs.get("rest_gain"), inputs.get("rest_price")
        if not se or gain is None or price is None or size < 2 or self.held_at == size:
            return None
        request = sample_request(size, price - gain, se)
        if request is None:
            return None
        self.held_at = size
        return {"evidence": f"a sample of {request} examples would tell, so the stop waits one evaluation for it",
                "sample_request": request, "close": True, "interval_gain": None, "interval_se": None}

    def _comparable_losses(self, window: list[dict]) -> list[float]:
        """Each evaluation's loss on the examples of the latest one (the before-training evaluation covers the
        whole held-out set, later ones a sample of it), so the curve compares like with like."""
        last = window[-1]
        out = []
        for e in window:
            c = noise_mod.common(e, last)
            out.append(float(c[0].sum() / c[2].sum()) if c is not None and c[2].sum() > 0 else e["eval_loss"])
        return out

    def _interval_test(self, now: int, total: float, price: float, resume: float, optimistic: float) -> dict:
        """One step of the confirmation count on the paired gain over the interval since `anchor`."""
        c = self.config
        curve_says_stop = optimistic < price
        if not curve_says_stop:
            if optimistic > resume:  # hysteresis: only a clearly paying curve cancels the confirmations so far
                self.below, self.anchor = 0, None
            return {"evidence": "the curve keeps paying", "interval_gain": None, "interval_se": None}
        if self.anchor is None:
            self.anchor = now - 1
        a, b = self.evals[self.anchor], self.evals[now]
        length = (b["flops"] - a["flops"]) / total
        allowed = price * length / c.horizon
        allowed_resume = resume * length / c.horizon
        paired = noise_mod.paired_gain(a, b)
        if paired is None:  # no per-example losses (e.g. Trainer): the raw difference, noise unknown
            gain, se = (a["eval_loss"] - b["eval_loss"]) / a["eval_loss"], 0.0
        else:
            gain, se = paired[0], paired[1]
        out = {"interval_from_flops": a["flops"], "interval_share": length, "interval_gain": gain,
               "interval_se": _finite(se), "interval_price": allowed}
        if gain + c.z * se < allowed:
            self.below += 1
            self.anchor = now  # the next confirmation rests on new evaluations only
            out["evidence"] = (f"paired gain over the last {length:.0%} of the budget {100 * gain:.2f}% ± "
                               f"{100 * se:.2f}% is below its price {100 * allowed:.2f}%")
        elif gain - c.z * se > allowed_resume:
            self.below = 0
            self.anchor = now
            out["evidence"] = (f"paired gain over the last {length:.0%} {100 * gain:.2f}% ± {100 * se:.2f}% is "
                               f"really above its price {100 * allowed:.2f}%: count reset")
        else:
            out["evidence"] = (f"paired gain over the last {length:.0%} {100 * gain:.2f}% ± {100 * se:.2f}% is "
                               f"too close to its price {100 * allowed:.2f}% to tell: the interval is extended")
            out["close"] = True
            request = sample_request(len(b.get("eval_sums") or ()), gain - allowed, se)
            if request:
                out["sample_request"] = request
                out["evidence"] += f"; a sample of {request} examples would tell"
        return out

    def _refresh_value(self, evaluation: dict, total: float, remaining: float, price: float) -> dict:
        """Is re-selecting the training data worth its FLOPs? Drift comes from the data-selection side.

        A refresh with drift d is assumed to restore a share d of what the first `horizon` of the current data
        bought (a fresh subset is as useful as the first one was, to the extent that the scores changed); it pays
        when that beats the price plus the refresh's own FLOPs priced at the same rate.
        """
        c = self.config
        drift = evaluation.get("drift")
        if isinstance(drift, dict):
            cost = float(drift.get("refresh_flops", drift.get("refresh_flops_estimate", 0.0)) or 0.0)
            drift = drift.get("drift", None if drift.get("rank_correlation") is None
                              else 1.0 - float(drift["rank_correlation"]))
        else:
            cost = float(evaluation.get("refresh_flops", 0.0))
        if drift is None or self.refreshes >= c.max_refreshes or float(drift) < c.refresh_min_drift:
            return {"drift": drift, "refresh_worth": False}
        drift = float(drift)
        start = self.window_start
        first = [(e["flops"], e["eval_loss"]) for e in self.evals[start:]
                 if e["flops"] - self.evals[start]["flops"] <= c.horizon * total]
        bought = max(0.0, (first[0][1] - first[-1][1]) / first[0][1]) if len(first) >= 2 else 0.0
        gain = drift * bought
        cost_price = price * cost / (c.horizon * total) if total > 0 else math.inf
        worth = cost < remaining and gain > price + cost_price
        return {"drift": drift, "refresh_flops": cost, "refresh_gain": gain, "refresh_price": price + cost_price,
                "refresh_worth": bool(worth)}

    def _emit(self, action: str, reason: str, inputs: dict) -> Decision:
        self.last_inputs = inputs
        return Decision(action, reason, inputs)

    # -- several arms ----------------------------------------------------------------------------------------
    def allocate(self, arms: list[ArmView], remaining: float, total: float) -> tuple[dict, Decision]:
        """Between arms (governor/arms.py): keep those whose predicted final loss could still be the best."""
        return allocate(self.config, arms, remaining, total)

    # -- checkpoints -----------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"config": asdict(self.config), "evals": [dict(e) for e in self.evals],
                "window_start": self.window_start, "below": self.below, "anchor": self.anchor,
                "last_action": self.last_action, "refreshes": self.refreshes,
                "pending_refresh": self.pending_refresh, "probed": self.probed, "held_at": self.held_at,
                "bump_waits": self.bump_waits}

    def load_state_dict(self, state: dict) -> None:
        if not state:
            self.reset()
            return
        self.evals = [dict(e) for e in state["evals"]]
        for key in ("window_start", "below", "last_action", "refreshes"):
            setattr(self, key, int(state[key]))
        self.anchor = None if state.get("anchor") is None else int(state["anchor"])
        self.pending_refresh = bool(state.get("pending_refresh", False))
        self.probed = bool(state.get("probed", False))
        self.held_at = None if state.get("held_at") is None else int(state["held_at"])
        self.bump_waits = int(state.get("bump_waits", 0))


def _finite(v):
    return float(v) if v is not None and math.isfinite(v) else None
