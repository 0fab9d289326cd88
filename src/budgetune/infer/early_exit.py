"""Adaptive-depth greedy decoding: a token leaves the model at an intermediate layer when the model is confident
(CALM: Schuster et al. 2022, "Confident Adaptive Language Modeling", softmax-confidence exit with state propagation).

At each decoded token the decoder layers run one by one; after each layer named in `exit_layers` the final norm and
the (tied) LM head read the hidden state, as the layer-skip draft of infer/draft.py does, and if the top token's
probability is at least `threshold` that token is emitted. The layers skipped still need this position's keys and
values for later tokens: as in CALM §3.3 (state propagation) they are computed from the exit layer's hidden state
(each skipped layer's input norm, K and V projections and rotary embedding), which costs 2·(N_k + N_v) per layer
instead of the whole layer. The prompt's prefill and the first new token always run at full depth.

Why not infer/draft.py's truncated copies: a copy of the first l layers duplicates their weights and keeps its own
KV cache, which would lag behind the full model's at every exit; here one model, one cache, and each exit point is a
view into the same layers. Llama-family decoders only (their attention layout is what the K/V fill mirrors).

What it costs per decoded token (the ledger's count, budgetune.flops' conventions): l·(2·N_layer + 4·c·d_attn) for
the l layers run at context c, (L − l)·2·(N_k + N_v) for the skipped layers' K/V, and 2·N_head per confidence check
(the last check's logits are the output; a token that reaches full depth pays one more head pass). Checks are not
free: on SmolLM2-135M one head pass (49,152 × 576) costs about as much as eight decoder layers.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import torch

from ..errors import UserError
from ..flops import FlopProfile, profile_from_model
from .accounting import model_kv_bytes, prefill_flops
from .depth_plan import DepthCosts, token_flops


@dataclass
class EarlyExit:
    exit_layers: tuple[int, ...]  # layer counts after which the exit head is tried (1 … n_layers − 1)
    threshold: float = 0.9  # exit when the top token's softmax probability is at least this

    def __post_init__(self) -> None:
        self.exit_layers = tuple(sorted({int(x) for x in self.exit_layers}))
        if not self.exit_layers:
            raise UserError("--early-exit needs at least one layer, e.g. --early-exit 12,20")
        if not 0.0 <= float(self.threshold) <= 1.0:
            raise UserError(f"--exit-threshold {self.threshold} must lie in [0, 1] (a softmax probability)")

    def check(self, n_layers: int) -> None:
        bad = [x for x in self.exit_layers if not 0 < x < n_layers]
        if bad:
            raise UserError(f"--early-exit layer(s) {','.join(map(str, bad))}: give layers 1 to {n_layers - 1} "
                            f"(this model has {n_layers})")


def parse_early_exit(text: str | None, threshold: float) -> EarlyExit | None:
    if not text:
        return None
    try:
        layers = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise UserError(f"--early-exit '{text}': give comma-separated layer numbers, e.g. 12,20") from None
    return EarlyExit(layers, threshold)


def depth_costs(model, profile: FlopProfile | None = None) -> DepthCosts:
    from ..flop_profile import products

    p = profile or profile_from_model(model)
    attn = _decoder(model).layers[0].self_attn
    kv = attn.k_proj.weight.numel() + attn.v_proj.weight.numel()
    # Every decoder product runs at inference (the training profile's layer figure counts only what backward
    # reaches and recomputes).
    in_layers = sum(q.weights for q in products(model, None)[0] if q.layer is not None)
    return DepthCosts(in_layers / p.n_layers, kv, p.matmul_params - in_layers, p.n_layers, p.attn_dim)


def worst_token_flops(c: DepthCosts, rule: EarlyExit, context: int) -> float:
    return token_flops(c, context, c.n_layers, len(rule.exit_layers) + 1)


def _decoder(model):
    base = getattr(model, "model", None)
    if base is None or not hasattr(base, "layers") or not hasattr(base.layers[0], "self_attn"):
        raise UserError(f"--early-exit supports Llama-family decoders; {type(model).__name__} is not one")
    return base


@dataclass
class ExitTrace:
    tokens: list[int] = field(default_factory=list)
    depths: list[int] = field(default_factory=list)  # layers each decoded token ran (the first: full depth)
    flops: float = 0.0
    stop: str = "max_new_tokens"
    seconds: float = 0.0


def _fill_kv(layer, hidden, position_embeddings, cache, rotary) -> None:
    """State propagation: a skipped layer's K/V for this position, from the exit layer's hidden state."""
    attn = layer.self_attn
    x = layer.input_layernorm(hidden)
    shape = (*x.shape[:-1], -1, attn.head_dim)
    k = attn.k_proj(x).view(shape).transpose(1, 2)
    v = attn.v_proj(x).view(shape).transpose(1, 2)
    cos, sin = position_embeddings
    _, k = rotary(k, k, cos, sin)
    cache.update(k, v, attn.layer_idx)


@torch.inference_mode()
def decode(model, ids: list[int], rule: EarlyExit, *, max_new_tokens: int, eos_ids: set[int],
           budget: float | None = None) -> ExitTrace:
    """Greedy tokens after prompt `ids` with confidence-based early exit; FLOPs counted token by token."""
    from transformers import DynamicCache
    from transformers.masking_utils import create_causal_mask

    base = _decoder(model)
    rule.check(len(base.layers))
    rotary = sys.modules[type(base.layers[0].self_attn).__module__].apply_rotary_pos_emb
    profile = profile_from_model(model)
    costs = depth_costs(model, profile)
    device = next(model.parameters()).device
    out = ExitTrace()
    start = time.perf_counter()
    cache = DynamicCache(config=model.config)
    logits = model(input_ids=torch.tensor([ids], device=device), cache=cache, use_cache=True).logits[:, -1]
    out.flops = prefill_flops(profile, len(ids))
    token = int(logits.argmax(-1))
    out.tokens.append(token)
    out.depths.append(costs.n_layers)
    exits = set(rule.exit_layers)
    while len(out.tokens) < max_new_tokens and token not in eos_ids:
        context = len(ids) + len(out.tokens)
        if budget is not None and out.flops + worst_token_flops(costs, rule, context) > budget:
            out.stop = "flops_budget"
            break
        position_ids = torch.tensor([[context - 1]], device=device)
        hidden = base.embed_tokens(torch.tensor([[token]], device=device))
        pe = base.rotary_emb(hidden, position_ids=position_ids)
        mask = create_causal_mask(config=base.config, inputs_embeds=hidden, attention_mask=None, cache=cache,
                                  position_ids=position_ids)
        checks, depth = 0, costs.n_layers
        logits = None
        for i, layer in enumerate(base.layers):
            hidden = layer(hidden, attention_mask=mask, position_embeddings=pe, position_ids=position_ids,
                           cache=cache, use_cache=True)
            if i + 1 in exits:
                checks += 1
                logits = model.lm_head(base.norm(hidden))[:, -1]
                if float(torch.softmax(logits.float(), -1).max()) >= rule.threshold:
                    depth = i + 1
                    for skipped in base.layers[depth:]:
                        _fill_kv(skipped, hidden, pe, cache, rotary)
                    break
        if depth == costs.n_layers:
            checks += 1
            logits = model.lm_head(base.norm(hidden))[:, -1]
        out.flops += token_flops(costs, context, depth, checks)
        token = int(logits.argmax(-1))
        out.tokens.append(token)
        out.depths.append(depth)
    if out.tokens and out.tokens[-1] in eos_ids:
        out.stop = "eos"
    out.seconds = time.perf_counter() - start
    return out


def generate_early_exit(model, tokenizer, prompts: list, rule: EarlyExit, *, max_new_tokens: int = 128,
                        flops_budget: float | None = None, ledger=None) -> list:
    """GenerationResults (as infer.generate returns) from adaptive-depth decoding, one prompt at a time."""
    from .generate import (
        GenerationResult,
        _eos_ids,
        _prompt_text,
        check_prefill,
        encode_prompts,
    )

    if not prompts:
        raise UserError("no prompts given; pass --prompt TEXT or a --file with at least one prompt")
    was_training = model.training
    model.eval()
    try:
        ids_all = encode_prompts(tokenizer, prompts)
        profile = profile_from_model(model)
        check_prefill(profile, [len(x) for x in ids_all], flops_budget)
        eos = _eos_ids(tokenizer, model)
        results = []
        for prompt, ids in zip(prompts, ids_all):
            t = decode(model, ids, rule, max_new_tokens=max_new_tokens, eos_ids=eos, budget=flops_budget)
            n = len(t.tokens)
            results.append(GenerationResult(
                prompt=_prompt_text(prompt), text=tokenizer.decode(t.tokens, skip_special_tokens=True),
                prompt_tokens=len(ids), new_tokens=n, stop=t.stop, flops=t.flops,
                prefill_flops=prefill_flops(profile, len(ids)), draft_flops=0.0,
                kv_cache_bytes=model_kv_bytes(model, 1, len(ids) + max(n - 1, 0)), kv_cache_bytes_draft=0,
                seconds=t.seconds, target_passes=n, flops_budget=flops_budget,
                extra={"early_exit": {"layers": list(rule.exit_layers), "threshold": rule.threshold,
                                      "depths": t.depths, "tokens": t.tokens}}))
            if ledger is not None:
                ledger.charge("inference", t.flops, tokens=len(ids) + n)
        return results
    finally:
        model.train(was_training)
