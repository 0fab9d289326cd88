"""Draft models for speculative decoding: load one and check it shares the target's tokenizer, or build the
embedded model's own draft.

The embedded SmolLM2-135M has no published draft that shares its tokenizer offline, so one is built here
(layer-skip style, Elhoushi et al. 2024, "LayerSkip"): the target's first few decoder layers, its final norm and its
tied embedding/head, then distilled briefly on the embedded training data (cross-entropy to the target's top-k
next-token distribution, Hinton et al. 2015) because SmolLM2 was not trained to exit early (its raw first layers agree with the
full model on ~3% of tokens). Built on first use and cached under cache_dir()/draft. No library builds such a
truncated-and-distilled draft, hence the code here; generation itself stays transformers' assisted generation.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

from .. import atomic
from ..errors import UserError
from ..models import EMBEDDED, cache_dir, load_model, load_tokenizer

DEFAULT_LAYERS = 4


def _say(message: str) -> None:
    print(message, flush=True)


def draft_dir(name: str = "smollm2-135m", n_layers: int = DEFAULT_LAYERS) -> Path:
    return cache_dir() / "draft" / f"{EMBEDDED[name][2]}-first{n_layers}-distilled"


def truncated_copy(model, n_layers: int, source: dict | None = None):
    """A new model with the target's first n_layers decoder layers, final norm and embedding/head (from `source`, a
    plain transformers state dict of the target, when given)."""
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(model.config)
    if not 0 < n_layers < config.num_hidden_layers:
        raise UserError(f"draft layers {n_layers}: give 1 to {config.num_hidden_layers - 1}")
    config.num_hidden_layers = n_layers
    if getattr(config, "layer_types", None):
        config.layer_types = config.layer_types[:n_layers]
    draft = AutoModelForCausalLM.from_config(config, dtype=next(model.parameters()).dtype)
    state = {}
    for key, value in (model.state_dict() if source is None else source).items():
        parts = key.split(".")
        if "layers" in parts:
            i = parts.index("layers")
            if int(parts[i + 1]) >= n_layers:
                continue
        state[key] = value.clone()
    missing, unexpected = draft.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if "lm_head" not in k]:  # a tied head is absent from the state dict
        raise RuntimeError(f"draft weights do not line up: missing {missing}, unexpected {unexpected}")
    draft.tie_weights()
    return draft


def _next_token_mask(batch):
    """Positions whose next token is a response token: what the draft proposes during generation (the chat
    template and the fixed system prompt are trivially predictable and would inflate agreement)."""
    import torch

    mask = torch.zeros_like(batch["attention_mask"], dtype=torch.bool)
    mask[:, :-1] = batch["labels"][:, 1:] != -100
    return mask


def agreement(draft, target, batches) -> float:
    """Share of response tokens where the draft's greedy next token equals the target's (what greedy speculation
    accepts, measured teacher-forced)."""
    import torch

    same = total = 0
    with torch.inference_mode():
        for b in batches:
            mask = _next_token_mask(b)
            t = target(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits.argmax(-1)
            d = draft(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits.argmax(-1)
            same += int(((t == d) & mask).sum())
            total += int(mask.sum())
    return same / max(total, 1)


def distill(draft, target, train_batches, *, max_seconds: float = 180.0, max_steps: int = 400, lr: float = 5e-4,
            top_k: int = 32, log=_say) -> dict:
    """Train the draft's decoder layers and norm (the tied embedding frozen) toward the target's next-token
    distribution where the next token is a response token (what the draft will be asked to propose).

    The target's forward costs ~3× the draft's forward and backward together, so its top-k next-token distribution
    is computed once per batch and reused in later epochs (top-k distillation: cross-entropy to the renormalised
    top-k probabilities; the head of the distribution is what greedy acceptance depends on).
    """
    import torch
    import torch.nn.functional as F

    for name, p in draft.named_parameters():
        p.requires_grad_("embed_tokens" not in name and "lm_head" not in name)
    params = [p for p in draft.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    draft.train()
    cached: dict[int, tuple] = {}
    start, step, losses = time.perf_counter(), 0, []
    while step < max_steps and time.perf_counter() - start < max_seconds:
        i = step % len(train_batches)
        b = train_batches[i]
        mask = _next_token_mask(b)
        if i not in cached:
            with torch.no_grad():
                logits = target(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits[mask]
                top = logits.float().topk(top_k, dim=-1)
                cached[i] = (top.indices, F.softmax(top.values, dim=-1))
        index, probs = cached[i]
        student = F.log_softmax(draft(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits[mask], -1)
        loss = -(probs * student.gather(-1, index)).sum(-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
        step += 1
        if log and step % 20 == 0:
            log(f"draft distillation: step {step}, loss {sum(losses[-20:]) / 20:.3f}, "
                f"{time.perf_counter() - start:.0f} s")
    draft.eval()
    for p in draft.parameters():
        p.requires_grad_(False)
    return {"steps": step, "seconds": time.perf_counter() - start, "teacher_batches": len(cached), "top_k": top_k,
            "loss_first": losses[0] if losses else None,
            "loss_last": sum(losses[-10:]) / max(len(losses[-10:]), 1) if losses else None}


def build_embedded_draft(name: str = "smollm2-135m", n_layers: int = DEFAULT_LAYERS, *, max_seconds: float = 180.0,
                         max_steps: int = 300, teacher_batches: int = 48, batch_size: int = 8, max_tokens: int = 64,
                         lr: float = 5e-4, log=_say) -> Path:
    """Truncate and distill the embedded model's draft, then save it (weights, tokenizer, draft.json)."""
    import torch

    from ..config import DataConfig
    from ..data import collate, load_data

    torch.manual_seed(0)
    tokenizer = load_tokenizer(name)
    target = load_model(name).eval()
    for p in target.parameters():
        p.requires_grad_(False)
    split = load_data(DataConfig(max_seq_len=max_tokens), tokenizer)
    # Short sequences grouped by length: the teacher's forward and two full-vocabulary softmaxes over every token
    # dominate the cost, so batches carry little padding and a few hundred tokens each. Fixed order: repeatable.
    train = sorted(split.train, key=lambda e: (e.n_tokens, e.uid))
    batches = [collate(train[i: i + batch_size], tokenizer.pad_token_id) for i in range(0, len(train), batch_size)]
    order = torch.randperm(len(batches), generator=torch.Generator().manual_seed(0)).tolist()
    batches = [batches[i] for i in order][:teacher_batches]
    held = [collate(split.target[i: i + batch_size], tokenizer.pad_token_id)
            for i in range(0, min(len(split.target), 64), batch_size)]
    draft = truncated_copy(target, n_layers)
    before = agreement(draft, target, held)
    if log:
        log(f"building the speculative draft for {name}: first {n_layers} of {target.config.num_hidden_layers} "
            f"layers, distilling for {max_steps} steps or {max_seconds:.0f} s, whichever comes first (once; cached)")
    stats = distill(draft, target, batches, max_seconds=max_seconds, max_steps=max_steps, lr=lr, log=log)
    after = agreement(draft, target, held)
    meta = {"agreement_on": "held-out response tokens, teacher-forced", "target": name, "layers": n_layers, "batch_size": batch_size, "max_steps": max_steps, "max_tokens": max_tokens, "lr": lr, "agreement_before": before, "agreement_after": after,
            "heldout_tokens_batches": len(held), **stats}
    out = draft_dir(name, n_layers)
    with atomic.atomic_dir(out) as tmp:
        draft.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        atomic.write_json(tmp / "draft.json", meta)
    if log:
        log(f"draft saved to {out}: greedy agreement with the target {before:.1%} → {after:.1%} "
            f"(held-out response tokens)")
    return out


