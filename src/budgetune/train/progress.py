"""Progress bars (tqdm) that say which limit binds: the bar shows the share of whichever limit (steps, FLOPs,
tokens, seconds) is closest to running out, and names it, so a step-limited run reads 100% when it stops."""

from __future__ import annotations

import sys


def limits(budget, ledger, max_steps: int | None, step: int) -> dict[str, float]:
    """Share spent of every limit that is set: {'steps': 0.4, 'FLOPs': 0.1, ...}."""
    out = {}
    if max_steps:
        out["steps"] = step / max_steps
    if budget.max_flops:
        out["FLOPs"] = ledger.total_flops / budget.max_flops
    if budget.max_tokens:
        out["tokens"] = ledger.tokens.get("train", 0) / budget.max_tokens
    if budget.max_seconds:
        out["seconds"] = ledger.seconds / budget.max_seconds
    return out


def binding(budget, ledger, max_steps: int | None, step: int) -> tuple[str, float]:
    """(name, share spent) of the limit closest to running out."""
    spent = limits(budget, ledger, max_steps, step)
    if not spent:
        return "budget", 0.0
    name = max(spent, key=spent.get)
    return name, min(1.0, spent[name])


def enabled(flag: bool = True) -> bool:
    """Bars only where someone watches (a terminal), so logs and pipes stay clean."""
    return flag and sys.stderr.isatty()


class TrainingBar:
    """The training bar: the binding limit's share, in per mille, with the loss and FLOPs so far."""

    def __init__(self, enabled: bool, budget, ledger, max_steps: int | None = None, step: int = 0):
        self.bar = None
        self.budget, self.max_steps = budget, max_steps
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=1000, desc="training", leave=True,
                            bar_format="{desc} {bar} {percentage:3.0f}% [{elapsed}<{remaining}] {postfix}")
            self._show(ledger, step)

    def _show(self, ledger, step: int) -> None:
        name, share = binding(self.budget, ledger, self.max_steps, step)
        self.bar.n = int(1000 * share)
        self.bar.set_description_str(f"training (of the {name} limit)", refresh=False)

    def update(self, ledger, loss: float, step: int | None = None) -> None:
        if self.bar is not None:
            self._show(ledger, ledger.steps if step is None else step)
            self.bar.set_postfix_str(f"loss {loss:.3f} · {ledger.total_flops:.2e} FLOPs", refresh=False)
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def bar(iterable=None, *, total: int | None = None, desc: str = "", unit: str = "it", show: bool = True):
    """A plain tqdm bar for a pass over a known number of items (evaluation batches, prompts, plans)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, disable=not enabled(show))


class stage:
    """A bar for one long step whose length is not known in advance (scoring a pool, tracing plans): its name and
    the elapsed time, refreshed every second from a background thread, on a terminal only."""

    def __init__(self, desc: str, show: bool = True):
        self.desc, self.show = desc, enabled(show)
        self.bar = self._thread = None

    def __enter__(self):
        if self.show:
            import threading

            from tqdm.auto import tqdm

            self.bar = tqdm(total=None, desc=self.desc, bar_format="{desc} [{elapsed}]", leave=False)
            self._done = threading.Event()
            self._thread = threading.Thread(target=self._tick, daemon=True)
            self._thread.start()
        return self

    def _tick(self) -> None:
        while not self._done.wait(1.0):
            self.bar.refresh()

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self._done.set()
            self._thread.join()
            self.bar.close()
