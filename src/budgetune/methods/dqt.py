"""DQT: direct quantised training, updating the integer weights themselves with stochastic rounding and keeping no
float master copy (Zhao et al. 2024/2025, "Direct Quantized Training of Language Models with Stochastic Rounding",
arXiv:2412.04787, ACML 2025).

Every linear layer inside the decoder layers is stored as b-bit integers with one fixed symmetric scale per output
row, W = s ⊙ W̄, W̄ ∈ [−(2^(b−1) − 1), 2^(b−1) − 1] (absmax per row at the start). Backward computes the float
gradient of W from the saved input, AdamW turns it into a step Δ (moments in fp32, as the paper keeps them), and
the new weight is rounded stochastically back to the grid: W̄ ← SR(W̄ − lr·Δ/s), rounding up with probability equal
to the fractional part, so E[W̄_new] = W̄ − lr·Δ/s and steps far below one grid step still move the weights on
average (round-to-nearest would drop them). What is saved against full AdamW is the fp32 weight (4 B/param) minus
the codes (1 B/param here: codes are kept one per int8 byte whatever b, for speed); gradients and moments remain.
The embedding, norms and LM head stay in float and frozen (the paper trains from scratch; here only the decoder's
linear layers are quantised, as in the quantised fine-tuning methods).

No library implements DQT (its authors' code is a research script); bitsandbytes' int8 layers have no update path.
Stochastic rounding draws from a generator seeded by (run seed, step, layer), so a resumed run rounds alike.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from ..errors import UserError
from ..flops import FlopProfile, profile_from_model, train_step_flops
from ..lazy import lazy
from ..memory import terms as T
from .base import StepResult, batch_tokens, enable_checkpointing, token_loss
from .zeroth_order import _generator, mix_seed

torch = lazy("torch")

NAME = "dqt"
DEFAULT_LR = 1e-4


@dataclass(kw_only=True)
class Config:
    bits: int = 8  # integer width of the trained weights (2 … 8; the paper's main results use 8 and ternary 2)
    beta1: float = 0.9  # AdamW moments
    beta2: float = 0.999
    eps: float = 1e-8

    def __post_init__(self):
        if not 2 <= int(self.bits) <= 8:
            raise UserError(f"dqt option bits={self.bits}: use 2 to 8 (the integer width of the weights)")
        if not (0 <= float(self.beta1) < 1 and 0 <= float(self.beta2) < 1):
            raise UserError(f"dqt options beta1={self.beta1}, beta2={self.beta2} must lie in [0, 1)")


def quantize_model(model, bits: int) -> dict[str, object]:
    from .int_layers import GridLinear, decoder_linears

    out = {}
    for name, module in decoder_linears(model):
        parent, _, child = name.rpartition(".")
        layer = GridLinear(module, bits)
        setattr(model.get_submodule(parent), child, layer)
        out[name] = layer
    return out


def dqt_profile(model) -> FlopProfile:
    """Weight gradients for every decoder linear, input gradients for all but the first layer's q/k/v (nothing
    below them trains: the embedding is frozen), the head's input gradient included."""
    from ..flop_profile import attention_backward_everywhere
    from .int_layers import decoder_linears

    p = profile_from_model(model)
    first = [m for n, m in decoder_linears(model) if n.split(".")[-1] in ("q_proj", "k_proj", "v_proj")][:3]
    qkv0 = sum(m.in_features * m.out_features for m in first)
    # q/k/v train in every layer, so attention backward runs in every layer.
    decoder = sum(m.in_features * m.out_features for _, m in decoder_linears(model))
    return dataclasses.replace(p, trainable_matmul_params=decoder, input_grad_params=p.matmul_params - qkv0,
                               layer_matmul_params=decoder, recompute_layers=p.n_layers,
                               attn_backward_products=attention_backward_everywhere(model))


