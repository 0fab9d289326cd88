"""A `layers:K` proxy of the training model: during a run the refresher re-scores with the stepper's peft model, so
the proxy must be built from it (adapters merged, as the model is now) without changing it."""

from __future__ import annotations

import copy

import torch

from budgetune.infer.draft import truncated_copy
from budgetune.selection.proxy import proxy_for


def _trained_lora(model):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                                                  task_type="CAUSAL_LM"))
    with torch.no_grad():  # adapters as after some training: B is no longer zero
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    return peft_model


def test_a_proxy_of_a_peft_model_is_its_merged_first_layers(tiny_model):
    peft_model = _trained_lora(tiny_model)
    before = {k: v.clone() for k, v in peft_model.state_dict().items()}
    proxy, described = proxy_for(peft_model, "layers:1")
    # Independent reference: peft's own merge on a copy, then the plain model's truncated copy.
    reference = truncated_copy(copy.deepcopy(peft_model).merge_and_unload(), 1)
    ids = torch.randint(0, 1000, (2, 12))
    with torch.no_grad():
        got, want = proxy(input_ids=ids).logits, reference(input_ids=ids).logits
    assert proxy.config.num_hidden_layers == 1 and "first 1 of 2" in described
    assert torch.allclose(got, want, atol=1e-5)
    # the adapters matter here (a proxy of the base weights alone would differ), and the training model is unchanged
    with torch.no_grad():
        base_only = truncated_copy(copy.deepcopy(peft_model).unload(), 1)(input_ids=ids).logits
    assert not torch.allclose(got, base_only, atol=1e-3)
    after = peft_model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
