"""The planner's FLOPs per token from the profile the run's ledger charges, built from the config alone.

`budgetune plan` answers without importing torch or transformers, so the model is not built: its products are laid
out from the ModelSpec (each decoder layer's linears, the LM head), the method's trainable set is applied as its
prepare() applies it (LoRA A and B beside each targeted module; each BAdam block or HiFT group in turn; every
weight for full fine-tuning), and budgetune.flop_profile.assemble propagates the gradients exactly as it does for
the run's real model. The tests check that the two agree.

Block-wise methods (BAdam, HiFT) train one block per step, so their figure is the mean over one cycle of blocks
(each block trains for the same number of steps). Zeroth-order methods (MeZO, LOZO) run two forward passes per
sampled direction. GaLore's projection and SVD work is per step, not per token, and is left out here (the ledger
charges it). Addax is planned as first-order on every row (its long rows run two forwards instead: less). Which
kind of step a method runs is its own module's declaration (flop_kinds, FORWARD_ONLY): no method names here.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UserError
from .flop_profile import Product, assemble
from .flops import FlopProfile, forward_flops, train_step_flops

_ATTENTION = {"q_proj", "k_proj", "v_proj", "o_proj", "qkv_proj", "query_key_value", "dense"}
_EAGER = {"gemma2"}  # families transformers builds with eager attention (no SDPA support)
_POST_MLP_NORM = {"gemma2"}  # a norm on the MLP output: checkpoint recompute reruns the last product


@dataclass(frozen=True)
class StepKind:
    """What trains in one kind of step."""

    layers: frozenset = frozenset()  # decoder layers whose weights and norms train
    embedding: bool = False  # the input embedding (and a head tied to it)
    head: bool = False  # the final norm and an untied LM head
    adapters: tuple = ()  # (module name, rank) of LoRA adapters
    scale_layers: frozenset = frozenset()  # layers where only per-row scales train (PEQA): no weight-grad products


def full_step(spec) -> StepKind:
    """Every weight trains: the decoder layers, the embedding and the head (full fine-tuning and its optimizers)."""
    return StepKind(layers=frozenset(range(spec.n_layers)), embedding=True, head=True)


def adapter_step(cfg) -> StepKind:
    """LoRA adapters of rank cfg.r beside each of cfg.target_modules; the base stays frozen."""
    return StepKind(adapters=tuple((t, int(cfg.r)) for t in cfg.target_modules))


def block_steps(spec, per: int, *, bottom: bool, top: bool) -> list[StepKind]:
    """One step kind per block of `per` decoder layers (block-wise methods), with the embedding and the head as
    blocks of their own where they train."""
    groups = [StepKind(layers=frozenset(range(i, min(i + per, spec.n_layers)))) for i in range(0, spec.n_layers, per)]
    return ([StepKind(embedding=True)] if bottom else []) + groups + ([StepKind(head=True)] if top else [])


def step_kinds(spec, module, cfg) -> list[StepKind]:
    """The kinds of step the method runs, one per block of a cycle for block-wise methods: the method module's own
    flop_kinds(spec, cfg) (its trainable set as its prepare() applies it)."""
    kinds = getattr(module, "flop_kinds", None)
    if kinds is None:
        raise UserError(f"method '{module.NAME}' declares no FLOP profile (flop_kinds in its module); the planner "
                        f"cannot cost it")
    return list(kinds(spec, cfg))


def profile(spec, kind: StepKind, *, gradient_checkpointing: bool) -> FlopProfile:
    adapters = dict(kind.adapters)
    prods: list[Product] = []
    for i in range(spec.n_layers):
        for lin in spec.layer_linears:
            part = "self_attn" if lin.name in _ATTENTION else "mlp"
            group, weights = (part, lin.name), lin.in_features * lin.out_features
            prods.append(Product(f"layers.{i}.{part}.{lin.name}", weights, i in kind.layers, i, group, "base"))
            r = adapters.get(lin.name)
            if r:
                prods += [Product(f"layers.{i}.{part}.{lin.name}.lora_A", r * lin.in_features, True, i, group,
                                  "lora_A"),
                          Product(f"layers.{i}.{part}.{lin.name}.lora_B", r * lin.out_features, True, i, group,
                                  "lora_B")]
    head_trains = kind.head and not spec.tied_embeddings or kind.embedding and spec.tied_embeddings
    prods.append(Product("lm_head", spec.vocab * spec.hidden, head_trains, None, ("lm_head",), "base"))
    others = {i: True for i in kind.layers | kind.scale_layers}
    others[None] = kind.head  # the final norm
    # Checkpointing turns on enable_input_require_grads: the embedding output then needs a gradient.
    grad = kind.embedding or gradient_checkpointing
    return assemble(prods, others, n_layers=spec.n_layers, attn_dim=spec.n_heads * spec.head_dim,
                    fused=spec.family not in _EAGER, input_grad=grad, tail_saves=spec.family in _POST_MLP_NORM)


def planned_flops_per_token(spec, module, cfg, seq_len: int, gradient_checkpointing: bool) -> float:
    """Training FLOPs per (padded) token of one step of the method `module` on a batch of `seq_len`-token rows.
    A module with FORWARD_ONLY = True (zeroth-order) runs two forward passes per sampled direction."""
    zeroth = bool(getattr(module, "FORWARD_ONLY", False))
    profiles = [profile(spec, k, gradient_checkpointing=gradient_checkpointing and not zeroth)
                for k in step_kinds(spec, module, cfg)]
    if zeroth:
        return 2.0 * int(getattr(cfg, "samples", 1) or 1) * forward_flops(profiles[0], 1, seq_len) / seq_len
    steps = [train_step_flops(p, 1, seq_len, recompute=gradient_checkpointing) / seq_len for p in profiles]
    return sum(steps) / len(steps)
