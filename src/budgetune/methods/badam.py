"""BAdam: block-coordinate Adam (Luo et al. 2024, "BAdam: A Memory Efficient Full Parameter Optimization Method
for Large Language Models"). The decoder layers are cut into D blocks; one block trains at a time with Adam for K
steps, then the next; the optimizer state exists for the active block only and is dropped at each switch. Memory
≈ weights + (gradients + two moments) of one block: the paper's 2M + 16M/D GB for bf16 weights and fp32 states.

Written here rather than taken from the `badam` package: that package expects 16-bit weights with fp32 copies of
the active block (it warns on fp32 and would keep a duplicate), prints on every switch, and its state_dict keeps
neither the active block nor the step, so a resumed run would restart the block schedule.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..lazy import lazy
from ..memory import terms as T
from ..memory.terms import MemoryBreakdown, Shape
from . import blockwise
from .base import FirstOrderStepper, TrainContext, save_full_model
from .spec_parts import formats, layer_matrix_params, tied_embedding_grad_bytes

torch = lazy("torch")

NAME = "badam"
DEFAULT_LR = 1e-4
ORDERS = ("descending", "ascending", "random")


@dataclass(kw_only=True)
class Config:
    layers_per_block: int = 1  # decoder layers per block (D = layers / layers_per_block)
    switch_every: int = 10  # optimizer steps K spent on a block before the next (the paper uses 50–100)
    order: str = "descending"  # block order in each cycle: descending (top first, the paper's default), ascending, random
    include_embedding: bool = False  # make the embedding (and a tied head) a block of its own
    include_head: bool = False  # make the final norm and an untied head a block of their own

    def __post_init__(self):
        if int(self.layers_per_block) < 1:
            raise UserError(f"badam option layers_per_block={self.layers_per_block} gives zero blocks; use 1 or more")
        if int(self.switch_every) < 1:
            raise UserError(f"badam option switch_every={self.switch_every} must be at least 1 step")
        if self.order not in ORDERS:
            raise UserError(f"badam option order={self.order!r} is not known; use one of {', '.join(ORDERS)}")


def block_at(step: int, n_blocks: int, switch_every: int, order: str, seed: int) -> int:
    """The block active at optimizer step `step`: a pure function of the step, so resuming continues the schedule."""
    slot = step // switch_every
    cycle, position = divmod(slot, n_blocks)
    if order == "ascending":
        return position
    if order == "descending":
        return n_blocks - 1 - position
    perm = torch.randperm(n_blocks, generator=torch.Generator().manual_seed(seed * 1_000_003 + cycle))
    return int(perm[position])


class BAdamStepper(FirstOrderStepper):
    def __init__(self, model, cfg: Config, ctx: TrainContext, blocks: list[list[str]]):
        self.cfg, self.ctx, self.blocks = cfg, ctx, blocks
        self.step_count, self.active = 0, -1
        blockwise.activate(model, set())
        self.weight_decay = ctx.weight_decay
        # accelerator.prepare would keep every optimizer it has seen (and its state) alive; one process only.
        self.accelerator = ctx.accelerator
        self.recompute = ctx.gradient_checkpointing
        if self.recompute:
            from .base import enable_checkpointing

            enable_checkpointing(model)
        self.model = self.accelerator.prepare_model(model)
        self.optimizer = None
        self._profile = None
        self._switch(self._block(0))

    def _block(self, step: int) -> int:
        return block_at(step, len(self.blocks), int(self.cfg.switch_every), self.cfg.order, self.ctx.seed)

    def _switch(self, block: int) -> None:
        params = blockwise.activate(self.unwrapped, set(self.blocks[block]))
        self.optimizer = None  # drop the previous block's moments before allocating the next
        self.optimizer = torch.optim.AdamW(params, lr=DEFAULT_LR, weight_decay=self.weight_decay)
        self.active = block
        self.invalidate_profile()

    def step(self, micro_batches, lr):
        block = self._block(self.step_count)
        if block != self.active:
            self._switch(block)
        result = super().step(micro_batches, lr)
        self.step_count += 1
        return result

    def cost(self, micro_batches) -> float:
        block = self._block(self.step_count)
        if block == self.active:
            return super().cost(micro_batches)
        from ..flop_profile import profile_with
        from ..flops import train_step_flops

        profile = profile_with(self.unwrapped, set(self.blocks[block]))  # the block step() will switch to
        return sum(train_step_flops(profile, *mb["input_ids"].shape, recompute=self.recompute) for mb in micro_batches)

    def state_dict(self) -> dict:
        return {"step": self.step_count, "active": self.active, "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step"])
        self._switch(int(state["active"]))
        self.optimizer.load_state_dict(state["optimizer"])

    def trainable_state_dict(self):
        return blockwise.all_weights(self.unwrapped)  # every block changes over the run

    def save_pretrained(self, directory: Path, tokenizer) -> str:
        return save_full_model(self.unwrapped, directory, tokenizer)


def blocks_of(model, cfg: Config) -> list[list[str]]:
    wanted = {"layers": True, "embedding": bool(cfg.include_embedding), "head": bool(cfg.include_head)}
    groups = blockwise.layer_groups(model, int(cfg.layers_per_block), what="badam option layers_per_block")
    return [names for kind, names in groups if wanted[kind]]


def prepare(model, cfg: Config, ctx: TrainContext) -> BAdamStepper:
    blockwise.single_process(ctx, "badam")
    return BAdamStepper(model, cfg, ctx, blocks_of(model, cfg))


def group_peak(spec, shape: Shape, kind: str, params: int, layers: int, above: int, weights: int) -> MemoryBreakdown:
    """The step peak while one group trains. Its own layers save what a trained layer saves; the frozen layers
    above it only what the input gradient needs (a frozen linear keeps no input); the embedding group
    backpropagates through every layer, the head group through none."""
    head_trains = kind == "head" or (kind == "embedding" and spec.tied_embeddings)
    span = layers + above
    acts = T.training_activation_bytes(spec, shape, base_trains=False, grad_layers=span, head_trains=head_trains) \
        if span else T.logits_bytes(spec, shape, head_trains=head_trains)
    if layers and not shape.gradient_checkpointing:
        acts += (T.activation_bytes(spec, shape, base_trains=True, grad_layers=layers)
                 - T.activation_bytes(spec, shape, base_trains=False, grad_layers=layers))
    acts += frozen_cast_bytes(spec, shape, layers + above)
    _, gfmt = formats(shape.precision)
    peak = T.first_order_peak(spec, shape, weights=weights, n_trainable=params, state_fmt=gfmt, activations=acts)
    return peak.plus(other=tied_embedding_grad_bytes(spec, shape.precision, trains=kind == "embedding"))


def frozen_cast_bytes(spec, shape: Shape, span: int) -> int:
    """Under AMP the fp32 weights each matmul casts to bf16 stay alive until backward: the trained group's in the
    autocast cache, the frozen layers' above it and the head's as tensors autograd saves to compute the input
    gradient (measured by the tracer: 2 B per matrix parameter of the `span` layers backward runs through, and of
    the head, trained or not). With checkpointing only the head's cast and one recomputed layer's remain."""
    if shape.precision != "amp_bf16":
        return 0
    span = min(span, 1) if shape.gradient_checkpointing else span
    return 2 * (span * layer_matrix_params(spec) + spec.vocab * spec.hidden)


def worst_group(spec, shape: Shape, groups: list[tuple[str, int, int]], weights: int) -> tuple[MemoryBreakdown, int]:
    """The step peak of the group whose training step needs the most memory, and that group's parameters."""
    best, seen = None, 0
    for kind, params, layers in groups:
        # Layers between the group and the loss, through which backward must run (the embedding: all of them).
        above = {"layers": spec.n_layers - seen - layers, "embedding": spec.n_layers, "head": 0}[kind]
        peak = group_peak(spec, shape, kind, params, layers, above, weights)
        best = (peak, params) if best is None or peak.total > best[0].total else best
        seen += layers
    return best


