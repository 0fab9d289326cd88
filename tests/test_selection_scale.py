"""Scorers that scale: scoring batches under a token cap, the same numbers under any cap, a progress bar on every
scoring pass, memory that does not follow the pool, and cost models that price exactly what the scorers run."""

from __future__ import annotations

import tracemalloc
from typing import ClassVar

import numpy as np
import pytest
import torch

from budgetune.data.examples import Example, chat_example
from budgetune.selection import registry, warmup
from budgetune.selection.forward import batch_groups, token_cap, token_stats

QA = [("What is AI?", "The study of machines that think, learn and plan."), ("Who wrote Hamlet?", "Shakespeare."),
      ("What is 2+2?", "Four."), ("Name a colour.", "Blue, like the sky on a clear summer day."),
      ("What is Python?", "A language."), ("Is water wet?", "Water makes things wet."),
      ("Tell a joke.", "Why did the chicken cross the road? To get to the other side."),
      ("What is a CPU?", "The processor of a computer.")]


def make(tokenizer, pairs, category="pool"):
    return [chat_example(tokenizer, [{"role": "system", "content": ""}, {"role": "user", "content": q},
                                     {"role": "assistant", "content": a}], 64, category) for q, a in pairs]


@pytest.fixture(scope="module")
def data(tokenizer):
    return make(tokenizer, QA), make(tokenizer, QA[:2] + [("What is ML?", "Machine learning.")], "ai")


def test_batches_stop_at_the_example_count_or_the_token_cap():
    # sorted: 10 ×5, 100 ×3, 600; cap 250 tokens, at most 4 rows. By hand: [10 ×4], [10, 100] (3 × 100 > 250),
    # [100, 100] (3 × 600 > 250), [600] alone (longer than the cap by itself).
    lengths = [100, 10, 600, 10, 100, 10, 10, 100, 10]
    groups = batch_groups(lengths, 4, max_tokens=250)
    assert [sorted(lengths[i] for i in g) for g in groups] == [[10] * 4, [10, 100], [100, 100], [600]]
    assert sorted(int(i) for g in groups for i in g) == list(range(len(lengths)))


def test_capped_scoring_gives_the_same_losses_in_batches_under_the_cap(tiny_model, data):
    pool, _ = data
    shapes = []
    hook = tiny_model.register_forward_hook(lambda m, args, kwargs, out: shapes.append(kwargs["input_ids"].shape),
                                            with_kwargs=True)
    try:
        free, _, flops_free, _ = token_stats(tiny_model, pool, batch_size=8, progress=None)
        n_free = len(shapes)
        shapes.clear()
        cap = 2 * max(e.n_tokens for e in pool)
        with token_cap(cap):
            capped, _, flops_capped, _ = token_stats(tiny_model, pool, batch_size=8, progress=None)
    finally:
        hook.remove()
    assert n_free == 1 and len(shapes) >= len(pool) // 2  # the cap split the one batch of 8 into pairs or singles
    assert all(b * s <= cap for b, s in shapes)
    # Padding is masked, so an example's loss does not depend on its batch mates.
    np.testing.assert_allclose(capped, free, rtol=1e-5, atol=1e-6)
    assert flops_capped < flops_free  # shorter batches pad less


def test_a_capped_warmup_step_follows_the_same_gradient(tiny_model, data):
    pool, _ = data
    first_moments = []

    def keep(ck):
        first_moments.append(torch.cat([m.reshape(-1) for m, _ in ck.adam.values()]).clone())

    warmup.run(tiny_model, pool, steps=1, batch_size=8, seed=3, on_checkpoint=keep)
    with token_cap(max(e.n_tokens for e in pool)):  # one example per micro-batch for the longest ones
        warmup.run(tiny_model, pool, steps=1, batch_size=8, seed=3, on_checkpoint=keep)
    # AdamW's first moment after one step is (1 − β1)·g: the accumulated micro-batches give the one-batch gradient.
    assert first_moments[0].abs().max() > 0
    torch.testing.assert_close(first_moments[1], first_moments[0], rtol=1e-4, atol=1e-9)


CHEAP = {
    "loss": {"batch_size": 4},
    "ifd": {"batch_size": 4},
    "el2n": {"runs": 2, "warmup_steps": 2, "batch_size": 4},
    "grand": {"runs": 1, "warmup_steps": 2, "batch_size": 4},
    "rho": {"holdout_steps": 2, "batch_size": 2},
    "s2l": {"checkpoints": 2, "warmup_steps": 3, "clusters": 2, "batch_size": 4},
    "less": {"checkpoints": 2, "warmup_steps": 2, "k": 16, "batch_size": 4, "warmup_fraction": 0.5},
}


class Recorder:
    """Stands in for tqdm: records each bar's description, total and the examples it was advanced by."""

    bars: ClassVar[list] = []

    def __init__(self, total=None, desc=None, **kw):
        self.desc, self.total, self.n = desc, total, 0
        Recorder.bars.append(self)

    def update(self, n=1):
        self.n += n

    def close(self):
        pass