class DqtStepper:
    def __init__(self, model, layers: dict, cfg: Config, ctx):
        self.accelerator = ctx.accelerator
        self.recompute = ctx.gradient_checkpointing
        if self.recompute:
            enable_checkpointing(model)
        self.model = model.to(ctx.accelerator.device)
        self.layers, self.cfg, self.seed = layers, cfg, int(ctx.seed)
        self.state = {n: {"m": torch.zeros(l.weight.shape, device=l.weight.device),
                          "v": torch.zeros(l.weight.shape, device=l.weight.device)}
                      for n, l in layers.items()}
        # Shaped like a torch optimizer's .state ({param: {name: tensor}}), so memory tools that walk
        # stepper.optimizer.state find the moments.
        self.optimizer = SimpleNamespace(state=self.state)
        self.step_count = 0
        self._profile = dqt_profile(model)

    def profile(self) -> FlopProfile:
        return self._profile

    def cost(self, micro_batches: list[dict]) -> float:
        """FLOPs the next step() will charge (the loop's budget check; the integer weights rule out its fallback)."""
        return sum(train_step_flops(self._profile, *mb["input_ids"].shape, recompute=self.recompute)
                   for mb in micro_batches)

    def step(self, micro_batches: list[dict], lr: float) -> StepResult:
        self.model.train()
        n_label = sum(int((mb["labels"][:, 1:] != -100).sum()) for mb in micro_batches)
        total_loss, total_tokens, flops, seen = 0.0, 0, 0.0, 0
        for mb in micro_batches:
            loss_sum, n = token_loss(self.model, mb)
            (loss_sum / max(1, n_label)).backward()
            total_loss += float(loss_sum.detach())
            total_tokens += n
            seen += batch_tokens(mb)
        flops = self.cost(micro_batches)
        self.step_count += 1
        self._update(lr)
        return StepResult(total_loss / max(1, total_tokens), flops, seen)

    def _update(self, lr: float) -> None:
        from .int_layers import stochastic_round

        c, t = self.cfg, self.step_count
        with torch.no_grad():
            for i, (name, layer) in enumerate(self.layers.items()):
                g, layer.grad_w = layer.grad_w, None
                if g is None:
                    continue
                if self.accelerator.num_processes > 1:
                    g = self.accelerator.reduce(g, reduction="mean")
                s = self.state[name]
                s["m"].mul_(c.beta1).add_(g, alpha=1 - c.beta1)
                s["v"].mul_(c.beta2).addcmul_(g, g, value=1 - c.beta2)
                step = (s["m"] / (1 - c.beta1 ** t)) / ((s["v"] / (1 - c.beta2 ** t)).sqrt_().add_(c.eps))
                del g
                target = step.mul_(-lr).div_(layer.scale).add_(layer.weight.float())
                rounded = stochastic_round(target, _generator(target.device, mix_seed(self.seed, t, i)))
                layer.weight.copy_(rounded.clamp_(-layer.qmax, layer.qmax).to(torch.int8))

    def state_dict(self) -> dict:
        return {"step": self.step_count, "moments": {n: [s["m"], s["v"]] for n, s in self.state.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step"])
        for n, (m, v) in state["moments"].items():
            self.state[n]["m"].copy_(m)
            self.state[n]["v"].copy_(v)

    def trainable_state_dict(self) -> dict:
        return {f"{n}.weight": l.weight.detach().clone() for n, l in self.layers.items()}

    def load_trainable_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            for n, l in self.layers.items():
                l.weight.copy_(state[f"{n}.weight"])

    def save_pretrained(self, directory: Path, tokenizer) -> str:
        """A float model that from_pretrained opens: each trained layer's grid values s ⊙ W̄ (exactly the b-bit
        weights, stored as floats)."""
        state = dict(self.model.state_dict())
        for n, l in self.layers.items():
            state[f"{n}.weight"] = l.dequantized().contiguous()
            state.pop(f"{n}.scale", None)
        self.model.save_pretrained(directory, state_dict=state, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(directory)
        return "model"


def prepare(model, cfg: Config, ctx) -> DqtStepper:
    for p in model.parameters():
        p.requires_grad_(False)
    layers = quantize_model(model, int(cfg.bits))
    if not layers:
        raise UserError("dqt found no linear layers inside the model's decoder layers to quantise")
    return DqtStepper(model, layers, cfg, ctx)


def memory(spec, shape, cfg: Config):
    """Weights: int8 codes and an fp32 scale per row for the decoder linears, the rest in float; gradients and AdamW
    moments in fp32 for the codes (the paper's optimizer); activations of a backward with trained linears and a
    frozen head. The step's temporaries: one layer's step Δ and its rounding draw (2 × 4 B × the largest matrix)."""
    from .peqa import quantized_counts

    n_q, rows = quantized_counts(spec)
    fmt = "fp32" if shape.precision == "fp32" else "bf16"
    weights = n_q + 4 * rows + T.weight_bytes(spec.n_params - n_q, fmt)
    acts = T.training_activation_bytes(spec, shape, base_trains=True, head_trains=False)
    largest = max(l.in_features * l.out_features for l in spec.layer_linears)
    peak = T.first_order_peak(spec, shape, weights=weights, n_trainable=n_q, state_fmt="fp32", activations=acts,
                              cache=8 * largest, adam=False, notes=(f"{cfg.bits}-bit grid, no float master copy",))
    moments = T.adam_state_bytes(n_q, "fp32")
    return peak.plus(optimizer=moments, other=8 * largest if peak.gradients else 0)


# The planner's view of this method (budgetune.planner, budgetune.flop_plan): its rank among methods by quality,
# the kind of step it runs for FLOPs, and how the tracer sets a model up for it.

QUALITY_RANK = 7


def flop_kinds(spec, cfg):
    """The decoder's linear layers train; embedding and head stay frozen."""
    from ..flop_plan import StepKind

    return [StepKind(layers=frozenset(range(spec.n_layers)))]
