"""What the zeroth-order methods share: seeded perturbations regenerated on demand, and the SPSA step.

SPSA (Spall 1992) as MeZO uses it (Malladi et al. 2023, Algorithm 1): with z drawn from a seed,
    g = [L(θ + εz) − L(θ − εz)] / (2ε),   θ ← θ − lr·g·z,
and z is never stored: the same seed regenerates it for +ε, −2ε, +ε (restore) and the update, so training needs
the memory of inference plus one chunk of z. Written here because no maintained package implements it for
transformers models (MeZO, LOZO and Addax exist only as research scripts tied to their trainers).

A Perturbation maps (parameters, seed, scale) to an in-place θ += scale·z(seed); MeZO draws z dense Gaussian,
LOZO draws it low-rank. Seeds come from (run seed, step, sample), never from the global RNG, so a resumed run
regenerates exactly the same directions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..errors import UserError
from ..flops import FlopProfile, forward_flops, profile_from_model
from ..lazy import lazy
from .base import StepResult, batch_tokens, save_full_model, token_loss

torch = lazy("torch")

# z is generated this many elements at a time, so the largest transient is 4 MiB (fp32), not a whole
# embedding matrix; the chunking is fixed, so the same seed always gives the same z.
CHUNK = 1 << 20
# The probes perturb the weights in place and restore them (θ+εz, −2εz, +εz): in bf16 each pass rounds every weight
# to 8 mantissa bits, so θ is not restored and the rounding drift swamps an update of lr·g.
ZO_PRECISIONS = ("fp32", "amp_bf16")
ZO_PRECISION_REASON = "its in-place perturb-and-restore of bf16 weights does not restore them"


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (splitmix64 finaliser), so neighbouring steps get unrelated streams."""
    x = 0x9E3779B97F4A7C15
    for p in parts:
        x = (x ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
    return x & 0x7FFFFFFFFFFFFFFF


def _generator(device: torch.device, seed: int) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def forward_peak_bytes(spec, shape) -> int:
    """Live activations of one probe: the planner's inference-forward term plus, with fp32 logits at the loss (fp32,
    or AMP, where accelerate converts the outputs to fp32), the copy token_loss makes when it flattens the shifted
    logits (logits[:, :-1] is not contiguous, so reshape copies: b·(s−1)·V·4 B; with 16-bit logits the fp32 upcast
    already is that copy and forward_only_bytes counts it)."""
    from ..memory.terms import forward_only_bytes, precision_dtypes

    _, E, _, _ = precision_dtypes(shape.precision)
    fp32_logits = E == 4 or shape.precision == "amp_bf16"
    copy = 4 * shape.micro_batch * (shape.seq_len - 1) * spec.vocab if fp32_logits else 0
    return forward_only_bytes(spec, shape) + copy


class Perturbation(Protocol):
    def apply(self, params: list[torch.nn.Parameter], seed: int, scale: float, step: int) -> None: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class GaussianPerturbation:
    """Dense Gaussian z per parameter (MeZO), regenerated from the seed, one fixed-size chunk at a time.

    iid=True draws every entry afresh, as MeZO does; on this kind of CPU that costs ~0.3–1 s per pass over 135M
    weights, four passes per step, more than the two forward passes themselves. The default draws each chunk as a
    randomly shifted, randomly signed window of one fixed pool of CHUNK Gaussians (drawn once from the run seed):
    entries in different chunks are uncorrelated (independent signs), entries within a chunk are correlated only
    through the pool's sample autocorrelation (~1/√CHUNK ≈ 0.001), so E[z zᵀ] ≈ I as SPSA requires, and a pass
    costs one memory-bound add per chunk.
    """

    def __init__(self, seed: int = 0, iid: bool = False):
        self.seed, self.iid = int(seed), bool(iid)
        self._pool: dict = {}

    def pool(self, device, dtype, size: int) -> torch.Tensor:
        key = (str(device), dtype)
        if key not in self._pool:
            g = _generator(device, mix_seed(self.seed, 0x9001))
            self._pool[key] = torch.randn(size, generator=g, device=device, dtype=dtype)
        return self._pool[key]

    def apply(self, params, seed: int, scale: float, step: int) -> None:
        with torch.no_grad():
            for i, p in enumerate(params):
                flat = p.view(-1)
                if self.iid:
                    g = _generator(p.device, mix_seed(seed, i))
                    for start in range(0, flat.numel(), CHUNK):
                        part = flat[start: start + CHUNK]
                        part.add_(torch.randn(part.shape, generator=g, device=p.device, dtype=p.dtype), alpha=scale)
                    continue
                # The pool is as long as the longest chunk any parameter needs (CHUNK at most).
                pool = self.pool(p.device, p.dtype, min(CHUNK, max(q.numel() for q in params)))
                size = pool.numel()
                for c, start in enumerate(range(0, flat.numel(), CHUNK)):
                    part = flat[start: start + CHUNK]
                    h = mix_seed(seed, i, c)
                    shift, sign = h % size, (1.0 if (h >> 40) & 1 else -1.0)
                    first = min(part.numel(), size - shift)
                    part[:first].add_(pool[shift: shift + first], alpha=sign * scale)
                    if first < part.numel():
                        part[first:].add_(pool[: part.numel() - first], alpha=sign * scale)

    def state_dict(self) -> dict:
        return {"seed": self.seed, "iid": self.iid}

    def load_state_dict(self, state: dict) -> None:
        self.seed = int(state.get("seed", self.seed))
        self._pool = {}


@dataclass
class SPSAConfig:
    eps: float
    samples: int  # perturbations averaged per step (MeZO's n)


class SPSA:
    """One SPSA estimate-and-update over the given parameters, with forward-only FLOPs accounting."""

    def __init__(self, model, params: list[torch.nn.Parameter], perturbation: Perturbation, cfg: SPSAConfig,
                 seed: int, weight_decay: float = 0.0, accelerator=None):
        self.model = model
        self.accelerator = accelerator
        self.params = params
        self.perturbation = perturbation
        self.cfg = cfg
        self.seed = int(seed)
        self.weight_decay = weight_decay
        self._profile: FlopProfile | None = None

    def profile(self) -> FlopProfile:
        if self._profile is None:
            self._profile = profile_from_model(self.model)
        return self._profile

    def mean_loss(self, batches: list[dict]) -> float:
        total, count = 0.0, 0
        with torch.no_grad():
            for mb in batches:
                loss_sum, n = token_loss(self.model, mb)
                total += float(loss_sum)
                count += n
        if self.accelerator is not None and self.accelerator.num_processes > 1:
            # Every process must take the same step: the projected gradient is a global scalar.
            both = self.accelerator.reduce(torch.tensor([total, float(count)], dtype=torch.float64,
                                                        device=self.accelerator.device), reduction="sum")
            total, count = float(both[0]), int(both[1])
        return total / max(1, count)

    def forward_cost(self, batches: list[dict]) -> float:
        return sum(forward_flops(self.profile(), *mb["input_ids"].shape) for mb in batches)

    def estimate(self, batches: list[dict], step: int, sample: int) -> tuple[float, float, int]:
        """(projected gradient g, mean loss of the two probes, seed); θ is restored before returning."""
        seed = mix_seed(self.seed, step, sample)
        eps = self.cfg.eps
        self.perturbation.apply(self.params, seed, eps, step)
        plus = self.mean_loss(batches)
        self.perturbation.apply(self.params, seed, -2 * eps, step)
        minus = self.mean_loss(batches)
        self.perturbation.apply(self.params, seed, eps, step)
        return (plus - minus) / (2 * eps), (plus + minus) / 2, seed

    def update(self, g: float, seed: int, lr: float, step: int) -> None:
        self.perturbation.apply(self.params, seed, -lr * g, step)

    def decay(self, lr: float) -> None:
        # Decoupled weight decay on matrices only, as MeZO does (no decay on biases and norms).
        if self.weight_decay:
            with torch.no_grad():
                for p in self.params:
                    if p.dim() >= 2:
                        p.mul_(1 - lr * self.weight_decay)


class WholeModelWeights:
    """What steppers that change every weight in place share: `self.named` (each weight once) and `self.model`."""

    named: list
    model: object

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in self.named}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        params = dict(self.named)
        with torch.no_grad():
            for name, value in state.items():
                params[name].copy_(value)

    def save_pretrained(self, directory: Path, tokenizer) -> str:
        return save_full_model(self.model, directory, tokenizer)