HEAVY = {"less", "s2l"}  # the two slowest on two shared cores: run with -m slow


@pytest.mark.parametrize("name", ["dsir", *[pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n
                                            for n in sorted(CHEAP)]])
def test_cost_model_prices_what_the_scorer_charges_and_every_pass_shows_progress(name, tiny_model, data,
                                                                                  monkeypatch):
    import tqdm.auto

    pool, target = data
    module = registry.get(name)
    config = registry.REGISTRY.config(name, CHEAP.get(name))
    monkeypatch.setattr(tqdm.auto, "tqdm", Recorder)
    Recorder.bars = []
    with token_cap(60):  # some batches split, so the prediction must follow the cap too
        charged = module.Scorer(config).score(tiny_model if module.NEEDS_MODEL else None, pool, target).flops
        if name != "dsir":
            predicted = module.predicted_work(tiny_model, pool, target, config)
            assert predicted.flops == pytest.approx(charged, rel=1e-9)
    assert Recorder.bars and all(b.desc for b in Recorder.bars)
    assert all(b.n == b.total for b in Recorder.bars)  # every bar ran to its end
    assert any(b.total == len(pool) for b in Recorder.bars)  # a pass over the pool is shown
    if name not in ("dsir", "loss", "ifd"):
        assert any(b.desc == "warm-up steps" for b in Recorder.bars)


def test_dsir_memory_follows_the_ngrams_not_pool_times_buckets():
    from budgetune.selection.scorers import dsir

    words = [f"w{i}" for i in range(500)]
    rng = np.random.default_rng(0)
    pool = [Example([1, 2], [1, 2], text=" ".join(rng.choice(words, 12))) for _ in range(2000)]
    target = pool[:20]
    dense = len(pool) * 10000 * 4  # a float32 [pool, buckets] count matrix: 80 MB
    tracemalloc.start()
    try:
        scores = registry.make("dsir").score(None, pool, target)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < dense / 10
    # the sparse counts are the n-gram counts: 12 unigrams + 11 bigrams per example
    counts = dsir.hashed_counts(pool[:3], 10000, 2)
    assert np.asarray(counts.sum(axis=1)).ravel().tolist() == [23.0, 23.0, 23.0]
    assert np.all(np.isfinite(scores.values))


SURVEY = {
    "greats": {"group": 3, "batch_size": 2},
    "bids": {"k": 16, "warmup_steps": 2, "batch_size": 4},
    "dart": {"proxy": "layers:1", "bins": 2, "batch_size": 4},
    "staff": {"proxy": "layers:1", "regions": 2, "verify": 2, "warmup_steps": 2, "batch_size": 4},
    "cads": {"rounds": 2, "inner_steps": 2, "k": 16, "batch_size": 4},
}
# Scorers whose work follows choices made while scoring (STAFF's verified regions, CADS's mixture batches): their
# cost model is an upper bound, held to within this factor of the charge on the tiny pool.
BOUND = {"staff": 1.2, "cads": 1.2}  # measured: 1.014 and 1.085


@pytest.mark.parametrize("name", sorted(SURVEY))  # each well under a second on the tiny model
def test_survey_scorers_cost_models_price_what_they_charge(name, tiny_model, data):
    pool, target = data
    module = registry.get(name)
    config = registry.REGISTRY.config(name, SURVEY[name])
    with token_cap(60):  # some batches split, so the prediction must follow the cap too
        charged = module.Scorer(config).score(tiny_model, pool, target).flops
        predicted = module.predicted_work(tiny_model, pool, target, config)
    assert charged > 0
    if name in BOUND:
        assert charged * (1 - 1e-9) <= predicted.flops <= BOUND[name] * charged
    else:
        assert predicted.flops == pytest.approx(charged, rel=1e-9)
    assert predicted.copies >= (0 if name == "dart" else 1)


def test_auto_leaves_out_the_survey_scorers_that_did_not_beat_random(tiny_model, data):
    from budgetune.selection.auto import auto_candidates, predict_seconds
    from budgetune.selection.costs import Rates

    pool, target = data
    names = {n for n, _ in auto_candidates()}
    assert names and not names & set(SURVEY)  # priced (predict_seconds) but never auto's pick
    # Priced in seconds before they run: GREATS's work is backward passes and one LoRA copy, so at 1e9 FLOP/s of
    # training and 0.5 s a copy its seconds are its FLOPs / 1e9 + 0.5; the forward rate must not enter.
    section = {"scorer": "greats", "options": SURVEY["greats"]}
    work = registry.get("greats").predicted_work(tiny_model, pool, target,
                                                 registry.REGISTRY.config("greats", SURVEY["greats"]))
    seconds = predict_seconds(section, tiny_model, pool, target, rates=Rates(forward=1.0, train=1e9, copy_s=0.5))
    assert work.forward == 0 and work.train > 0
    assert seconds == pytest.approx(work.train / 1e9 + 0.5)
