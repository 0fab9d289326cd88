"""LoRA through peft: frozen base, trainable low-rank adapters A·B on the chosen linear layers (Hu et al. 2021)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from ..lazy import lazy
from .base import FirstOrderStepper, TrainContext

torch = lazy("torch")

NAME = "lora"
SWITCHABLE_ADAPTERS = True  # peft adapters: the base model is generated with them switched off
FROZEN_BASE = True  # the base never trains: under amp_bf16 it is loaded in bf16 (budgetune.precision.load_dtype)
DEFAULT_LR = 2e-4

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass(kw_only=True)
class Config:
    r: int = 16  # adapter rank
    alpha: float = 32.0  # scaling numerator: the update is (alpha / r)·B·A
    dropout: float = 0.0  # dropout on the adapter input
    target_modules: list = field(default_factory=lambda: list(ALL_LINEAR))  # linear layer names to adapt

    def __post_init__(self):
        if isinstance(self.target_modules, str):
            self.target_modules = [t for t in self.target_modules.split(",") if t]
        if int(self.r) < 1:
            raise UserError(f"lora option r={self.r} must be at least 1; give a rank like r=8 or r=16")
        if not 0 <= float(self.dropout) < 1:
            raise UserError(f"lora option dropout={self.dropout} must be in [0, 1)")
        if not self.target_modules:
            raise UserError("lora option target_modules is empty; name linear layers, e.g. q_proj,v_proj")


def _adaptable(model) -> dict[str, tuple[int, int]]:
    """(in, out) of every layer peft can adapt: nn.Linear and transformers' Conv1D (GPT-2's projections)."""
    from transformers.pytorch_utils import Conv1D

    return {n: (m.in_features, m.out_features) if isinstance(m, torch.nn.Linear) else tuple(m.weight.shape)
            for n, m in model.named_modules() if isinstance(m, (torch.nn.Linear, Conv1D))}


def lora_config(cfg: Config, model):
    from peft import LoraConfig

    dims = _adaptable(model)
    names = {n.rsplit(".", 1)[-1] for n in dims}
    missing = [t for t in cfg.target_modules if t not in names]
    if missing:
        raise UserError(f"lora option target_modules names {missing}, which the model does not have; "
                        f"its linear layers are {sorted(names)}")
    smallest = min(min(d) for n, d in dims.items() if n.rsplit(".", 1)[-1] in cfg.target_modules)
    if cfg.r > smallest:
        raise UserError(f"lora option r={cfg.r} is larger than the smallest adapted layer dimension ({smallest}); "
                        f"use r <= {smallest}")
    return LoraConfig(r=int(cfg.r), lora_alpha=float(cfg.alpha), lora_dropout=float(cfg.dropout),
                      target_modules=list(cfg.target_modules), task_type="CAUSAL_LM")


class LoraStepper(FirstOrderStepper):
    def save_pretrained(self, directory: Path, tokenizer) -> str:
        self.unwrapped.save_pretrained(directory, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(directory)
        return "adapter"


def prepare(model, cfg: Config, ctx: TrainContext) -> LoraStepper:
    from peft import get_peft_model

    torch.manual_seed(ctx.seed)  # adapter initialisation is random: make it repeatable
    peft_model = get_peft_model(model, lora_config(cfg, model))
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=DEFAULT_LR, weight_decay=ctx.weight_decay)
    return LoraStepper(peft_model, optimizer, ctx)


def adapter_params(spec, cfg: Config) -> int:
    """A (r×in) and B (out×r) on every targeted linear of every decoder layer (Hu et al. 2021)."""
    return spec.n_layers * sum(int(cfg.r) * (spec.linear(t).in_features + spec.linear(t).out_features)
                               for t in cfg.target_modules)


def memory(spec, shape, cfg: Config):
    """Frozen base (fp32, or bf16 under AMP/bf16: a frozen weight needs no fp32 master), fp32 adapters with their
    gradients and Adam moments (peft keeps adapters in fp32), frozen-base activations plus the adapters' own."""
    from ..memory import terms as T

    base_fmt = "fp32" if shape.precision == "fp32" else "bf16"
    n_adapters = adapter_params(spec, cfg)
    adapters = T.Adapters(int(cfg.r), tuple(cfg.target_modules))
    acts = T.training_activation_bytes(spec, shape, base_trains=False, adapters=adapters)
    weights = T.weight_bytes(spec.n_params, base_fmt) + T.weight_bytes(n_adapters, "fp32")
    return T.first_order_peak(spec, shape, weights=weights, n_trainable=n_adapters, state_fmt="fp32",
                              activations=acts, cache=T.autocast_cache_bytes(n_adapters, shape.precision),
                              notes=(f"LoRA r={cfg.r} on {','.join(cfg.target_modules)}",))


# The planner's view of this method (budgetune.planner, budgetune.flop_plan): its rank among methods by quality,
# the kind of step it runs for FLOPs, and how the tracer sets a model up for it.

QUALITY_RANK = 3  # trails full fine-tuning slightly (Biderman et al. 2024, "LoRA Learns Less and Forgets Less")
RELIEVES = ("optimizer", "gradients")
SHARDABLE = True
PLAN_OPTIONS = [{"r": 16, "target_modules": "all"}, {"r": 64, "target_modules": "all"}]  # "all": the spec's linears
TRACED_PLAN_OPTIONS = {"r": 16, "target_modules": "all"}  # `plan` traces it for an architecture without a spec


def flop_kinds(spec, cfg):
    from ..flop_plan import adapter_step

    return [adapter_step(cfg)]


def trace_setup(model, cfg, shape):
    """peft's wrap on the meta device; without options, rank 16 on every linear layer inside the decoder layers."""
    from peft import get_peft_model

    if cfg is None:  # every linear layer inside the decoder layers (any architecture)
        names = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                        if isinstance(m, torch.nn.Linear) and (".layers." in n or ".h." in n)})
        cfg = Config(r=16, target_modules=names)
    with torch.device("meta"):
        return get_peft_model(model, lora_config(cfg, model))
