"""A live-storage counter: a TorchDispatchMode that sees every storage come alive and die, keeping the global
peak and what was alive then (the tracer classifies that live set; memory.measure uses it as a tripwire)."""

from __future__ import annotations

import weakref


class PeakTracker:
    """Counts live storages through a TorchDispatchMode; snapshots the live set when a new global peak ends."""

    def __init__(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        tracker = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                tracker._register_tree(out)
                return out

        self.mode = Mode()
        self.live: dict[int, tuple[int, str]] = {}  # id(storage) -> (bytes, phase at allocation)
        self._refs: dict[int, weakref.ref] = {}
        self.current = 0
        self.peak = 0
        self.phase = "setup"
        self.peak_phase = "setup"
        self.snapshot: dict[int, tuple[int, str]] | None = None
        self._stale = False
        self.classify = None  # callable(live) -> breakdown, set by the caller

    def _register_tree(self, out) -> None:
        import torch
        from torch.utils._pytree import tree_leaves

        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.register(t)

    def register(self, t) -> None:
        try:
            st = t.untyped_storage()
        except (RuntimeError, NotImplementedError):
            return  # sparse or other storage-less tensors
        key = id(st)
        if key in self.live:
            return
        nbytes = int(st.nbytes())
        self.live[key] = (nbytes, self.phase)
        self._refs[key] = weakref.ref(st, lambda _, k=key: self._free(k))
        self.current += nbytes
        if self.current > self.peak:
            self.peak = self.current
            self.peak_phase = self.phase
            self._stale = True

    def _free(self, key: int) -> None:
        if self._stale and self.current == self.peak and self.classify is not None:
            self.snapshot = self.classify(self.live)  # the live set at the moment the peak ends
            self._stale = False
        nbytes, _ = self.live.pop(key, (0, ""))
        self._refs.pop(key, None)
        self.current -= nbytes

    def finish(self) -> None:
        if self._stale and self.classify is not None:
            self.snapshot = self.classify(self.live)
            self._stale = False
