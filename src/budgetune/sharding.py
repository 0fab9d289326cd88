"""Sharded training: which sharding a run uses, the accelerate plugin that runs it, and the model wrapping.

The sharding comes from `--sharding` or, left at `auto`, from the accelerate config the user launched with
(`accelerate launch` exports it as ACCELERATE_USE_FSDP / FSDP_* and ACCELERATE_USE_DEEPSPEED /
ACCELERATE_DEEPSPEED_ZERO_STAGE). The names are the planner's (memory/terms.py SHARDINGS):
- fsdp:  FSDP2 `fully_shard` of every decoder layer and the root (weights, gradients, optimizer states over ranks);
- zero2: DeepSpeed ZeRO stage 2 (gradients and optimizer states), zero3: stage 3 (also weights), both through
  accelerate's DeepSpeedPlugin (DeepSpeed needs CUDA GPUs and the `deepspeed` package).

On GPUs accelerate applies FSDP2 itself (FullyShardedDataParallelPlugin(fsdp_version=2)). On CPU accelerate runs
several processes as MULTI_CPU and silently ignores an FSDP plugin (accelerate 1.15 state.py: FSDP only for GPU
kinds), so there the same wrapping is done here with torch's `fully_shard` over the gloo process group.
"""

from __future__ import annotations

import importlib.util
import os

from .errors import UserError

CHOICES = ("auto", "none", "fsdp", "zero2", "zero3")
# Which methods run sharded, and why the others cannot, is each method module's declaration (SHARDABLE = True, or
# UNSHARDABLE = "the reason"), named in the refusal.


def _true(name: str) -> bool:
    return os.environ.get(name, "false").strip().lower() in ("1", "true", "yes")


def from_accelerate_env() -> str:
    """The sharding named by the accelerate config this process was launched with ('none' without one)."""
    if _true("ACCELERATE_USE_DEEPSPEED"):
        stage = os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2")
        if stage not in ("2", "3"):
            raise UserError(f"the accelerate config asks for DeepSpeed ZeRO stage {stage}; budgetune plans and runs "
                            f"stages 2 and 3 (set zero_stage: 2 or 3 in the accelerate config)")
        return f"zero{stage}"
    if _true("ACCELERATE_USE_FSDP"):
        strategy = os.environ.get("FSDP_SHARDING_STRATEGY", "FULL_SHARD").upper()
        reshard = os.environ.get("FSDP_RESHARD_AFTER_FORWARD", "true").lower()
        if strategy in ("NO_SHARD", "3") or reshard == "no_shard":
            return "none"
        if strategy in ("SHARD_GRAD_OP", "2") or reshard in ("false", "shard_grad_op"):
            return "zero2"  # weights kept whole after forward: gradients and optimizer states sharded
        return "fsdp"
    return "none"


def resolve(requested: str | None) -> str:
    """The sharding a run really uses: --sharding, else the accelerate config it was launched with."""
    requested = (requested or "auto").lower()
    if requested not in CHOICES:
        raise UserError(f"train field 'sharding' is '{requested}'; use one of {', '.join(CHOICES)}")
    kind = from_accelerate_env() if requested == "auto" else requested
    if kind != "none" and "LOCAL_RANK" not in os.environ:
        raise UserError(f"sharding {kind} splits model states over processes, but this run was not started by a "
                        f"launcher; run it with `accelerate launch --num_processes N -m budgetune.cli run ...` or "
                        f"`torchrun --nproc_per_node N ...`, or drop --sharding")
    return kind