class ZerothOrderStepper(WholeModelWeights):
    """Drives SPSA for the loop: forward passes only, no gradients, no optimizer state beyond a step counter."""

    def __init__(self, model, perturbation: Perturbation, *, eps: float, samples: int, seed: int,
                 weight_decay: float = 0.0, accelerator=None):
        self.model = model
        for p in model.parameters():
            p.requires_grad_(False)  # no autograd graph is ever built: memory stays that of inference
        self.named = list(dict(model.named_parameters()).items())  # tied weights once
        self.spsa = SPSA(model, [p for _, p in self.named], perturbation, SPSAConfig(eps, samples), seed,
                         weight_decay, accelerator)
        self.step_count = 0

    def step(self, micro_batches: list[dict], lr: float) -> StepResult:
        self.model.eval()  # dropout would make the two probes see different functions
        losses = []
        for sample in range(self.spsa.cfg.samples):
            g, loss, seed = self.spsa.estimate(micro_batches, self.step_count, sample)
            self.spsa.update(g, seed, lr / self.spsa.cfg.samples, self.step_count)
            losses.append(loss)
        self.spsa.decay(lr)
        self.step_count += 1
        flops = self.cost(micro_batches)
        return StepResult(sum(losses) / len(losses), flops, sum(batch_tokens(mb) for mb in micro_batches))

    def cost(self, micro_batches: list[dict]) -> float:
        """Two forward passes per sampled direction (Malladi et al. 2023); known before the step runs."""
        return 2 * self.spsa.cfg.samples * self.spsa.forward_cost(micro_batches)

    def state_dict(self) -> dict:
        return {"step": self.step_count, "seed": self.spsa.seed, "perturbation": self.spsa.perturbation.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step"])
        self.spsa.seed = int(state["seed"])
        self.spsa.perturbation.load_state_dict(state.get("perturbation", {}))



def check_options(method: str, cfg, *, lazy_means: str, rank_hint: str) -> None:
    """The option checks every low-rank zeroth-order method (LOZO, SubZero) shares: one line naming the field."""
    if int(cfg.rank) < 1:
        raise UserError(f"{method} option rank={cfg.rank} must be at least 1; {rank_hint}")
    if int(cfg.lazy) < 1:
        raise UserError(f"{method} option lazy={cfg.lazy} must be at least 1 (steps between {lazy_means})")
    if not float(cfg.eps) > 0:
        raise UserError(f"{method} option eps={cfg.eps} must be positive, e.g. 1e-3")
    if int(cfg.samples) < 1:
        raise UserError(f"{method} option samples={cfg.samples} must be at least 1")
