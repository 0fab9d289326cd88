"""Dev and test apart: selection and the governor read dev; the reported loss is on test, which no scorer sees."""

from __future__ import annotations

from budgetune.config import DataConfig
from budgetune.data import DataSplit, heldout_key, load_data
from tests.helpers import small_split, tiny_run_config


def test_load_data_cuts_the_heldout_prompts_into_dev_and_test(tokenizer):
    cfg = DataConfig()
    cfg.max_seq_len = 64
    split = load_data(cfg, tokenizer)
    assert split.apart and split.dev and split.test
    dev_prompts = {heldout_key(e) for e in split.dev}
    test_prompts = {heldout_key(e) for e in split.test}
    train_prompts = {heldout_key(e) for e in split.train}
    assert not dev_prompts & test_prompts
    assert not (dev_prompts | test_prompts) & train_prompts


def test_the_test_split_never_reaches_a_scorer_or_the_governor(tiny_config_path, tokenizer, tmp_path, monkeypatch):
    from budgetune.selection import registry
    from budgetune.train import loop
    from budgetune.train.evaluate import heldout_loss, heldout_losses
    from budgetune.train.loop import train

    base = small_split(tokenizer, n_train=48, n_target=16)
    dev, test = base.target[:8], base.target[8:16]
    data = DataSplit(base.train, test, base.source, dev=dev)
    test_uids = {e.uid for e in test}
    seen_by_scorers, seen_by_loop = [], []
    real_make = registry.make

    def spying_make(name, options=None):
        scorer = real_make(name, options)
        real_score = scorer.score

        def score(model, pool, target):
            seen_by_scorers.extend(e.uid for e in list(pool) + list(target))
            return real_score(model, pool, target)

        scorer.score = score
        return scorer

    def spying_losses(model, examples, **kw):
        seen_by_loop.append([e.uid for e in examples])
        return heldout_losses(model, examples, **kw)

    monkeypatch.setattr(registry, "make", spying_make)
    monkeypatch.setattr(loop, "heldout_losses", spying_losses)
    cfg = tiny_run_config(tiny_config_path, tmp_path / "run", max_steps=4)
    cfg.selection = {"scorer": "dsir", "budget": "50%"}
    result = train(cfg, data=data, progress=False)
    assert seen_by_scorers and not test_uids & set(seen_by_scorers)
    # Every evaluation the loop makes for itself (the governor's signal) reads dev only.
    assert seen_by_loop and all(set(uids) == {e.uid for e in dev} for uids in seen_by_loop)
    # The reported loss is the final model's loss on test, not on dev.
    import accelerate

    acc = accelerate.Accelerator(cpu=True)
    model = result.extra["model"]
    on_test = heldout_loss(model, test, pad_id=tokenizer.pad_token_id, batch_size=8, accelerator=acc)[0]
    on_dev = heldout_loss(model, dev, pad_id=tokenizer.pad_token_id, batch_size=8, accelerator=acc)[0]
    assert abs(result.after_loss - on_test) < 1e-4 and abs(on_dev - on_test) > 1e-4
    summary = (result.run_dir / "summary.json").read_text()
    assert '"test_size": 8' in summary and "no scorer or governor saw" in summary