def check(method, kind: str, grad_accum: int = 1, *, shardable: list[str] | None = None) -> None:
    """Refuse, by name and with the reason, what cannot run sharded here. `method` is the method's module;
    `shardable` names the methods that can (for the hint)."""
    if kind == "none":
        return
    if not getattr(method, "SHARDABLE", False):
        why = getattr(method, "UNSHARDABLE", "it has no sharded implementation")
        hint = f"use --method {' or '.join(shardable)}, or " if shardable else "use "
        raise UserError(f"method '{method.NAME}' cannot run with sharding {kind}: {why}; {hint}"
                        f"--sharding none (data-parallel copies)")
    if kind in ("zero2", "zero3"):
        import torch

        if importlib.util.find_spec("deepspeed") is None:
            raise UserError(f"sharding {kind} runs on DeepSpeed, which is not installed; `pip install deepspeed` "
                            f"on a machine with CUDA GPUs, or use --sharding fsdp (FSDP2, no extra package)")
        if not torch.cuda.is_available():
            raise UserError(f"sharding {kind} runs on DeepSpeed, which needs CUDA GPUs (accelerate does not run "
                            f"DeepSpeed on CPU processes); use --sharding fsdp here")
        if grad_accum > 1:  # the loop skips gradient sync with no_sync(), which DeepSpeed refuses under ZeRO-2/3
            raise UserError(f"sharding {kind} with --grad-accum {grad_accum}: DeepSpeed's engine owns gradient "
                            f"accumulation, which budgetune does not hand it; use --grad-accum 1 with a larger "
                            f"--micro-batch-size, or --sharding fsdp")


def accelerator_kwargs(kind: str, *, grad_accum: int = 1) -> dict:
    """Plugins for accelerate.Accelerator(...). A plugin the user's accelerate config already describes is left to
    accelerate (it reads the config itself); --sharding without such a config builds one."""
    import torch

    if kind == "fsdp" and torch.cuda.is_available() and not _true("ACCELERATE_USE_FSDP"):
        from accelerate.utils import FullyShardedDataParallelPlugin

        return {"fsdp_plugin": FullyShardedDataParallelPlugin(
            fsdp_version=2, reshard_after_forward=True, auto_wrap_policy="transformer_based_wrap",
            state_dict_type="SHARDED_STATE_DICT", cpu_ram_efficient_loading=False)}
    if kind in ("zero2", "zero3") and not _true("ACCELERATE_USE_DEEPSPEED"):
        from accelerate.utils import DeepSpeedPlugin

        # zero3_save_16bit_model: accelerate gathers the result whole only with it (get_state_dict under ZeRO-3).
        return {"deepspeed_plugin": DeepSpeedPlugin(zero_stage=int(kind[-1]), gradient_accumulation_steps=grad_accum,
                                                    zero3_save_16bit_model=True)}
    return {}


def _layer_classes(model) -> tuple[type, ...]:
    """The decoder-layer classes transformers marks as unsplittable (the units FSDP wraps one by one)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = set(getattr(base, "_no_split_modules", None) or [])
    return tuple({type(m) for m in base.modules() if type(m).__name__ in names})


def prepare(accelerator, model, optimizer, kind: str):
    """(model, optimizer) ready to train: accelerate's prepare, after FSDP2 wrapping where accelerate cannot."""
    import torch

    if kind != "fsdp" or torch.cuda.is_available():
        return accelerator.prepare(model, optimizer)
    from torch.distributed.fsdp import fully_shard

    names = {id(p): n for n, p in model.named_parameters()}
    layers = _layer_classes(model)
    for module in model.modules():
        if layers and isinstance(module, layers):
            fully_shard(module)
    fully_shard(model)
    # fully_shard swaps each parameter for a DTensor shard: point the optimizer at the new objects.
    params = dict(model.named_parameters())
    for group in optimizer.param_groups:
        group["params"] = [params[names[id(p)]] for p in group["params"]]
    return model, accelerator.prepare_optimizer(optimizer)


def is_sharded(model) -> bool:
    """True when the model's forward gathers weights from other ranks (every rank must run it in step)."""
    try:
        from torch.distributed.fsdp import FSDPModule
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP1
    except ImportError:  # torch built without distributed
        return False
    inner = getattr(model, "module", model)
    if isinstance(model, (FSDPModule, FSDP1)) or isinstance(inner, (FSDPModule, FSDP1)):
        return True
    return is_deepspeed(model)  # ZeRO-2 forwards need no gathering, but its optimizer state is per rank


def is_deepspeed(model) -> bool:
    return type(model).__name__ == "DeepSpeedEngine"
