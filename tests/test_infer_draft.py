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
    assert agreement(tiny_model, tiny_model, batches) == 1.0  # a model agrees with itself everywhere
    assert not any(p.requires_grad for p in draft.parameters())


class _Always(torch.nn.Module):
    """A draft whose greedy token is always `token`."""

    def __init__(self, token: int, vocab: int):
        super().__init__()
        self.token, self.vocab = token, vocab

    def forward(self, input_ids, attention_mask=None):
        logits = torch.zeros(*input_ids.shape, self.vocab)
        logits[..., self.token] = 1.0
        return type("Out", (), {"logits": logits})()


def test_agreement_is_the_share_of_response_positions_where_greedy_tokens_match(tiny_model):
    """Known by construction: a draft that always proposes token t agrees exactly where the target's greedy next
    token is t, counted over the positions whose next token is a response token (4 prompt tokens of 12: positions
    3..10 of every row, 8 per row)."""
    batches = _batches()
    with torch.inference_mode():
        greedy = [tiny_model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits.argmax(-1)[:, 3:11]
                  for b in batches]
    vocab = tiny_model.config.vocab_size
    top = int(torch.cat([g.reshape(-1) for g in greedy]).mode().values)
    hits = sum(int((g == top).sum()) for g in greedy)
    assert agreement(_Always(top, vocab), tiny_model, batches) == pytest.approx(hits / (2 * 4 * 8))
    unused = next(t for t in range(vocab) if not any(bool((g == t).any()) for g in greedy))
    assert agreement(_Always(unused, vocab), tiny_model, batches) == 0.0