def embedded_draft_path(name: str = "smollm2-135m", n_layers: int = DEFAULT_LAYERS, *, build: bool = True,
                        log=_say) -> Path:
    path = draft_dir(name, n_layers)
    if (path / "draft.json").exists():
        return path
    if not build:
        raise UserError(f"no draft for {name} in {path}; run `python -m budgetune.infer.draft` to build it")
    return build_embedded_draft(name, n_layers, log=log)


def draft_info(path: str | Path) -> dict:
    meta = Path(path) / "draft.json"
    return json.loads(meta.read_text(encoding="utf-8")) if meta.exists() else {}


def load_draft(path: str, target, tokenizer):
    """A draft model from a path (any model reference budgetune loads), refused unless it shares the tokenizer."""
    draft_tok = load_tokenizer(str(path))
    if draft_tok.get_vocab() != tokenizer.get_vocab():
        a, b = len(draft_tok.get_vocab()), len(tokenizer.get_vocab())
        raise UserError(f"draft {path}: its tokenizer differs from the model's ({a} vs {b} tokens, different ids); "
                        f"speculative decoding needs the same tokenizer: use a draft of the same family or "
                        f"--speculative prompt-lookup")
    draft = load_model(str(path), dtype=str(next(target.parameters()).dtype).replace("torch.", ""))
    if draft.config.vocab_size != target.config.vocab_size:
        raise UserError(f"draft {path}: vocabulary size {draft.config.vocab_size} differs from the model's "
                        f"{target.config.vocab_size}; speculative decoding needs the same tokenizer and head")
    return draft.eval()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Build (or rebuild) the embedded model's speculative draft.")
    parser.add_argument("--layers", type=int, default=DEFAULT_LAYERS)
    parser.add_argument("--seconds", type=float, default=180.0, help="distillation time limit")
    parser.add_argument("--steps", type=int, default=300, help="distillation steps at most")
    parser.add_argument("--lr", type=float, default=5e-4)
    a = parser.parse_args()
    print(build_embedded_draft(n_layers=a.layers, max_seconds=a.seconds, max_steps=a.steps, lr=a.lr))
