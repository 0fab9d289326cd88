"""Greedy generation that states its cost: FLOPs per request (prefill + decode, attention over the growing context),
KV-cache bytes, an optional per-request FLOP budget enforced by a StoppingCriteria, and speculative decoding
through transformers' assisted generation (a draft model or prompt lookup), charged to a Ledger's inference phase.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from ..errors import UserError
from ..flops import forward_flops, profile_from_model
from .accounting import (
    PassMeter,
    max_new_tokens_within,
    model_kv_bytes,
    prefill_flops,
    request_flops,
)

SPECULATIVE_KINDS = ("none", "draft", "prompt-lookup")


@dataclass
class Speculation:
    """How to speculate: no speculation, a draft model sharing the tokenizer, or n-grams looked up in the prompt."""

    kind: str = "none"
    draft: object | None = None  # the draft model, for kind == "draft"
    draft_tokens: int = 3  # tokens the draft proposes per target pass (constant schedule)
    lookup_tokens: int = 10  # tokens prompt lookup proposes per target pass
    lookup_ngram: int = 2  # n-gram size prompt lookup matches

    def __post_init__(self) -> None:
        if self.kind not in SPECULATIVE_KINDS:
            raise UserError(f"--speculative '{self.kind}' is not known; use none, draft[:PATH] or prompt-lookup")
        if self.kind == "draft" and self.draft is None:
            raise ValueError("Speculation(kind='draft') needs the draft model")

    @property
    def enabled(self) -> bool:
        return self.kind != "none"


@dataclass
class GenerationResult:
    prompt: str
    text: str
    prompt_tokens: int
    new_tokens: int
    stop: str  # eos | max_new_tokens | flops_budget
    flops: float  # this request's FLOPs: target model, plus the draft model's when speculating
    prefill_flops: float
    draft_flops: float
    kv_cache_bytes: int  # peak KV cache of this request (target model; the draft's is kv_cache_bytes_draft)
    kv_cache_bytes_draft: int
    seconds: float  # wall time of the batch this request ran in, shared equally by its rows
    target_passes: int = 0  # forward passes of the target model (speculative: verification passes)
    draft_proposed: int = 0  # speculative tokens proposed
    draft_accepted: int = 0  # of those, accepted by the target
    flops_budget: float | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def acceptance(self) -> float | None:
        return self.draft_accepted / self.draft_proposed if self.draft_proposed else None


class TokenCapCriteria(StoppingCriteria):
    """Stops each row of a batch at its own cap of new tokens (the most its FLOP budget pays for)."""

    def __init__(self, caps: list[int], start: int):
        self.caps = torch.tensor(caps)
        self.start = start

    def __call__(self, input_ids, scores, **kwargs):
        return (input_ids.shape[1] - self.start) >= self.caps.to(input_ids.device)


class MeteredBudgetCriteria(StoppingCriteria):
    """Speculative passes cost what the draft proposed and the target verified, known only after they ran: stop
    while the worst case of one more round still fits the budget, so the budget is never exceeded."""

    def __init__(self, meters: list[PassMeter], budget: float, worst_next: float):
        self.meters, self.budget, self.worst_next = meters, budget, worst_next
        self.fired = False

    def __call__(self, input_ids, scores, **kwargs):
        spent = sum(m.flops for m in self.meters)
        done = spent + self.worst_next > self.budget
        self.fired = self.fired or done
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


def as_messages(prompt) -> list[dict]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, list) and all(isinstance(m, dict) and "role" in m and "content" in m for m in prompt):
        return prompt[:-1] if prompt and prompt[-1]["role"] == "assistant" else prompt  # an example: ask its question
    raise UserError(f"prompt {str(prompt)[:60]!r}: give text or a list of chat messages {{role, content}}")


def encode_prompts(tokenizer, prompts: list) -> list[list[int]]:
    """Token ids of each prompt, rendered with the tokenizer's chat template (plain text when it has none)."""
    out = []
    for i, prompt in enumerate(prompts):
        if isinstance(prompt, str) and not prompt.strip():
            raise UserError(f"prompt {i + 1} is empty; give each prompt some text")
        if getattr(tokenizer, "chat_template", None):
            text = tokenizer.apply_chat_template(as_messages(prompt), tokenize=False, add_generation_prompt=True)
        else:
            text = prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in as_messages(prompt))
        out.append(tokenizer(text, add_special_tokens=False)["input_ids"])
    return out


def _prompt_text(prompt) -> str:
    return prompt if isinstance(prompt, str) else "\n".join(f"{m['role']}: {m['content']}" for m in prompt)


def _greedy_kwargs(tokenizer, max_new_tokens: int) -> dict:
    # Sampling fields set to None so a model's generation_config that samples cannot leak into greedy decoding.
    return dict(do_sample=False, temperature=None, top_p=None, top_k=None, max_new_tokens=max_new_tokens,
                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)


