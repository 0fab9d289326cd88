"""The contract every training method meets, and the first-order stepper most of them share.

A method is one module registered in methods/registry.py. It has:
- NAME, Config (a dataclass of its options, validated in __post_init__), DEFAULT_LR, and
  `prepare(model, cfg, ctx) -> Stepper`: what the one training loop drives (the loop has no method-specific code);
- its costs, which the planner (budgetune.planner) and budgetune.flop_plan ask for instead of naming methods:
  `memory(spec, shape, cfg) -> MemoryBreakdown` (its memory terms), `flop_kinds(spec, cfg) -> [flop_plan.StepKind]`
  (what trains in each kind of step it runs), FORWARD_ONLY = True for a zeroth-order step (two forward passes per
  sampled direction), QUALITY_RANK (lower is recommended first), PLAN_OPTIONS (option sets the planner tries;
  default [{}]) and RELIEVES (the memory terms it cuts against full fine-tuning, named in advice);
- optionally, the tracer's set-up (budgetune.planner.trace): `trace_setup(model, cfg, shape) -> model`, and where
  it differs from foreach AdamW `trace_optimizer(model, cfg, trainable)` and `trace_after_step(optimizer)`;
- optionally SHARDABLE = True (it runs under FSDP2 / ZeRO) or UNSHARDABLE = "why not", PRECISIONS and
  PRECISION_REASON (budgetune.precision), FROZEN_BASE = True (a base that never trains is loaded in bf16 under AMP), SWITCHABLE_ADAPTERS = True (peft
  adapters that the generation evaluation switches off to score the base model).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..flops import FlopProfile, profile_from_model, train_step_flops
from ..lazy import lazy
from ..loss import next_token_loss

torch = lazy("torch")


@dataclass
class StepResult:
    loss: float  # mean loss over this process's response tokens in the step
    flops: float  # FLOPs this process spent on the step
    tokens: int  # real (non-padding) tokens this process read


@dataclass
class TrainContext:
    """What the loop hands a method when it prepares a model."""

    accelerator: Any  # accelerate.Accelerator
    weight_decay: float = 0.0
    gradient_checkpointing: bool = False
    seed: int = 0
    precision: str = "fp32"  # budgetune.precision: fp32, amp_bf16 (autocast through the accelerator) or bf16
    extra: dict = field(default_factory=dict)


class Stepper(Protocol):
    model: torch.nn.Module  # the (possibly wrapped) model the loop evaluates

    def step(self, micro_batches: list[dict], lr: float) -> StepResult: ...

    def state_dict(self) -> dict: ...  # optimizer and method state; tensors and plain Python only

    def load_state_dict(self, state: dict) -> None: ...

    def trainable_state_dict(self) -> dict[str, torch.Tensor]: ...  # every parameter the method changes

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None: ...

    def save_pretrained(self, directory: Path, tokenizer) -> str: ...  # writes the result; returns its kind


def token_loss(model, batch: dict) -> tuple[torch.Tensor, int]:
    """Sum of next-token cross-entropy over the response tokens (labels != -100), and their count."""
    # use_cache=False: a no-grad forward (evaluation, zeroth-order probes) would otherwise hold every layer's K/V
    # until it returns, memory nothing reads.
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    loss, mask = next_token_loss(logits, batch["labels"])
    return loss, int(mask.sum())


def batch_tokens(batch: dict) -> int:
    return int(batch["attention_mask"].sum())


class FirstOrderStepper:
    """Forward/backward over the micro-batches with gradient accumulation, then one optimizer step.

    Gradients are synchronised across processes only on the last micro-batch (DDP `no_sync` on the others).
    """

    def __init__(self, model, optimizer, ctx: TrainContext):
        self.accelerator = ctx.accelerator
        self.recompute = ctx.gradient_checkpointing
        if self.recompute:
            enable_checkpointing(model)
        from ..sharding import prepare

        self.model, self.optimizer = prepare(self.accelerator, model, optimizer, ctx.extra.get("sharding", "none"))
        self._profile: FlopProfile | None = None

    @property
    def unwrapped(self):
        return self.accelerator.unwrap_model(self.model)

    def profile(self) -> FlopProfile:
        if self._profile is None:
            self._profile = profile_from_model(self.unwrapped)
        return self._profile

    def invalidate_profile(self) -> None:
        """Call when the trainable set changes (block-wise methods)."""
        self._profile = None

    def cost(self, micro_batches: list[dict]) -> float:
        """FLOPs the next step() on these micro-batches will charge, before it runs (the loop's budget check)."""
        return sum(train_step_flops(self.profile(), *mb["input_ids"].shape, recompute=self.recompute)
                   for mb in micro_batches)

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)

    def step(self, micro_batches: list[dict], lr: float) -> StepResult:
        self.model.train()
        self.set_lr(lr)
        total_loss, total_tokens, flops, seen = 0.0, 0, 0.0, 0
        n_label = sum(int((mb["labels"][:, 1:] != -100).sum()) for mb in micro_batches)
        for i, mb in enumerate(micro_batches):
            sync = i == len(micro_batches) - 1
            with nullcontext() if sync else self.accelerator.no_sync(self.model):
                loss_sum, n = token_loss(self.model, mb)
                self.accelerator.backward(loss_sum / max(1, n_label))
            total_loss += float(loss_sum.detach())
            total_tokens += n
            seen += batch_tokens(mb)
            b, s = mb["input_ids"].shape
            flops += train_step_flops(self.profile(), b, s, recompute=self.recompute)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return StepResult(total_loss / max(1, total_tokens), flops, seen)

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in self.unwrapped.named_parameters() if p.requires_grad}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        params = dict(self.unwrapped.named_parameters())
        with torch.no_grad():
            for name, value in state.items():
                params[name].copy_(value)


def enable_checkpointing(model) -> None:
    """Gradient checkpointing that also works with a frozen embedding (peft / frozen-base methods)."""
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if hasattr(model, "enable_input_require_grads"):
        model.enable_input_require_grads()


def save_full_model(model, directory: Path, tokenizer) -> str:
    """A full model that `AutoModelForCausalLM.from_pretrained` opens (safetensors)."""
    model.save_pretrained(directory, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
    return "model"
