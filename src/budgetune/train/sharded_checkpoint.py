"""Checkpoints of a sharded run (FSDP2): each rank writes its own shard of the trainable weights and the optimizer
state with torch.distributed.checkpoint; rank 0 writes the loop's state, the ledger and the RNG state beside them.

The layout is train/checkpoint.py's (checkpoints/step-NNNNNNNN/ with state.json and state.pt, so the loop's resume
reads it unchanged) plus shards/ (DCP files, one per rank, and rank 0's .metadata); weights.safetensors is empty,
as the weights live in shards/. The directory appears by one rename after every rank has written, so a run killed
at any moment finds the whole checkpoint or none of it. Several nodes need the run directory on a shared filesystem.
A LoRA checkpoint holds the adapters only (the frozen base is reloaded from the model), like the unsharded one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch

from .. import atomic, dist
from ..sharding import is_deepspeed
from . import checkpoint


def _options(full: bool = False):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    # strict=False: the frozen base is not in the checkpoint; every trainable tensor is (dcp.load fails otherwise).
    return StateDictOptions(ignore_frozen_params=True, full_state_dict=full, cpu_offload=full, strict=False)


def _optimizer(stepper):
    return getattr(stepper.optimizer, "optimizer", stepper.optimizer)  # under accelerate's AcceleratedOptimizer


def save(run, stepper, state: dict, ledger, governor, cfg) -> Path:
    """Collective: every rank calls it at the same step."""
    import torch.distributed.checkpoint as dcp
    from safetensors.torch import save_file
    from torch.distributed.checkpoint.state_dict import get_state_dict

    step = state["step"]
    root = Path(run.path) / "checkpoints"
    tmp = None
    if run.writer:
        root.mkdir(parents=True, exist_ok=True)
        tmp = tempfile.mkdtemp(dir=root, prefix=f".step-{step:08d}.", suffix=".tmp")
    tmp = Path(dist.broadcast_object(tmp))
    if is_deepspeed(stepper.model):  # its engine writes its own per-rank files (accelerate's save_state)
        stepper.accelerator.save_state(str(tmp / "shards"))
    else:
        model_sd, optim_sd = get_state_dict(stepper.model, _optimizer(stepper), options=_options())
        dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(tmp / "shards"))
    final = root / f"step-{step:08d}"
    if run.writer:
        try:
            save_file({}, str(tmp / "weights.safetensors"))
            torch.save({"method": {}, "rng": torch.get_rng_state()}, tmp / "state.pt")
            atomic.write_json(tmp / "state.json", {"loop": dict(state), "ledger": ledger.to_dict(),
                                                    "governor": governor.state_dict(), "sharded": True})
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        for old in checkpoint.checkpoint_dirs(run.path)[:-max(1, cfg.train.keep_checkpoints)]:
            shutil.rmtree(old, ignore_errors=True)
        run.write_json("ledger.json", ledger.to_dict())
    dist.barrier()  # no rank moves on (or is killed by its launcher) before the checkpoint is in place
    return final


def restore(run_dir: Path, stepper) -> None:
    """Load the newest checkpoint's shards into the (already sharded) model and optimizer. Collective."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    path = checkpoint.checkpoint_dirs(run_dir)[-1] / "shards"
    if is_deepspeed(stepper.model):
        stepper.accelerator.load_state(str(path))
        return
    optimizer = _optimizer(stepper)
    model_sd, optim_sd = get_state_dict(stepper.model, optimizer, options=_options())  # optimizer state laid out
    loaded = {"model": model_sd, "optim": optim_sd}
    dcp.load(loaded, checkpoint_id=str(path))
    set_state_dict(stepper.model, optimizer, model_state_dict=loaded["model"], optim_state_dict=loaded["optim"],
                   options=_options())


def is_sharded_checkpoint(run_dir: Path) -> bool:
    dirs = checkpoint.checkpoint_dirs(run_dir)
    return bool(dirs) and (dirs[-1] / "shards").is_dir()


class GatheredResult:
    """The fine-tune of a sharded model, gathered whole on rank 0, saved like the unsharded result."""

    def __init__(self, stepper):
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        self.model = stepper.unwrapped
        if is_deepspeed(stepper.model):  # gathered by accelerate (ZeRO-3: the 16-bit weights)
            self.state_dict = stepper.accelerator.get_state_dict(stepper.model)
        else:
            self.state_dict = get_model_state_dict(stepper.model, options=_options(full=True))  # collective

    def save_pretrained(self, directory: Path, tokenizer) -> str:
        kind = "adapter" if hasattr(self.model, "peft_config") else "model"
        self.model.save_pretrained(directory, state_dict=self.state_dict, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(directory)
        return kind


def gather_result(stepper):
    """A GatheredResult for a sharded model (every rank must call this), None otherwise."""
    from ..sharding import is_sharded

    return GatheredResult(stepper) if is_sharded(stepper.model) else None