def memory(spec, shape: Shape, cfg: Config) -> MemoryBreakdown:
    """All weights; gradients and Adam moments of one block only (BAdam §3: 2M + 16M/D GB for bf16 weights with
    fp32 states); activations from the active block up. Reported for the block that needs the most."""
    from .blockwise import block_sizes

    wfmt, _ = formats(shape.precision)
    groups = block_sizes(spec, int(cfg.layers_per_block), embedding=bool(cfg.include_embedding),
                         head=bool(cfg.include_head))
    peak, _ = worst_group(spec, shape, groups, T.weight_bytes(spec.n_params, wfmt))
    return MemoryBreakdown(**{k: v for k, v in peak.to_dict().items() if k != "total"},
                           notes=(f"{len(groups)} blocks; the largest-footprint block shown",))


# The planner's view of this method (budgetune.planner, budgetune.flop_plan): its rank among methods by quality,
# the kind of step it runs for FLOPs, and how the tracer sets a model up for it.

QUALITY_RANK = 4  # trails full fine-tuning slightly (Luo et al. 2024)
RELIEVES = ("gradients",)
UNSHARDABLE = "it switches the trainable block during the run, which a sharded optimizer fixed at wrap time cannot"
PLAN_OPTIONS = [{}]


def flop_kinds(spec, cfg):
    from ..flop_plan import block_steps

    return block_steps(spec, int(cfg.layers_per_block), bottom=bool(cfg.include_embedding),
                       top=bool(cfg.include_head))


def trace_setup(model, cfg, shape):
    """Its lowest block active: the block whose step needs the most (backward runs through every layer above)."""
    blockwise.activate(model, set(blocks_of(model, cfg or Config())[0]))
    return model
