"""Addax (Li et al. 2024, "Addax: Utilizing Zeroth-Order Gradients to Improve Memory Efficiency and Performance
of SGD for Fine-Tuning Language Models"): examples longer than `max_fo_len` tokens, whose activations would
dominate backprop memory, get a zeroth-order SPSA estimate (two forward passes, no activations kept); the short ones
get an ordinary gradient. The update mixes both, θ ← θ − lr·((1 − α)·g_FO + α·g_ZO·z), with plain SGD (no optimizer
state). When a step holds only one kind, that kind alone is applied. Peak memory is set by backprop on the short
examples only, however long the long ones are.

Written here: the authors' code is a research trainer, not a package.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserError
from ..flops import FlopProfile, profile_from_model, train_step_flops
from ..lazy import lazy
from ..memory import terms as T
from ..memory.terms import MemoryBreakdown, Shape
from .base import (
    StepResult,
    TrainContext,
    batch_tokens,
    enable_checkpointing,
    token_loss,
)
from .spec_parts import formats, matmul_params, tensor_numels, tied_embedding_grad_bytes
from .zeroth_order import (
    CHUNK,
    SPSA,
    ZO_PRECISION_REASON,
    ZO_PRECISIONS,
    GaussianPerturbation,
    SPSAConfig,
    WholeModelWeights,
    forward_peak_bytes,
    mix_seed,
)

torch = lazy("torch")

NAME = "addax"
PRECISIONS, PRECISION_REASON = ZO_PRECISIONS, ZO_PRECISION_REASON
DEFAULT_LR = 2e-4  # plain SGD on every weight: 5e-3 diverged and 1e-3 raised the held-out loss (bench/methods.py)


@dataclass(kw_only=True)
class Config:
    max_fo_len: int = 48  # examples with more real tokens than this take the zeroth-order path (Addax's L_T)
    alpha: float = 0.001  # weight α of the zeroth-order estimate in the mixed update
    eps: float = 1e-3  # SPSA perturbation scale ε

    def __post_init__(self):
        if int(self.max_fo_len) < 1:
            raise UserError(f"addax option max_fo_len={self.max_fo_len} must be at least 1 token")
        if not 0 <= float(self.alpha) <= 1:
            raise UserError(f"addax option alpha={self.alpha} must be in [0, 1]; Addax uses small values like 1e-3")
        if not float(self.eps) > 0:
            raise UserError(f"addax option eps={self.eps} must be positive, e.g. 1e-3")


def split_by_length(batch: dict, max_len: int) -> tuple[dict | None, dict | None]:
    """(short rows, long rows) of a right-padded batch, each trimmed to its own longest row."""
    lengths = batch["attention_mask"].sum(dim=1)
    out = []
    for rows in (lengths <= max_len, lengths > max_len):
        if not bool(rows.any()):
            out.append(None)
            continue
        width = int(lengths[rows].max())
        out.append({k: v[rows][:, :width] for k, v in batch.items()})
    return out[0], out[1]


class AddaxStepper(WholeModelWeights):
    def __init__(self, model, cfg: Config, ctx: TrainContext):
        self.cfg, self.ctx = cfg, ctx
        self.accelerator = ctx.accelerator
        model = self.accelerator.prepare_model(model, evaluation_mode=True)  # device and autocast, no DDP
        for p in model.parameters():
            p.requires_grad_(True)
        self.recompute = ctx.gradient_checkpointing
        if self.recompute:
            enable_checkpointing(model)
        self.model = model
        self.named = list(dict(model.named_parameters()).items())
        self.spsa = SPSA(model, [p for _, p in self.named], GaussianPerturbation(mix_seed(ctx.seed, 0x3E20)),
                         SPSAConfig(float(cfg.eps), 1),
                         ctx.seed, accelerator=self.accelerator)
        self.step_count = 0
        self._profile: FlopProfile | None = None

    def profile(self) -> FlopProfile:
        if self._profile is None:
            self._profile = profile_from_model(self.model)
        return self._profile

    def cost(self, micro_batches: list[dict]) -> float:
        """What step() will charge: two forwards on the long rows, a training step on the short ones."""
        total = 0.0
        for mb in micro_batches:
            s, l = split_by_length(mb, int(self.cfg.max_fo_len))
            total += 2 * self.spsa.forward_cost([l]) if l is not None else 0.0
            total += train_step_flops(self.profile(), *s["input_ids"].shape, recompute=self.recompute) \
                if s is not None else 0.0
        return total

    def step(self, micro_batches: list[dict], lr: float) -> StepResult:
        short, long = [], []
        for mb in micro_batches:
            s, l = split_by_length(mb, int(self.cfg.max_fo_len))
            short += [s] if s is not None else []
            long += [l] if l is not None else []
        alpha = float(self.cfg.alpha) if short and long else (1.0 if long else 0.0)
        flops, loss_total, loss_count = 0.0, 0.0, 0
        if long:
            self.model.eval()
            with torch.no_grad():
                g, probe_loss, seed = self.spsa.estimate(long, self.step_count, 0)
            n_long = sum(int((b["labels"][:, 1:] != -100).sum()) for b in long)
            loss_total += probe_loss * n_long
            loss_count += n_long
            flops += 2 * self.spsa.forward_cost(long)
        if short:
            self.model.train()
            n_label = sum(int((b["labels"][:, 1:] != -100).sum()) for b in short)
            for mb in short:
                loss_sum, n = token_loss(self.model, mb)
                (loss_sum / max(1, n_label)).backward()
                loss_total += float(loss_sum.detach())
                loss_count += n
                flops += train_step_flops(self.profile(), *mb["input_ids"].shape, recompute=self.recompute)
            with torch.no_grad():
                for _, p in self.named:
                    if p.grad is not None:
                        if self.accelerator.num_processes > 1:
                            p.grad = self.accelerator.reduce(p.grad, reduction="mean")
                        p.add_(p.grad, alpha=-lr * (1 - alpha))
                        p.grad = None
        if long:
            self.spsa.update(g, seed, lr * alpha, self.step_count)
        self.step_count += 1
        return StepResult(loss_total / max(1, loss_count), flops, sum(batch_tokens(mb) for mb in micro_batches))

    def state_dict(self) -> dict:
        return {"step": self.step_count, "seed": self.spsa.seed}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step"])
        self.spsa.seed = int(state["seed"])



def prepare(model, cfg: Config, ctx: TrainContext) -> AddaxStepper:
    return AddaxStepper(model, cfg, ctx)


def memory(spec, shape: Shape, cfg: Config) -> MemoryBreakdown:
    """The larger of two moments: backprop over short examples (at most max_fo_len tokens: weights, activations,
    then every weight's gradient; plain SGD has no optimizer state), and a zeroth-order probe over long ones (the
    weights and an inference forward at full length, plus one chunk of z)."""
    wfmt, gfmt = formats(shape.precision)
    weights = T.weight_bytes(spec.n_params, wfmt)
    short = shape.with_(seq_len=min(shape.seq_len, int(cfg.max_fo_len)))
    first = T.first_order_peak(spec, short, weights=weights, n_trainable=spec.n_params, state_fmt=gfmt,
                               activations=T.training_activation_bytes(spec, short), adam=False,
                               cache=T.autocast_cache_bytes(matmul_params(spec), shape.precision),
                               notes=(f"backprop only on examples of <= {cfg.max_fo_len} tokens",))
    first = first.plus(other=tied_embedding_grad_bytes(spec, shape.precision))
    if shape.seq_len <= int(cfg.max_fo_len):
        return first
    zeroth = MemoryBreakdown(weights=weights, activations=forward_peak_bytes(spec, shape),
                             other=4 * min(CHUNK, max(tensor_numels(spec))),
                             notes=(f"zeroth-order probes on examples longer than {cfg.max_fo_len} tokens",))
    zeroth = zeroth.plus(other=T.runtime_overhead(shape, zeroth.total))
    return first if first.total >= zeroth.total else zeroth


# The planner's view of this method (budgetune.planner, budgetune.flop_plan): its rank among methods by quality,
# the kind of step it runs for FLOPs, and how the tracer sets a model up for it.

QUALITY_RANK = 9  # zeroth-order methods need far more steps for less (Malladi et al. 2023); Addax improves on MeZO
UNSHARDABLE = "it mixes zeroth-order in-place perturbations of whole parameters with first-order steps"


def flop_kinds(spec, cfg):
    """Planned as first-order on every row (its long rows run two forwards instead: less)."""
    from ..flop_plan import full_step

    return [full_step(spec)]
