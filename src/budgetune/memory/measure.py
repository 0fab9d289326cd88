"""Peak memory of real CPU work as the allocator saw it: an independent check of the memory model and the tracer.

torch.profiler with profile_memory=True records every allocation and free of c10's CPU allocator as a `[memory]`
event with its signed size; their running sum, in time order, is the live tensor bytes and its maximum the peak.
The allocator's events share no code with budgetune.planner.trace (which counts storages in a dispatch mode), so
the two can be compared. Everything that should count must be allocated inside `fn` (build the model and the
optimizer there).

The profiler occasionally loses a burst of events on a busy machine, which can only lower the figure; the
tracer's storage counter runs alongside as a tripwire, and a run whose allocator peak falls below it is repeated.
"""

from __future__ import annotations

from collections.abc import Callable


def _profiled(fn: Callable[[], object]) -> tuple[int, int]:
    """(allocator peak, storage-counter peak) of one call."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from .peak import PeakTracker

    tracker = PeakTracker()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof, tracker.mode:
        fn()
    cpu = torch._C._autograd.DeviceType.CPU
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]" and e.device_type() == cpu]
    live = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        live += int(e.nbytes())
        peak = max(peak, live)
    return peak, tracker.peak


def allocator_peak(fn: Callable[[], object], attempts: int = 3) -> int:
    """Peak live bytes of CPU tensor storage allocated while `fn` runs (what existed before is not counted)."""
    best = 0
    for _ in range(attempts):
        peak, counted = _profiled(fn)
        best = max(best, peak)
        if peak >= 0.995 * counted:
            break
    return best
