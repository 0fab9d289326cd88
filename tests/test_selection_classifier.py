"""The hashed n-gram classifier of dev (target) against pool: it finds a planted target, cross-fitting keeps a tiny
dev set from being overfitted, its FLOPs follow its passes by hand arithmetic, auto chooses it, and it reads dev only."""

from __future__ import annotations

import numpy as np

from budgetune.data.examples import Example
from budgetune.selection import registry, select

TOPIC = ["planet", "orbit", "comet", "nebula", "galaxy", "telescope", "asteroid", "eclipse"]
OTHERS = [["bread", "oven", "flour", "yeast", "butter", "dough", "crust", "sugar"],
          ["goal", "referee", "striker", "league", "match", "pitch", "keeper", "tackle"],
          ["violin", "chord", "melody", "tempo", "choir", "sonata", "rhythm", "opera"],
          ["engine", "wheel", "brake", "clutch", "tyre", "piston", "gear", "exhaust"]]
COMMON = ["the", "a", "is", "of", "and", "to", "what", "it", "in", "that"]


def _text(rng, topic, unique: str | None) -> str:
    words = list(rng.choice(topic, 3)) + list(rng.choice(COMMON, 6))
    if unique:
        words.append(unique)  # a word of this example alone (a name, an id): what an overfitted classifier keys on
    rng.shuffle(words)
    return " ".join(words)


def _pool(seed: int = 0, unique: bool = False):
    """60 pool examples, the first 10 planted from the target topic, and 6 dev examples of that topic."""
    rng = np.random.default_rng(seed)
    pool = [Example([1], [1], "text", text=_text(rng, TOPIC if i < 10 else OTHERS[i % 4],
                                                 f"name{i}" if unique else None), uid=f"p{i}") for i in range(60)]
    dev = [Example([1], [1], "text", text=_text(rng, TOPIC, f"dev{i}" if unique else None), uid=f"d{i}")
           for i in range(6)]
    return pool, dev, np.arange(60) < 10


def test_the_planted_target_ranks_above_the_rest():
    pool, dev, planted = _pool()
    scores = registry.make("classifier").score(None, pool, dev)
    top = np.argsort(-scores.values)[:10]
    assert set(top) == set(np.flatnonzero(planted))
    assert scores.meta["folds"] == 5 and scores.flops > 0


def test_no_pool_example_is_scored_by_a_classifier_fitted_on_it(monkeypatch):
    """Cross-fitting: every pool example is scored once, by a fit whose training rows do not hold it (each example
    has a word of its own, so rows are told apart by content). Fitted on the whole pool (folds 1), the property
    fails, which the last lines check."""
    from sklearn.linear_model import LogisticRegression

    fits, scored = [], []
    real_fit, real_decision = LogisticRegression.fit, LogisticRegression.decision_function

    def rows(x):
        return {(tuple(x[i].indices), tuple(np.round(x[i].data, 9))) for i in range(x.shape[0])}

    def fit(self, x, y, *a, **k):
        self._rows = rows(x[np.asarray(y) == 0])  # the pool rows it was told are not target
        fits.append(self)
        return real_fit(self, x, y, *a, **k)

    def decision(self, x):
        scored.append((self, rows(x)))
        return real_decision(self, x)

    monkeypatch.setattr(LogisticRegression, "fit", fit)
    monkeypatch.setattr(LogisticRegression, "decision_function", decision)
    pool, dev, _ = _pool(seed=1, unique=True)
    registry.make("classifier").score(None, pool, dev)
    assert len(fits) == 5 and len(scored) == 5
    assert all(not (seen & model._rows) for model, seen in scored)
    assert sum(len(seen) for _, seen in scored) == len(pool) == len(set().union(*(seen for _, seen in scored)))
    fits.clear(), scored.clear()
    registry.make("classifier", {"folds": 1}).score(None, pool, dev)
    assert all(seen <= model._rows for model, seen in scored)


