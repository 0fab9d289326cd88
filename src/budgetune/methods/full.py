"""Full fine-tuning with AdamW: every weight trains; fp32 master weights and two fp32 moments per parameter."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..lazy import lazy
from . import whole_model
from .base import FirstOrderStepper, TrainContext, save_full_model

torch = lazy("torch")

NAME = "full"
DEFAULT_LR = 2e-5


@dataclass(kw_only=True)
class Config:
    """Full fine-tuning has no options of its own; learning rate and checkpointing are training options."""


class FullStepper(FirstOrderStepper):
    def save_pretrained(self, directory: Path, tokenizer) -> str:
        return save_full_model(self.unwrapped, directory, tokenizer)


def prepare(model, cfg: Config, ctx: TrainContext) -> FullStepper:
    for p in model.parameters():
        p.requires_grad_(True)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=DEFAULT_LR, weight_decay=ctx.weight_decay)
    return FullStepper(model, optimizer, ctx)


def memory(spec, shape, cfg: Config):
    """fp32 or bf16 weights, gradients and two Adam moments in the weights' dtype (AMP: fp32 weights and states,
    bf16 compute, 16 B/param before activations; Rajbhandari et al. 2020 §3.1), every layer's activations saved
    for weight gradients, the autocast bf16 weight cache under AMP; peak of the backward and optimizer phases."""
    from ..memory import terms as T

    wfmt, _, _, gfmt = T.precision_dtypes(shape.precision)
    matmul = spec.n_layers * sum(l.in_features * l.out_features for l in spec.layer_linears) + spec.vocab * spec.hidden
    acts = T.training_activation_bytes(spec, shape, base_trains=True)
    return T.first_order_peak(spec, shape, weights=T.weight_bytes(spec.n_params, wfmt), n_trainable=spec.n_params,
                              state_fmt=gfmt, activations=acts,
                              cache=T.autocast_cache_bytes(matmul, shape.precision),
                              notes=(f"full AdamW, {shape.precision}",))


# The planner's view of this method (budgetune.planner, budgetune.flop_plan): its rank among methods by quality,
# the kind of step it runs for FLOPs, and how the tracer sets a model up for it.

QUALITY_RANK = 0  # the reference every other method is compared with
TRACED_PLAN_OPTIONS: dict = {}  # `plan` traces it, with these options, for an architecture without an analytic spec
SHARDABLE = True


flop_kinds = whole_model.flop_kinds


trace_setup = whole_model.trace_setup
