"""Several processes (`accelerate launch`, `torchrun`, one node or many): who writes, who prints, how ranks agree.

The rules every verb follows when it runs on more than one process:
- rank 0 is the one writer of every file in a run directory and the one process that prints a summary
  (a sharded checkpoint is the exception: each rank writes its own shard file, rank 0 everything else);
- the ledger counts work once: FLOPs and tokens are summed over ranks, seconds are rank 0's;
- every decision is taken on values all ranks hold (all-reduced), so no rank branches on a local value;
- rank-local work that can fail (an evaluation's forward passes) is followed, unconditionally, by one collective
  that carries an "I failed" flag with its numbers, so a failure on one rank is raised on every rank at the same
  point instead of leaving the others waiting in a collective the failed rank never joins.

Before accelerate has started, the rank and world size come from the launcher's environment (torchrun and
accelerate launch set RANK/WORLD_SIZE; MPI launchers their own names).
"""

from __future__ import annotations

import os

from .errors import UserError

_RANK_VARS = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")
_WORLD_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def _env_int(names: tuple[str, ...], default: int) -> int:
    for name in names:
        value = os.environ.get(name)
        if value not in (None, ""):
            return int(value)
    return default


def rank() -> int:
    """This process's global rank (0 when not launched on several processes)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return _env_int(_RANK_VARS, 0)


def world() -> int:
    """How many processes run this command (1 when not launched on several)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return _env_int(_WORLD_VARS, 1)


def is_main() -> bool:
    return rank() == 0


def launched() -> bool:
    return world() > 1


# Verbs whose work is split over ranks; every other verb runs on rank 0 alone under a launcher (the others exit 0).
EVERY_RANK = ("run", "train", "select")


def runs_on_this_rank(verb: str) -> bool:
    return verb in EVERY_RANK or _env_int(_RANK_VARS, 0) == 0


def start(timeout_s: float | None = None):
    """Join the launcher's process group (gloo on CPU, nccl on GPUs) through accelerate; None when alone."""
    if not launched():
        return None
    import torch
    from accelerate import PartialState

    kwargs = {}
    if timeout_s:
        from datetime import timedelta

        kwargs["timeout"] = timedelta(seconds=float(timeout_s))
    return PartialState(cpu=not torch.cuda.is_available(), **kwargs)


class RankFailed(UserError):
    """Raised on every healthy rank when another rank's local work failed (exit 1, one line: the failed rank
    prints its own traceback)."""

    exit_code = 1


def reduce_or_raise(values: list[float], error: BaseException | None, what: str, *, device=None) -> list[float]:
    """Sum `values` over ranks in one collective that also carries whether each rank's local work failed.

    Every rank calls this exactly once per collective point, failed or not (a failed rank passes zeros and its
    error). When any rank failed, the failed ranks re-raise their own error and the others raise RankFailed
    naming them; otherwise the summed values come back. Alone, it returns `values` (or raises `error`)."""
    if world() == 1:
        if error is not None:
            raise error
        return list(values)
    import torch
    import torch.distributed as dist

    n, me = world(), rank()
    flags = [0.0] * n
    if error is not None:
        flags[me] = 1.0
        values = [0.0] * len(values)
    t = torch.tensor(list(values) + flags, dtype=torch.float64, device=device or _device())
    dist.all_reduce(t)
    out = t.tolist()
    failed = [r for r, f in enumerate(out[len(values):]) if f > 0]
    if failed:
        if error is not None:
            raise error
        raise RankFailed(f"{what} failed on rank(s) {', '.join(map(str, failed))}; this rank stops with it (the "
                         f"last checkpoint is intact: resume with --resume --out RUN_DIR)")
    return out[: len(values)]


def _device():
    """Where a collective's tensor must live: the current GPU under nccl, the CPU under gloo."""
    import torch
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def broadcast_object(obj, *, src: int = 0):
    """rank `src`'s object on every rank (obj is ignored on the others)."""
    if world() == 1:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    if world() > 1:
        import torch.distributed as dist

        dist.barrier()