def test_the_flops_follow_the_passes_by_hand():
    """4 pool and 2 dev examples of 3 words each (12 + 6 stored features), 2 folds of 2, one solver iteration."""
    from sklearn.feature_extraction.text import HashingVectorizer

    texts = ["alpha beta gamma", "delta epsilon zeta", "eta theta iota", "kappa lambda mu", "nu xi omicron",
             "pi rho sigma"]
    assert HashingVectorizer(n_features=2**18, token_pattern=r"\S+", alternate_sign=False).transform(texts).nnz == 18
    examples = [Example([1], [1], "text", text=t, uid=str(i)) for i, t in enumerate(texts)]
    options = {"folds": 2, "max_iter": 1}
    scores = registry.make("classifier", options).score(None, examples[:4], examples[4:])
    assert scores.meta["iterations"] == [1, 1]
    idf = 2 * 2**18 + 5 * 18  # a log and an add per bucket; log1p, idf product, square, sum, division per feature
    fit = 1 * (4 * (4 * 3 + 4) + 30 * 4)  # 4 rows (2 pool, 2 dev), 12 features + 4 bias features, one iteration
    held = 2 * (2 * 3 + 2)  # w·x on the other fold's 2 rows
    assert scores.flops == idf + 2 * (fit + held)
    module = registry.get("classifier")
    config = registry.REGISTRY.config("classifier", options)
    assert module.predicted_flops(None, examples[:4], examples[4:], config) == scores.flops
    # With the default bound (100 iterations) the prediction is an upper bound of what a converged fit charges.
    default = registry.make("classifier").score(None, examples[:4], examples[4:])
    assert module.predicted_flops(None, examples[:4], examples[4:]) >= default.flops


def test_auto_picks_the_classifier_from_four_dev_examples_and_dsir_below(tiny_model):
    from budgetune.flops import profile_from_model
    from budgetune.selection.auto import pass_flops

    pool, dev, _ = _pool()
    pool = [Example(list(range(10, 10 + 5 + i % 7)), list(range(10, 10 + 5 + i % 7)), "text", text=e.text,
                    uid=e.uid) for i, e in enumerate(pool)]  # lengths that vary: FLOP pricing, not whole steps
    quarter = 0.25 * pass_flops(profile_from_model(tiny_model), pool, 8)
    chosen = select({"scorer": "auto"}, tiny_model, pool, dev[:4], total_flops=quarter)
    assert chosen.scorer == "classifier"
    assert chosen.summary["plan"]["section"]["options"] == {"dsir_weight": 0.5}  # auto runs the blend with DSIR
    assert np.sum(chosen.indices[:10] < 10) >= 8  # the planted 10 first (by chance: about 1.7 of 10)
    assert chosen.summary["flops"] <= chosen.summary["plan"]["predicted_scoring_flops"]
    assert select({"scorer": "auto"}, tiny_model, pool, dev[:3], total_flops=quarter).scorer == "dsir"


def test_the_classifier_under_auto_reads_dev_never_test(tiny_config_path, tokenizer, tmp_path, monkeypatch):
    from budgetune.data import DataSplit
    from budgetune.selection.scorers import classifier
    from budgetune.train.loop import train
    from tests.helpers import small_split, tiny_run_config

    base = small_split(tokenizer, n_train=48, n_target=16)
    dev, test = base.target[:8], base.target[8:16]
    seen = []
    real = classifier.features

    def spying(examples, config):
        seen.extend(e.uid for e in examples)
        return real(examples, config)

    monkeypatch.setattr(classifier, "features", spying)
    cfg = tiny_run_config(tiny_config_path, tmp_path / "run", max_steps=2)
    cfg.budget.max_flops = 1e10
    cfg.selection = {"scorer": "auto"}
    result = train(cfg, data=DataSplit(base.train, test, base.source, dev=dev), progress=False)
    import json

    summary = json.loads((result.run_dir / "selection.summary.json").read_text())
    assert summary["scorer"] == "classifier"
    assert seen and not {e.uid for e in test} & set(seen)
    assert {e.uid for e in dev} <= set(seen)
