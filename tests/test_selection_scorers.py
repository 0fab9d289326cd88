"""One contract test for every registered scorer, on a tiny random model; plus FLOP accounting and bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from budgetune.data.examples import chat_example
from budgetune.errors import UserError
from budgetune.selection import registry, select

# The cheapest settings of each scorer: enough to run every code path once.
CHEAP = {
    "loss": {"batch_size": 4},
    "ifd": {"batch_size": 4},
    "el2n": {"runs": 1, "warmup_steps": 1, "batch_size": 4},
    "grand": {"runs": 1, "warmup_steps": 1, "batch_size": 4},
    "rho": {"holdout_steps": 1, "batch_size": 4},
    "s2l": {"checkpoints": 1, "warmup_steps": 1, "clusters": 2, "batch_size": 4},
    "less": {"checkpoints": 1, "warmup_steps": 1, "k": 16, "batch_size": 4, "warmup_fraction": 0.5},
    "greats": {"group": 4, "batch_size": 4},
    "staff": {"proxy": "layers:1", "regions": 2, "verify": 2, "warmup_steps": 1, "batch_size": 4},
    "bids": {"k": 16, "batch_size": 4},
    "dart": {"proxy": "layers:1", "bins": 2, "batch_size": 4},
    "cads": {"rounds": 2, "inner_steps": 1, "k": 16, "batch_size": 4},
}

QA = [("What is AI?", "The study of machines that think."), ("Who wrote Hamlet?", "Shakespeare."),
      ("What is 2+2?", "Four."), ("Name a colour.", "Blue, like the sky."), ("What is Python?", "A language."),
      ("Is water wet?", "Water makes things wet."), ("Tell a joke.", "Why did the chicken cross the road?"),
      ("What is a CPU?", "The processor of a computer.")]


def make(tokenizer, pairs, category="pool"):
    return [chat_example(tokenizer, [{"role": "system", "content": ""}, {"role": "user", "content": q},
                                     {"role": "assistant", "content": a}], 64, category) for q, a in pairs]


@pytest.fixture(scope="module")
def data(tokenizer):
    return make(tokenizer, QA), make(tokenizer, QA[:2] + [("What is ML?", "Machine learning.")], "ai")


def _fingerprint(model):
    return float(sum(p.detach().double().sum() for p in model.parameters()))


@pytest.mark.parametrize("name", registry.names())
def test_every_scorer_meets_the_contract(name, tiny_model, data):
    pool, target = data
    module = registry.get(name)
    scorer = registry.make(name, CHEAP.get(name, {}))
    before = _fingerprint(tiny_model)
    scores = scorer.score(tiny_model if module.NEEDS_MODEL else None, pool, target)
    assert scores.values.shape == (len(pool),)
    assert np.all(np.isfinite(scores.values))
    assert scores.flops >= 0
    if module.NEEDS_MODEL:
        assert scores.flops > 0 and scores.tokens > 0  # running a model is never free
        assert _fingerprint(tiny_model) == before  # warm-ups train a copy, never the caller's model
    assert scorer.default_strategy in ("topk", "bottomk", "offset", "stratified", "balanced")
    if scores.groups is not None:
        assert len(scores.groups) == len(pool)
    if scores.keep is not None:
        assert scores.keep.dtype == bool and len(scores.keep) == len(pool)


@pytest.mark.parametrize("name", [n for n in registry.names() if registry.get(n).NEEDS_MODEL])
def test_model_scorers_refuse_to_run_without_a_model(name, data):
    with pytest.raises(UserError, match=name):
        select({"scorer": name, "budget": "50%", "options": CHEAP.get(name, {})}, None, *data)


@pytest.mark.parametrize("name", [n for n in registry.names() if getattr(registry.get(n), "NEEDS_TARGET", False)])
def test_target_scorers_refuse_an_empty_target(name, tiny_model, data):
    with pytest.raises(UserError, match="target set is empty"):
        select({"scorer": name, "budget": "50%", "options": CHEAP.get(name, {})}, tiny_model, data[0], [])


def test_loss_flops_match_a_flop_counter(tiny_model, data):
    """The reported FLOPs are the ones torch counts (eager attention: FlopCounterMode misses CPU SDPA)."""
    from torch.utils.flop_counter import FlopCounterMode

    tiny_model.set_attn_implementation("eager")
    scorer = registry.make("loss", {"batch_size": 3})
    with FlopCounterMode(display=False) as counter:
        scores = scorer.score(tiny_model, data[0], [])
    assert scores.flops == pytest.approx(counter.get_total_flops(), rel=0.05)


def test_loss_scores_follow_the_model(tiny_model, data):
    """Teach the model one answer; that example's loss must fall relative to the others."""
    pool = data[0]
    scorer = registry.make("loss", {})
    before = scorer.score(tiny_model, pool, []).values
    from budgetune.data import collate
    from budgetune.methods.base import token_loss

    opt = torch.optim.Adam(tiny_model.model.layers.parameters(), lr=3e-3)  # not the big embedding: fast
    batch = collate([pool[0]], 0)
    for _ in range(15):
        s, n = token_loss(tiny_model, batch)
        (s / n).backward()
        opt.step()
        opt.zero_grad()
    after = scorer.score(tiny_model, pool, []).values
    assert after[0] - before[0] < np.median(after[1:] - before[1:]) - 0.5