def check_prefill(profile, prompt_lens: list[int], budget: float | None) -> None:
    if budget is None:
        return
    if budget <= 0:
        raise UserError(f"--flops-budget {budget:g} must be positive")
    for i, n in enumerate(prompt_lens):
        need = request_flops(profile, n, 1)
        if need > budget:
            raise UserError(f"prompt {i + 1} has {n} tokens; its prefill alone needs {need:.3g} FLOPs, more than "
                            f"--flops-budget {budget:.3g}; raise the budget to at least {need:.3g} or shorten it")


@torch.inference_mode()
def generate(model, tokenizer, prompts: list, *, max_new_tokens: int = 128, flops_budget: float | None = None,
             speculation: Speculation | None = None, batch_size: int = 16, ledger=None,
             streamer=None) -> list[GenerationResult]:
    """Greedy completions of `prompts` (text or chat messages), one GenerationResult each, in order.

    Plain decoding runs in batches (left padded, grouped by length); speculative decoding runs one prompt at a time,
    which is all transformers' assisted generation supports. When `ledger` is given, the FLOPs that ran (padding and
    rejected speculative tokens included) are charged to its inference phase with the tokens processed.
    """
    if not prompts:
        raise UserError("no prompts given; pass --prompt TEXT or a --file with at least one prompt")
    if max_new_tokens < 1:
        raise UserError(f"--max-new-tokens {max_new_tokens} must be at least 1")
    speculation = speculation or Speculation()
    was_training = model.training
    model.eval()
    try:
        return _generate(model, tokenizer, prompts, max_new_tokens, flops_budget, speculation, batch_size, ledger,
                         streamer)
    finally:
        model.train(was_training)  # a model evaluated mid-training goes back to training mode


def _generate(model, tokenizer, prompts, max_new_tokens, flops_budget, speculation, batch_size, ledger, streamer):
    profile = profile_from_model(model)
    ids = encode_prompts(tokenizer, prompts)
    check_prefill(profile, [len(x) for x in ids], flops_budget)
    if speculation.enabled:
        results = []
        for p, x in zip(prompts, ids):
            if flops_budget is not None and _first_round_flops(profile, speculation, len(x)) > flops_budget:
                # One speculative round would overrun the budget; plain decoding can stop at the exact token.
                r = _generate_batch(model, tokenizer, [p], [x], profile, max_new_tokens, flops_budget, streamer,
                                    ledger)[0]
                r.extra["speculative"] = "none (budget below one speculative round)"
            else:
                r = _generate_one(model, tokenizer, p, x, profile, max_new_tokens, flops_budget, speculation,
                                  streamer, ledger)
            results.append(r)
    else:
        results = [None] * len(prompts)
        order = sorted(range(len(prompts)), key=lambda i: len(ids[i]))  # less padding per batch
        for start in range(0, len(order), batch_size):
            rows = order[start: start + batch_size]
            batch = _generate_batch(model, tokenizer, [prompts[i] for i in rows], [ids[i] for i in rows], profile,
                                    max_new_tokens, flops_budget, streamer, ledger)
            for i, r in zip(rows, batch):
                results[i] = r
    return results


def _stop_reason(tokens: list[int], eos_ids: set[int], cap: int, max_new_tokens: int) -> str:
    if tokens and tokens[-1] in eos_ids:
        return "eos"
    if len(tokens) >= cap and cap < max_new_tokens:
        return "flops_budget"
    return "max_new_tokens"


def _eos_ids(tokenizer, model) -> set[int]:
    eos = model.generation_config.eos_token_id if model.generation_config is not None else None
    eos = eos if isinstance(eos, list) else [eos]
    return {int(e) for e in eos + [tokenizer.eos_token_id] if e is not None}


def _generate_batch(model, tokenizer, prompts, ids, profile, max_new_tokens, budget, streamer, ledger):
    pad = tokenizer.pad_token_id
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, x in enumerate(ids):
        input_ids[row, width - len(x):] = torch.tensor(x)
        mask[row, width - len(x):] = 1
    caps = [max_new_tokens if budget is None else max_new_tokens_within(profile, len(x), budget, max_new_tokens)
            for x in ids]
    criteria = StoppingCriteriaList([TokenCapCriteria(caps, width)]) if budget is not None else None
    meter = PassMeter(model, profile)
    device = next(model.parameters()).device
    start = time.perf_counter()
    try:
        out = model.generate(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                             stopping_criteria=criteria, streamer=streamer if len(ids) == 1 else None,
                             **_greedy_kwargs(tokenizer, max_new_tokens))
    finally:
        meter.close()
    seconds = time.perf_counter() - start
    eos_ids = _eos_ids(tokenizer, model)
    results = []
    for row, (prompt, x) in enumerate(zip(prompts, ids)):
        new = out[row, width:].tolist()
        cut = next((k + 1 for k, t in enumerate(new) if t in eos_ids), len(new))
        new = new[:min(cut, caps[row])]
        n = len(new)
        flops = request_flops(profile, len(x), n)
        results.append(GenerationResult(
            prompt=_prompt_text(prompt), text=tokenizer.decode(new, skip_special_tokens=True), prompt_tokens=len(x),
            new_tokens=n, stop=_stop_reason(new, eos_ids, caps[row], max_new_tokens), flops=flops,
            prefill_flops=prefill_flops(profile, len(x)), draft_flops=0.0,
            kv_cache_bytes=model_kv_bytes(model, 1, len(x) + max(n - 1, 0)), kv_cache_bytes_draft=0,
            seconds=seconds / len(ids), target_passes=n, flops_budget=budget,
            extra={"batch_executed_flops": meter.flops, "batch_rows": len(ids)}))
    if ledger is not None:
        ledger.charge("inference", meter.flops, tokens=sum(r.prompt_tokens + r.new_tokens for r in results))
    return results


