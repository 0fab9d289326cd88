"""The planner's FLOPs per token, from the same profile the run's ledger charges (budgetune.flop_profile), read off
the model built on the meta device (no weights) with the method's trainable set applied as its prepare() applies
it, so `budgetune plan` and the run's ledger agree.

Block-wise methods (BAdam, HiFT) train one block per step, so their figure is the mean over one cycle of blocks
(each block trains for the same number of steps). Zeroth-order methods (MeZO, LOZO) run two forward passes per
sampled direction. GaLore's projection and SVD work is per step, not per token, and is left out here (the ledger
charges it). Addax is planned as first-order on every row (its long rows run two forwards instead: less).
"""

from __future__ import annotations

import copy
from functools import lru_cache

from .flops import FlopProfile, train_step_flops

ZEROTH_ORDER = {"mezo", "lozo"}
ADAPTERS = {"lora", "qlora"}
BLOCKWISE = {"badam", "hift"}


@lru_cache(maxsize=4)
def _meta_base(spec):
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    from .models import _quiet

    _quiet()
    kw = {"hidden_size": spec.hidden, "intermediate_size": spec.intermediate, "num_hidden_layers": spec.n_layers,
              "num_attention_heads": spec.n_heads, "num_key_value_heads": spec.n_kv_heads, "head_dim": spec.head_dim,
              "vocab_size": spec.vocab, "tie_word_embeddings": spec.tied_embeddings, "pad_token_id": 0, "bos_token_id": 0,
              "eos_token_id": 0}
    with init_empty_weights():  # parameters on the meta device, without running weight initialisation
        return AutoModelForCausalLM.from_config(AutoConfig.for_model(spec.family, **kw))


def meta_model(spec, *, fresh: bool = True):
    """The spec's model as transformers builds it, weightless (parameters on the meta device); `fresh` gives a copy
    a method may modify (adapters, checkpointing hooks)."""
    return copy.deepcopy(_meta_base(spec)) if fresh else _meta_base(spec)


def method_profiles(model, method: str, cfg, *, gradient_checkpointing: bool) -> list[FlopProfile]:
    """The profile of each kind of step the method runs on `model` (one, or one per block of a cycle)."""
    from .flop_profile import profile_with
    from .methods import blockwise
    from .methods.base import enable_checkpointing

    if gradient_checkpointing and method not in ZEROTH_ORDER:
        enable_checkpointing(model)
    every = {n for n, _ in model.named_parameters()}
    if method in ZEROTH_ORDER:
        return [profile_with(model, set())]
    if method == "badam":
        from .methods.badam import blocks_of

        return [profile_with(model, set(names)) for names in blocks_of(model, cfg)]
    if method == "hift":
        groups = blockwise.layer_groups(model, int(cfg.layers_per_group), what="hift option layers_per_group")
        return [profile_with(model, set(names)) for _, names in groups]
    if method in ADAPTERS:  # peft's A (r×in) and B (out×r) beside each target, on a frozen base
        return [profile_with(model, set(), {t: int(cfg.r) for t in cfg.target_modules})]
    return [profile_with(model, every)]


def planned_flops_per_token(spec, method: str, cfg, seq_len: int, gradient_checkpointing: bool) -> float:
    """Training FLOPs per (padded) token of one step of `method` on a batch of `seq_len`-token rows."""
    from .flops import forward_flops

    fresh = gradient_checkpointing  # otherwise only requires_grad is toggled, and restored
    profiles = method_profiles(meta_model(spec, fresh=fresh), method, cfg, gradient_checkpointing=gradient_checkpointing)
    if method in ZEROTH_ORDER:
        return 2.0 * int(getattr(cfg, "samples", 1) or 1) * forward_flops(profiles[0], 1, seq_len) / seq_len
    steps = [train_step_flops(p, 1, seq_len, recompute=gradient_checkpointing) / seq_len for p in profiles]
    return sum(steps) / len(steps)