def test_ifd_is_the_ratio_and_drops_above_one(tiny_model, data):
    """IFD against the definition, one unpadded example at a time in plain torch: the mean loss of the answer's
    tokens after the instruction over the mean loss of the same tokens after only the token before them."""
    import torch
    import torch.nn.functional as F

    def mean_loss(ids: list[int], labels: list[int]) -> float:
        with torch.no_grad():
            logits = tiny_model(input_ids=torch.tensor([ids])).logits[0, :-1]
        target = torch.tensor(labels[1:])
        keep = target != -100
        return float(F.cross_entropy(logits[keep].float(), target[keep]))

    pool = data[0][:6]
    scores = registry.make("ifd", {}).score(tiny_model, pool, [])
    expected = []
    for e in pool:
        first = next(i for i, t in enumerate(e.labels) if t != -100)  # the first answer token
        bare_ids, bare_labels = e.input_ids[first - 1:], [-100] + e.labels[first:]
        expected.append(mean_loss(e.input_ids, e.labels) / mean_loss(bare_ids, bare_labels))
    np.testing.assert_allclose(scores.values, expected, rtol=1e-4)
    np.testing.assert_array_equal(scores.keep, scores.values <= 1.0)


def test_ifd_refuses_text_without_an_instruction(tiny_model, tokenizer):
    from budgetune.data.examples import text_examples

    texts = text_examples(tokenizer, "To be or not to be, that is the question. " * 4, 32)
    with pytest.raises(UserError, match="IFD needs prompt/response"):
        registry.make("ifd", {}).score(tiny_model, texts, [])


def test_dsir_prefers_examples_like_the_target(tokenizer):
    pool = make(tokenizer, QA + [("What is machine learning in AI?", "Machine learning is part of AI.")])
    target = make(tokenizer, [("What is AI?", "AI is machine learning and more."), ("Define AI.", "Machine AI.")])
    values = registry.make("dsir", {"resample": False}).score(None, pool, target).values
    assert values.argmax() in (0, len(pool) - 1)  # the two pool examples about AI
    assert values[-1] > np.median(values)


def test_unknown_scorer_and_option_are_one_line_errors():
    with pytest.raises(UserError, match="unknown scorer 'nope'"):
        registry.make("nope")
    with pytest.raises(UserError, match="has no option 'bogus'"):
        registry.make("loss", {"bogus": 1})
    with pytest.raises(UserError, match="batch_size"):
        registry.make("loss", {"batch_size": 0})
