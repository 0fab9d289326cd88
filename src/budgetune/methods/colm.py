"""CoLM (Nguyen et al. 2025, "Mini-batch Coresets for Memory-efficient Language Model Training on Data Mixtures",
ICLR 2025): train on a small coreset of each sampled mini-batch whose gradient matches the large batch's, so a step
keeps the activations of the coreset, not of the batch (the paper: about 2× less memory, LoRA included).

Each micro-batch the loop hands over is the large sampled batch (m rows; set micro_batch_size to the batch CoLM
stands in for, grad_accum 1). A step
1. runs a no-grad forward over it in chunks of the coreset's size c = ⌈fraction·m⌉ (so the forward's transient never
   exceeds the training step's), and builds per-row features of the gradient of the loss with respect to the LM
   head, Σ_t (p_t − e_{y_t}) h_tᵀ / n (a last-layer gradient proxy, as CoLM's gradient of one projection matrix is),
   sketched through a fixed Gaussian V×k matrix R regenerated from the seed: Σ_t (p_t·R − R[y_t]) ⊗ h_t, k·d values;
2. normalises the features by the running mean of their squares (CoLM's normalisation by the historical
   exponential average, for Adam), with bias correction;
3. picks c medoids by greedy facility location (CRAIG, Mirzasoleiman et al. 2020) over Euclidean distances, each
   weighted by the rows nearest to it (γ_j; the weights sum to m);
4. trains the LoRA adapters on the c rows with the γ-weighted token loss Σγ_j L_j / Σγ_j n_j, which equals the large
   batch's token-mean loss when each medoid stands for rows identical to it.
Not done here: CoLM's rule of keeping every example of small sources (the loop's batches do not carry sources) and
its zeroth-order, sparsified gradient estimate (replaced by the sketched last-layer gradient above).

FLOPs per step: the chunked forward of m rows, the sketch (2·V·k + 2·k·d per scored token), the distance matrix and
greedy picks, and a LoRA training step on c rows, each priced from the same profile cost() uses.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from ..errors import UserError
from ..flops import forward_flops, train_step_flops
from ..lazy import lazy
from ..loss import next_token_loss
from . import lora
from .base import StepResult, TrainContext, batch_tokens

torch = lazy("torch")
F = lazy("torch.nn.functional")

NAME = "colm"
SWITCHABLE_ADAPTERS = True  # peft adapters: the base model is generated with them switched off
FROZEN_BASE = True
DEFAULT_LR = 2e-4


@dataclass(kw_only=True)
class Config:
    fraction: float = 0.5  # coreset rows per sampled row: the step trains on ⌈fraction·m⌉ of each micro-batch's m
    sketch: int = 32  # k: columns of the Gaussian sketch of the logit-gradient (features are k × hidden values)
    beta: float = 0.9  # decay of the running mean of squared features that normalises them (CoLM's Adam rule)
    r: int = 16  # LoRA rank
    alpha: float = 32.0  # LoRA scaling numerator
    target_modules: list = field(default_factory=lambda: list(lora.ALL_LINEAR))  # linear layers to adapt

    def __post_init__(self):
        if isinstance(self.target_modules, str):
            self.target_modules = [t for t in self.target_modules.split(",") if t]
        if not 0 < float(self.fraction) <= 1:
            raise UserError(f"colm option fraction={self.fraction} must be in (0, 1]: the coreset's share of a batch")
        if int(self.sketch) < 1 or not 0 <= float(self.beta) < 1:
            raise UserError(f"colm options need sketch >= 1 and beta in [0, 1) (got {self.sketch}, {self.beta})")
        self.lora = lora.Config(r=self.r, alpha=self.alpha, target_modules=list(self.target_modules))


def coreset_rows(m: int, fraction: float) -> int:
    return max(1, math.ceil(float(fraction) * m))


def facility_location(features, c: int):
    """(c medoid rows, their weights γ = how many rows are nearest to each): greedy max of Σ_i max_{j∈S} (D* − d_ij),
    D* the largest distance (CRAIG's similarity)."""
    d = torch.cdist(features, features)
    sim = d.max() - d
    best = torch.zeros(len(features), dtype=sim.dtype)
    picked = []
    for _ in range(c):
        gain = (sim - best[:, None]).clamp(min=0).sum(0)
        if picked:
            gain[picked] = -1.0
        j = int(torch.argmax(gain))
        picked.append(j)
        best = torch.maximum(best, sim[:, j])
    nearest = d[:, picked].argmin(1)
    return picked, torch.bincount(nearest, minlength=c).to(features.dtype)


def selection_flops(m: int, s: int, tokens: int, vocab: int, hidden: int, k: int, c: int) -> float:
    """The sketch (p·R: 2·V·k per token, the outer product with h: 2·k·d), the m×m distances (3·k·d each) and the
    greedy gains (c rounds over m×m)."""
    return tokens * (2.0 * vocab * k + 2.0 * k * hidden) + 3.0 * m * m * k * hidden + 2.0 * c * m * m


class ColmStepper(lora.LoraStepper):
    def __init__(self, model, optimizer, ctx: TrainContext, cfg: Config):
        super().__init__(model, optimizer, ctx)
        self.cfg = cfg
        head = self.unwrapped.get_output_embeddings()
        self.vocab, self.hidden = head.weight.shape
        g = torch.Generator().manual_seed(ctx.seed * 7919 + 17)
        self.sketch = torch.randn(self.vocab, int(cfg.sketch), generator=g) / math.sqrt(int(cfg.sketch))
        self.square = torch.zeros(int(cfg.sketch) * self.hidden)  # running mean of squared features
        self.updates = 0

    def _features(self, mb: dict, rows) -> tuple:
        """No-grad forward of some rows: (features [rows, k·d], per-row loss sums, per-row label counts)."""
        captured = {}
        head = self.unwrapped.get_output_embeddings()
        handle = head.register_forward_hook(lambda mod, args, out: captured.__setitem__("h", args[0]))
        try:
            with torch.no_grad():
                logits = self.model(input_ids=mb["input_ids"][rows], attention_mask=mb["attention_mask"][rows],
                                    use_cache=False).logits[:, :-1].float()
        finally:
            handle.remove()
        h = captured["h"][:, :-1].float()
        labels = mb["labels"][rows][:, 1:]
        mask = (labels != -100).float()
        safe = labels.clamp(min=0)
        with torch.no_grad():
            ce = F.cross_entropy(logits.transpose(1, 2), safe, reduction="none") * mask
            err = (logits.softmax(-1) @ self.sketch - self.sketch[safe]) * mask[..., None]  # (p − e_y)·R
            counts = mask.sum(1)
            feats = torch.einsum("btk,btd->bkd", err, h).reshape(len(rows), -1) / counts.clamp(min=1)[:, None]
        return feats, ce.sum(1), counts

    def _plan(self, mb: dict):
        m = mb["input_ids"].shape[0]
        c = coreset_rows(m, self.cfg.fraction)
        chunks = [list(range(i, min(i + c, m))) for i in range(0, m, c)]
        return m, c, chunks

    def _weighted_loss(self, mb: dict, rows, weights):
        """Σ_j γ_j·L_j over the coreset rows, the loop's token loss. A method of its own so that the logits are
        freed when it returns: held as a local across backward, they kept one fp32 [rows, seq, vocab] tensor more
        than a LoRA step, 12-14% of the step's peak on the Llama memory fixture (bench/colm_memory_cases.py)."""
        logits = self.model(input_ids=mb["input_ids"][rows], attention_mask=mb["attention_mask"][rows],
                            use_cache=False).logits
        ce, mask = next_token_loss(logits, mb["labels"][rows], reduction="none")
        return (weights.to(ce.dtype) * (ce * mask).sum(1)).sum()

    def cost(self, micro_batches: list[dict]) -> float:
        total = 0.0
        for mb in micro_batches:
            m, c, chunks = self._plan(mb)
            s = mb["input_ids"].shape[1]
            total += sum(forward_flops(self.profile(), len(ch), s) for ch in chunks)
            total += selection_flops(m, s, m * (s - 1), self.vocab, self.hidden, int(self.cfg.sketch), c)
            total += train_step_flops(self.profile(), min(c, m), s, recompute=self.recompute)
        return total

    def step(self, micro_batches: list[dict], lr: float) -> StepResult:
        cfg = self.cfg
        self.model.eval()  # the scoring forward: no dropout
        plans, all_feats = [], []
        seen, loss_sum, label_count = 0, 0.0, 0
        for mb in micro_batches:
            m, c, chunks = self._plan(mb)
            parts = [self._features(mb, ch) for ch in chunks]
            feats = torch.cat([p[0] for p in parts])
            loss_sum += float(sum(p[1].sum() for p in parts))
            label_count += int(sum(p[2].sum() for p in parts))
            seen += batch_tokens(mb)
            plans.append((mb, m, c))
            all_feats.append(feats)
        stacked = torch.cat(all_feats)
        self.updates += 1
        self.square.mul_(cfg.beta).add_((1 - cfg.beta) * stacked.pow(2).mean(0))
        scale = (self.square / (1 - cfg.beta ** self.updates)).sqrt() + 1e-12
        self.model.train()
        self.set_lr(lr)
        chosen = []
        for (mb, m, c), feats in zip(plans, all_feats):
            rows, weights = (list(range(m)), torch.ones(m)) if c >= m else facility_location(feats / scale, c)
            chosen.append((mb, rows, weights))
        norm = sum(float((w * (mb["labels"][rows][:, 1:] != -100).sum(1)).sum()) for mb, rows, w in chosen)
        for mb, rows, w in chosen:
            self.accelerator.backward(self._weighted_loss(mb, rows, w) / max(norm, 1.0))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return StepResult(loss_sum / max(1, label_count), self.cost(micro_batches), seen)

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "square": self.square.clone(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.square = state["square"].clone()
        self.updates = int(state["updates"])


def prepare(model, cfg: Config, ctx: TrainContext) -> ColmStepper:
    from peft import get_peft_model

    torch.manual_seed(ctx.seed)  # adapter initialisation is random: make it repeatable
    peft_model = get_peft_model(model, lora.lora_config(cfg.lora, model))
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=DEFAULT_LR, weight_decay=ctx.weight_decay)
    return ColmStepper(peft_model, optimizer, ctx, cfg)


def coreset_shape(shape, cfg: Config | None):
    """The shape a CoLM step trains at: the coreset's rows of each micro-batch."""
    cfg = cfg or Config()
    return shape.with_(micro_batch=coreset_rows(shape.micro_batch, cfg.fraction))


def trace_shape(shape, cfg: Config | None):
    """The tracer reproduces a CoLM step as a LoRA step on the coreset (memory/trace.py TRACE_AS); the scoring
    forward before it is a no-grad forward in coreset-sized chunks, below the training step's peak."""
    return coreset_shape(shape, cfg)


def memory(spec, shape, cfg: Config):
    """LoRA's memory at the coreset's micro-batch (the activations CoLM cuts), plus the normaliser of the features
    (k·d fp32, optimizer-like state), the sketch matrix (V·k fp32) and one micro-batch's features with their
    distance matrix (other)."""
    coreset = coreset_shape(shape, cfg)
    base = lora.memory(spec, coreset, cfg.lora)
    k, d, m = int(cfg.sketch), spec.hidden, shape.micro_batch
    extra = 4 * spec.vocab * k + 4 * m * k * d + 4 * m * m
    return dataclasses.replace(base.plus(optimizer=4 * k * d, other=extra),
                               notes=base.notes + (f"CoLM coreset {coreset.micro_batch} of {m} rows",))


def planned_flops_per_token(spec, cfg: Config, seq_len: int, gradient_checkpointing: bool) -> float:
    """Per sampled token: a forward of the LoRA model, the sketch, and a fraction of a LoRA training step."""
    from ..flop_plan import StepKind, profile

    kind = StepKind(adapters=tuple((t, int(cfg.r)) for t in cfg.target_modules))
    p = profile(spec, kind, gradient_checkpointing=gradient_checkpointing)
    train = train_step_flops(p, 1, seq_len, recompute=gradient_checkpointing) / seq_len
    sketch = 2.0 * spec.vocab * int(cfg.sketch) + 2.0 * int(cfg.sketch) * spec.hidden
    return forward_flops(p, 1, seq_len) / seq_len + sketch + float(cfg.fraction) * train


def flop_kinds(spec, cfg: Config):
    """What trains: LoRA's adapters (budgetune.flop_plan). The run's plan prices a CoLM step as a LoRA step on the
    whole sampled batch, which its no-grad forward over m rows plus a training step on ⌈m/2⌉ of them costs to
    within about 1% (SmolLM2, 8 × 48 tokens: 2.20e11 vs 2.22e11 on the ledger); the ledger charges cost() exactly."""
    from ..flop_plan import adapter_step

    return [adapter_step(cfg.lora)]


# The planner's view (budgetune.planner): CoLM trains LoRA on a coreset of each batch. It ranks below the adapters,
# between QLoRA and DQT, where the two equal-FLOP measurements leave it: against LoRA at the same memory they
# disagree (bench/colm_loss.py, 8 × 48-token rows, 2 seeds: 3.5732 ± 0.0399 vs LoRA on a random half-batch 3.4826 ±
# 0.1357, worse in both; bench/methods.py at 4e12 FLOPs, 3 seeds: 2.2146 ± 0.0424 vs LoRA on the same 4 rows per
# step 2.3088 ± 0.1000, better in all three), and in the latter it ended below DQT (2.2394 ± 0.0364) and PEQA
# (2.6307 ± 0.0084) (docs/benchmarks/survey_systems.md, docs/benchmarks/methods.md). It prices its own FLOPs
# (planned_flops_per_token above) and is traced as LoRA at its coreset shape (trace_shape above).
QUALITY_RANK = 6.5


def trace_setup(model, cfg, shape):
    return lora.trace_setup(model, None, shape)
