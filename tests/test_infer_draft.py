"""The layer-skip draft: truncation keeps the target's weights, distillation moves it toward the target, and a
draft with another tokenizer is refused."""

from __future__ import annotations

import pytest
import torch

from budgetune.data import collate
from budgetune.data.examples import Example
from budgetune.errors import UserError
from budgetune.infer.draft import agreement, distill, truncated_copy


def _batches():
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(2):
        examples = []
        for _ in range(4):
            ids = torch.randint(10, 500, (12,), generator=g).tolist()
            examples.append(Example(ids, [-100] * 4 + ids[4:]))
        out.append(collate(examples, pad_id=2))
    return out


def test_truncated_copy_keeps_the_first_layers(tiny_model):
    draft = truncated_copy(tiny_model, 1)
    assert draft.config.num_hidden_layers == 1
    a = dict(tiny_model.named_parameters())
    for name, p in draft.named_parameters():
        assert torch.equal(p, a[name])
    assert draft.get_output_embeddings().weight.data_ptr() == draft.get_input_embeddings().weight.data_ptr()
    with pytest.raises(UserError):
        truncated_copy(tiny_model, 2)


def test_distillation_moves_the_draft_toward_the_target(tiny_model):
    torch.manual_seed(0)
    draft = truncated_copy(tiny_model, 1)
    batches = _batches()
    stats = distill(draft, tiny_model.eval(), batches, max_steps=12, lr=3e-3, log=None)
    assert stats["steps"] == 12 and stats["teacher_batches"] == 2
    assert stats["loss_last"] < stats["loss_first"]
    assert 0.0 <= agreement(draft, tiny_model, batches) <= 1.0
    assert not any(p.requires_grad for p in draft.parameters())
