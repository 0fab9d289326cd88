"""HiFT: hierarchical full-parameter fine-tuning (Liu et al. 2024, "HiFT: A Hierarchical Full Parameter
Fine-Tuning Strategy"). Every parameter trains, but one group of layers per step, in a fixed schedule (bottom to
top, top to bottom, or a random order each cycle); the learning rate changes only when a cycle over all groups ends
(the paper's delayed update). Each group keeps its Adam moments across cycles; on a GPU the inactive groups' moments
wait in host memory, so device memory holds the weights plus one group's gradients and moments. On a CPU-only
machine host and device are the same memory, so only the gradient and activation terms shrink.

Written here: the authors' code is a research trainer, not a package.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..lazy import lazy
from ..memory import terms as T
from ..memory.terms import MemoryBreakdown, Shape
from . import blockwise
from .base import FirstOrderStepper, TrainContext, enable_checkpointing, save_full_model
from .spec_parts import formats, state_format

torch = lazy("torch")

NAME = "hift"
DEFAULT_LR = 1e-4
ORDERS = ("bottom2up", "top2down", "random")


@dataclass(kw_only=True)
class Config:
    layers_per_group: int = 6  # decoder layers per group; the embedding and the head/final norm are groups of their own
    order: str = "top2down"  # group schedule: bottom2up, top2down or random (a new permutation each cycle)

    def __post_init__(self):
        if int(self.layers_per_group) < 1:
            raise UserError(f"hift option layers_per_group={self.layers_per_group} gives zero groups; use 1 or more")
        if self.order not in ORDERS:
            raise UserError(f"hift option order={self.order!r} is not known; use one of {', '.join(ORDERS)}")


def group_at(step: int, n_groups: int, order: str, seed: int) -> int:
    cycle, position = divmod(step, n_groups)
    if order == "bottom2up":
        return position
    if order == "top2down":
        return n_groups - 1 - position
    perm = torch.randperm(n_groups, generator=torch.Generator().manual_seed(seed * 1_000_003 + cycle))
    return int(perm[position])


def _move_state(optimizer, device) -> None:
    for state in optimizer.state.values():
        for key, value in state.items():
            if torch.is_tensor(value) and value.device != device and key != "step":
                state[key] = value.to(device, non_blocking=True)


class HiFTStepper(FirstOrderStepper):
    def __init__(self, model, cfg: Config, ctx: TrainContext, groups: list[list[str]]):
        self.cfg, self.ctx, self.groups = cfg, ctx, groups
        self.accelerator = ctx.accelerator
        self.recompute = ctx.gradient_checkpointing
        blockwise.activate(model, set())
        if self.recompute:
            enable_checkpointing(model)
        self.model = self.accelerator.prepare_model(model)
        self.optimizers: dict[int, torch.optim.Optimizer] = {}
        self.optimizer = None
        self.step_count, self.cycle_lr, self._profile = 0, None, None
        self.device = next(model.parameters()).device
        self.offload = self.device.type == "cuda"

    def _optimizer_for(self, group: int) -> torch.optim.Optimizer:
        params = blockwise.activate(self.unwrapped, set(self.groups[group]))
        if group not in self.optimizers:
            self.optimizers[group] = torch.optim.AdamW(params, lr=DEFAULT_LR, weight_decay=self.ctx.weight_decay)
        return self.optimizers[group]

    def step(self, micro_batches, lr):
        group = group_at(self.step_count, len(self.groups), self.cfg.order, self.ctx.seed)
        if self.step_count % len(self.groups) == 0 or self.cycle_lr is None:
            self.cycle_lr = lr  # delayed learning-rate update: one value per cycle over all groups
        if self.optimizer is not None and self.offload:
            _move_state(self.optimizer, torch.device("cpu"))
        self.optimizer = self._optimizer_for(group)
        if self.offload:
            _move_state(self.optimizer, self.device)
        self.invalidate_profile()
        result = super().step(micro_batches, self.cycle_lr)
        self.step_count += 1
        return result

    def cost(self, micro_batches) -> float:
        from ..flop_profile import profile_with
        from ..flops import train_step_flops

        group = group_at(self.step_count, len(self.groups), self.cfg.order, self.ctx.seed)
        profile = profile_with(self.unwrapped, set(self.groups[group]))  # the group step() will train
        return sum(train_step_flops(profile, *mb["input_ids"].shape, recompute=self.recompute) for mb in micro_batches)

    def state_dict(self) -> dict:
        return {"step": self.step_count, "cycle_lr": self.cycle_lr,
                "optimizers": {int(g): opt.state_dict() for g, opt in self.optimizers.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step"])
        self.cycle_lr = state.get("cycle_lr")
        self.optimizers = {}
        for group, saved in state["optimizers"].items():
            self._optimizer_for(int(group)).load_state_dict(saved)
            if self.offload:
                _move_state(self.optimizers[int(group)], torch.device("cpu"))
        blockwise.activate(self.unwrapped, set())
        self.optimizer = None

    def trainable_state_dict(self):
        return blockwise.all_weights(self.unwrapped)

    def save_pretrained(self, directory: Path, tokenizer) -> str:
        return save_full_model(self.unwrapped, directory, tokenizer)


def prepare(model, cfg: Config, ctx: TrainContext) -> HiFTStepper:
    blockwise.single_process(ctx, "hift")
    groups = [names for _, names in blockwise.layer_groups(model, int(cfg.layers_per_group),
                                                           what="hift option layers_per_group")]
    return HiFTStepper(model, cfg, ctx, groups)


def _groups(spec, cfg: Config):
    from .blockwise import block_sizes

    return block_sizes(spec, int(cfg.layers_per_group), embedding=True, head=True)


def memory(spec, shape: Shape, cfg: Config) -> MemoryBreakdown:
    """Device memory: all weights, one group's gradients and Adam moments (the others wait in host memory, HiFT §3),
    activations from the active group up; the group with the largest footprint is shown. host_bytes() gives the
    offloaded moments (on a CPU-only machine they sit in the same memory)."""
    from .badam import worst_group

    wfmt, _ = formats(shape.precision)
    peak, _ = worst_group(spec, shape, _groups(spec, cfg), T.weight_bytes(spec.n_params, wfmt))
    return MemoryBreakdown(**{k: v for k, v in peak.to_dict().items() if k != "total"},
                           notes=((f"{len(_groups(spec, cfg))} groups; plus {host_bytes(spec, shape, cfg) / 2**20:.0f} "
                                   f"MiB of offloaded moments in host memory"),))


def host_bytes(spec, shape: Shape, cfg: Config) -> int:
    """Adam moments of the inactive groups, offloaded to host memory once every group has trained (the group that
    memory() shows counted as the active one)."""
    from .badam import worst_group

    wfmt, _ = formats(shape.precision)
    _, active = worst_group(spec, shape, _groups(spec, cfg), T.weight_bytes(spec.n_params, wfmt))
    total = sum(p for _, p, _ in _groups(spec, cfg))
    return T.adam_state_bytes(total - active, state_format(shape.precision))


# The planner's view of this method (budgetune.planner, budgetune.flop_plan): its rank among methods by quality,
# the kind of step it runs for FLOPs, and how the tracer sets a model up for it.

QUALITY_RANK = 5  # trails full fine-tuning slightly (Liu et al. 2024)
RELIEVES = ("gradients",)
UNSHARDABLE = "it switches the trainable group during the run, which a sharded optimizer fixed at wrap time cannot"
PLAN_OPTIONS = [{}]


def flop_kinds(spec, cfg):
    from ..flop_plan import block_steps

    return block_steps(spec, int(cfg.layers_per_group), bottom=True, top=True)
