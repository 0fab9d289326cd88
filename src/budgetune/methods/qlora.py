"""QLoRA (Dettmers et al. 2023): the base model's linear layers frozen in 4-bit NF4 with double-quantised scales
(bitsandbytes through transformers), LoRA adapters on top trained in float32 (peft). On CPU the 4-bit matmuls
dequantise to float32 compute; on CUDA the same path runs with bitsandbytes' kernels."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from ..lazy import lazy
from ..memory import terms as T
from ..memory.terms import MemoryBreakdown, Shape
from . import lora
from .base import FirstOrderStepper, TrainContext

torch = lazy("torch")

NAME = "qlora"
SWITCHABLE_ADAPTERS = True  # peft adapters: the base model is generated with them switched off
# prepare_model_for_kbit_training keeps every non-quantised weight and the adapters in fp32: pure bf16 is not what
# would run.
PRECISIONS = ("fp32", "amp_bf16")
PRECISION_REASON = "peft keeps its non-quantised weights and adapters in fp32"
DEFAULT_LR = 2e-4
QUANT_BLOCK = 64  # NF4 block size: one absmax per 64 weights (Dettmers et al. 2023)


@dataclass(kw_only=True)
class Config:
    r: int = 16  # adapter rank
    alpha: float = 32.0  # scaling numerator: the update is (alpha / r)·B·A
    dropout: float = 0.0  # dropout on the adapter input
    target_modules: list = field(default_factory=lambda: list(lora.ALL_LINEAR))  # linear layers to adapt
    quant_type: str = "nf4"  # 4-bit data type of the frozen base: nf4 or fp4
    double_quant: bool = True  # quantise the quantisation constants too (≈0.37 → 0.127 bit/param)

    def __post_init__(self):
        lora.Config.__post_init__(self)
        if self.quant_type not in ("nf4", "fp4"):
            raise UserError(f"qlora option quant_type={self.quant_type!r} is not known; use nf4 or fp4")


def load_kwargs(cfg: Config, precision: str | None = None) -> dict:
    """How the loop must load the base model: 4-bit, computing its matmuls in the run's precision (bf16 under
    amp_bf16, float32 under fp32), so `--precision fp32` on a GPU computes in fp32 as asked. None: as `auto`
    resolves on this machine (amp_bf16 on CUDA; fp32 on CPU, where bf16 4-bit matmuls are ~50× slower)."""
    from transformers import BitsAndBytesConfig

    from .. import precision as P

    precision = precision or P.resolve("auto", cuda=torch.cuda.is_available())
    compute = torch.bfloat16 if precision == "amp_bf16" else torch.float32
    return {"quantization_config": BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type=cfg.quant_type, bnb_4bit_use_double_quant=bool(cfg.double_quant),
        bnb_4bit_compute_dtype=compute)}


def is_quantized(model) -> bool:
    return bool(getattr(model, "is_loaded_in_4bit", False))


def _keep_training_layout(model) -> None:
    """Stop bitsandbytes (0.50) from repacking 4-bit weights for CPU inference.

    On a CPU with AVX512-BF16, the first forward in eval mode without gradients (an evaluation) permanently
    converts each Linear4bit weight to an inference layout, after which every matmul, in training too, runs
    `gemv_4bit`, which has no autograd formula: gradients through the frozen base come out wrong, silently (torch
    only warns), and the adapters below the top stop learning. Evaluation is a little slower without the repack.
    """
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


class QLoraStepper(FirstOrderStepper):
    def save_pretrained(self, directory: Path, tokenizer) -> str:
        self.unwrapped.save_pretrained(directory, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(directory)
        return "adapter"


def prepare(model, cfg: Config, ctx: TrainContext) -> QLoraStepper:
    from peft import get_peft_model, prepare_model_for_kbit_training

    if not is_quantized(model):
        raise UserError("qlora needs the base model loaded in 4 bit; load it with "
                        "budgetune.models.load_model(..., **qlora.load_kwargs(cfg)) (the training loop does this)")
    # Freezes the base and keeps the remaining float weights in float32; checkpointing, when asked, is turned on
    # by FirstOrderStepper as for every first-order method.
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    _keep_training_layout(model)
    torch.manual_seed(ctx.seed)
    peft_model = get_peft_model(model, lora.lora_config(cfg, model))
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=DEFAULT_LR, weight_decay=ctx.weight_decay)
    return QLoraStepper(peft_model, optimizer, ctx)


def memory(spec, shape: Shape, cfg: Config) -> MemoryBreakdown:
    """4-bit decoder linears (QLoRA §3, double-quantised constants when asked), the embedding, norms and an untied
    head in float32 (prepare_model_for_kbit_training upcasts them; bitsandbytes never quantises the head), float32
    adapters with their gradients and Adam moments, frozen-base activations. Other: one decoder linear dequantised
    at a time (bitsandbytes dequantises to the compute dtype before each matmul, forward and backward)."""
    linear = spec.n_layers * sum(l.in_features * l.out_features for l in spec.layer_linears)
    if cfg.double_quant:
        quantised = T.weight_bytes(linear, cfg.quant_type)
    else:  # one fp32 absmax per 64-value block
        quantised = -(-linear // 2) + 4 * -(-linear // QUANT_BLOCK)
    n_adapters = lora.adapter_params(spec, cfg)
    weights = quantised + T.weight_bytes(spec.n_params - linear, "fp32") + T.weight_bytes(n_adapters, "fp32")
    acts = T.training_activation_bytes(spec, shape, base_trains=False,
                                       adapters=T.Adapters(int(cfg.r), tuple(cfg.target_modules)))
    largest = max(l.in_features * l.out_features for l in spec.layer_linears)
    peak = T.first_order_peak(spec, shape, weights=weights, n_trainable=n_adapters, state_fmt="fp32",
                              activations=acts, notes=(f"{cfg.quant_type} base, LoRA r={cfg.r}",))
    return peak.plus(other=4 * largest)


# The planner's view of this method (budgetune.planner, budgetune.flop_plan): its rank among methods by quality,
# the kind of step it runs for FLOPs, and how the tracer sets a model up for it.

QUALITY_RANK = 6  # LoRA plus quantisation error (Dettmers et al. 2023)
RELIEVES = ("weights",)
UNSHARDABLE = "its 4-bit bitsandbytes weights are not DTensors that FSDP2 or ZeRO can split"
PLAN_OPTIONS = [{"r": 16, "target_modules": "all"}]


def flop_kinds(spec, cfg):
    from ..flop_plan import adapter_step

    return [adapter_step(cfg)]