def _gamma(spec: Speculation) -> int:
    return spec.draft_tokens if spec.kind == "draft" else spec.lookup_tokens


def _first_round_flops(profile, spec: Speculation, prompt_len: int) -> float:
    """An upper bound of the first speculative round: the target's prefill over prompt and candidates, and the
    draft's forward over the same tokens."""
    gamma = _gamma(spec)
    flops = forward_flops(profile, 1, prompt_len + gamma)
    if spec.kind == "draft":
        flops += forward_flops(profile_from_model(spec.draft), 1, prompt_len + gamma)
    return flops


def _generate_one(model, tokenizer, prompt, ids, profile, max_new_tokens, budget, spec: Speculation, streamer,
                  ledger) -> GenerationResult:
    device = next(model.parameters()).device
    input_ids = torch.tensor([ids], device=device)
    meters = [PassMeter(model, profile)]
    kwargs = _greedy_kwargs(tokenizer, max_new_tokens)
    gamma = _gamma(spec)
    draft_profile = None
    if spec.kind == "draft":
        draft_profile = profile_from_model(spec.draft)
        meters.append(PassMeter(spec.draft, draft_profile))
        spec.draft.generation_config.num_assistant_tokens = spec.draft_tokens
        spec.draft.generation_config.num_assistant_tokens_schedule = "constant"
        kwargs["assistant_model"] = spec.draft
    else:
        kwargs["prompt_lookup_num_tokens"] = spec.lookup_tokens
        kwargs["max_matching_ngram_size"] = spec.lookup_ngram
    criteria = None
    if budget is not None:
        context = len(ids) + max_new_tokens + gamma
        worst = (gamma + 1) * (2.0 * profile.matmul_params + 4.0 * profile.n_layers * context * profile.attn_dim)
        if draft_profile is not None:
            worst += gamma * (2.0 * draft_profile.matmul_params
                              + 4.0 * draft_profile.n_layers * context * draft_profile.attn_dim)
        criteria = StoppingCriteriaList([MeteredBudgetCriteria(meters, budget, worst)])
    start = time.perf_counter()
    try:
        out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                             stopping_criteria=criteria, streamer=streamer, **kwargs)
    finally:
        for m in meters:
            m.close()
    seconds = time.perf_counter() - start
    new = out[0, len(ids):].tolist()
    eos_ids = _eos_ids(tokenizer, model)
    target = meters[0]
    # Each verification pass feeds the pending token plus the candidates (the first also feeds the prompt), and
    # yields the accepted candidates plus one token of its own.
    proposed = (target.tokens_fed - len(ids)) - (target.passes - 1)
    accepted = len(new) - target.passes
    fired = criteria is not None and criteria[0].fired
    stop = "eos" if new and new[-1] in eos_ids else ("flops_budget" if fired and len(new) < max_new_tokens
                                                      else "max_new_tokens")
    draft_flops = meters[1].flops if len(meters) > 1 else 0.0
    draft_kv = 0
    if spec.kind == "draft":
        draft_kv = model_kv_bytes(spec.draft, 1, meters[1].max_context)
    result = GenerationResult(
        prompt=_prompt_text(prompt), text=tokenizer.decode(new, skip_special_tokens=True), prompt_tokens=len(ids),
        new_tokens=len(new), stop=stop, flops=target.flops + draft_flops,
        prefill_flops=prefill_flops(profile, len(ids)), draft_flops=draft_flops,
        kv_cache_bytes=model_kv_bytes(model, 1, target.max_context), kv_cache_bytes_draft=draft_kv,
        seconds=seconds, target_passes=target.passes, draft_proposed=max(proposed, 0),
        draft_accepted=max(accepted, 0), flops_budget=budget, extra={"speculative": spec.kind})
    if ledger is not None:
        ledger.charge("inference", result.flops, tokens=len(ids) + len(new))
    return result


def summarize(results: list[GenerationResult]) -> dict:
    """Totals over requests: tokens, FLOPs, FLOPs per generated token, tokens/s, acceptance."""
    new = sum(r.new_tokens for r in results)
    flops = sum(r.flops for r in results)
    seconds = sum(r.seconds for r in results)
    proposed = sum(r.draft_proposed for r in results)
    return {"requests": len(results), "new_tokens": new, "prompt_tokens": sum(r.prompt_tokens for r in results),
            "flops": flops, "flops_per_new_token": flops / new if new else None, "seconds": seconds,
            "tokens_per_second": new / seconds if seconds else None,
            "target_passes": sum(r.target_passes for r in results),
            "acceptance": sum(r.draft_accepted for r in results) / proposed if proposed else None,
            "cut_by_budget": sum(r.stop == "flops_budget" for r in results)}
