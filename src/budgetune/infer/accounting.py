"""What one generation request costs: FLOPs of prefill and decode, KV-cache bytes, and the token cap a FLOP budget
allows. Pure functions of a FlopProfile and a model shape, plus a meter that counts the passes a model really ran.

FLOPs follow budgetune.flops (Kaplan et al. 2020, Table 1): the prefill of P prompt tokens is one forward over P
tokens (attention over the full P×P score matrix, as the kernels compute it); the token produced by the pass at
position t is fed back once, attending over the t tokens now in the cache. The last generated token is never fed
back, so n new tokens cost prefill(P) + Σ_{k=1}^{n-1} decode(P + k).
"""

from __future__ import annotations

from ..errors import UserError
from ..flops import FlopProfile, decode_flops_per_token, forward_flops


def prefill_flops(p: FlopProfile, prompt_len: int) -> float:
    return forward_flops(p, 1, prompt_len)


def request_flops(p: FlopProfile, prompt_len: int, new_tokens: int) -> float:
    """FLOPs to produce `new_tokens` tokens after a prompt of `prompt_len` tokens (one row, no padding)."""
    if new_tokens <= 0:
        return 0.0
    # Σ_{k=1}^{n-1} [2N + 4·L·(P+k)·d] in closed form.
    m = new_tokens - 1
    attn = 4.0 * p.n_layers * p.attn_dim * (m * prompt_len + m * (m + 1) / 2)
    return prefill_flops(p, prompt_len) + 2.0 * p.matmul_params * m + attn


def pass_flops(p: FlopProfile, past_len: int, new_len: int, batch: int = 1) -> float:
    """One forward pass feeding `new_len` tokens on top of `past_len` cached ones (prefill when past_len is 0)."""
    if past_len == 0:
        return forward_flops(p, batch, new_len)
    return batch * new_len * decode_flops_per_token(p, past_len + new_len)


def max_new_tokens_within(p: FlopProfile, prompt_len: int, budget: float, limit: int) -> int:
    """The largest n ≤ limit whose request_flops fit the budget (0 when even the prefill does not)."""
    lo, hi = 0, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if request_flops(p, prompt_len, mid) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def model_kv_bytes(model, batch: int, context: int) -> int:
    """KV-cache bytes of a live model through the planner's term (memory.terms.kv_cache_bytes, Pope et al. 2022),
    so generation and `plan --inference` use one formula."""
    from ..memory.spec import spec_from_dict
    from ..memory.terms import DTYPE_FORMATS, kv_cache_bytes

    fmt = DTYPE_FORMATS.get(str(next(model.parameters()).dtype).replace("torch.", ""), "fp32")
    try:
        spec = spec_from_dict(model.config.to_dict(), "model")
    except UserError:  # a family the planner has no analytic spec for: the same formula from the config
        c = model.config
        head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        kv_heads = getattr(c, "num_key_value_heads", None) or c.num_attention_heads
        size = next(model.parameters()).element_size()
        return int(2 * c.num_hidden_layers * batch * context * kv_heads * head_dim * size)
    return kv_cache_bytes(spec, batch, context, fmt)


class PassMeter:
    """Counts the forward passes a model really runs during generate(), with their FLOPs.

    A forward pre-hook sees each pass's new tokens and the cache length before it, so rejected speculative tokens,
    padding and the draft model's own passes are all counted as executed.
    """

    def __init__(self, model, profile: FlopProfile):
        self.profile = profile
        self.flops = 0.0
        self.passes = 0
        self.tokens_fed = 0
        self.max_context = 0  # the longest cache a pass saw, rejected speculative tokens included
        # A peft wrapper's generate() calls the wrapped model directly, so the hook goes on the innermost model.
        inner = model.get_base_model() if hasattr(model, "get_base_model") else model
        self._handle = inner.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            ids = kwargs.get("inputs_embeds")
        if ids is None:
            return
        cache = kwargs.get("cache", kwargs.get("past_key_values"))  # transformers 5 renamed the argument
        past = int(cache.get_seq_length()) if cache is not None and hasattr(cache, "get_seq_length") else 0
        batch, new = int(ids.shape[0]), int(ids.shape[1])
        self.flops += pass_flops(self.profile, past, new, batch)
        self.passes += 1
        self.tokens_fed += batch * new
        self.max_context = max(self.max_context, past + new)

    def reset(self) -> None:
        self.flops, self.passes, self.tokens_fed, self.max_context = 0.0, 0, 0, 0

    def close(self) -> None:
        self._handle.remove()
