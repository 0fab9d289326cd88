"""The FLOP ledger against independent references: torch's FlopCounterMode over the very step the method runs, and
hand arithmetic from the config. The test model is attention-heavy (vocabulary 256, rows of ~200 tokens: attention
is about 40% of a full step), so a wrong attention term fails here."""

from __future__ import annotations

import random

import pytest
import torch

from budgetune.errors import UserError
from budgetune.flops import profile_from_model, train_step_flops
from budgetune.flops_reference import counted

H, I, L, HEADS, KV, V = 64, 128, 2, 4, 2, 256  # hidden, intermediate, layers, heads, kv heads, vocabulary
LLAMA = {"model_type": "llama", "hidden_size": H, "intermediate_size": I, "num_hidden_layers": L, "num_attention_heads": HEADS,
             "num_key_value_heads": KV, "vocab_size": V, "max_position_embeddings": 512, "tie_word_embeddings": False,
             "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}


def _model(cfg: dict = LLAMA, seed: int = 0):
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    kw = {k: v for k, v in cfg.items() if k != "model_type"}
    return AutoModelForCausalLM.from_config(AutoConfig.for_model(cfg["model_type"], **kw))


def _batch(seed: int = 0, rows: int = 2, lengths=(150, 220)) -> dict:
    """Padded, masked, prompt-masked rows as the loop collates them."""
    from budgetune.data import collate
    from budgetune.data.examples import IGNORE, Example

    rng = random.Random(seed)
    examples = []
    for _ in range(rows):
        ids = [rng.randrange(3, V) for _ in range(rng.randint(*lengths))]
        examples.append(Example(ids, [IGNORE] * 20 + ids[20:]))
    return collate(examples, pad_id=0)


def _stepper(method: str, options: dict | None = None, *, ckpt: bool = False, cfg: dict = LLAMA):
    from accelerate import Accelerator

    from budgetune.methods import registry
    from budgetune.methods.base import TrainContext

    ctx = TrainContext(accelerator=Accelerator(cpu=True), gradient_checkpointing=ckpt, seed=0)
    return registry.get(method).prepare(_model(cfg), registry.make_config(method, options or {}), ctx)


def _ledger_vs_counter(stepper, batch) -> tuple[float, int]:
    box = {}
    measured = counted(lambda: box.setdefault("r", stepper.step([batch], 1e-4)))
    return box["r"].flops, measured


CASES = [
    ("full", {}, False),
    ("lora", {"r": 4, "target_modules": ["q_proj", "v_proj"]}, False),
    ("lora", {"r": 4, "target_modules": ["gate_proj", "up_proj", "down_proj"]}, False),  # lowest attention: no bwd
    ("badam", {"layers_per_block": 1}, False),  # the top block first: backward stops below it
    ("badam", {"layers_per_block": 1, "order": "ascending"}, False),  # the bottom block: backward runs through all
    ("full", {}, True),
    ("lora", {"r": 4, "target_modules": ["q_proj", "v_proj"]}, True),
    ("mezo", {}, False),
]


@pytest.mark.parametrize("method,options,ckpt", CASES)
def test_ledger_equals_flop_counter_on_the_step_the_method_runs(method, options, ckpt):
    ledger, measured = _ledger_vs_counter(_stepper(method, options, ckpt=ckpt), _batch())
    assert ledger == pytest.approx(measured, rel=1e-3), (method, options, ckpt)


def test_full_step_by_hand():
    """6·N per token for every product, plus attention: QKᵀ and A·V forward (2 products of 2·s·d FLOPs per token
    and layer), 5 backward in the fused kernel (it recomputes the scores)."""
    batch = _batch()
    b, s = batch["input_ids"].shape
    n = L * (H * H + 2 * H * (H // HEADS * KV) + H * H + 3 * H * I) + V * H  # q, k, v, o, gate/up/down, head
    attention = L * (2 + 5) * 2 * s * H
    expected = b * s * (6 * n + attention)
    assert _stepper("full").step([batch], 1e-4).flops == pytest.approx(expected, rel=1e-9)
    assert attention / (6 * n + attention) > 0.35  # the test model is attention-heavy


def test_top_block_skips_attention_backward_below_it():
    """BAdam's first (top) block: no input gradient for the layers below and no attention backward there (hand
    arithmetic on the two-layer model; the old ledger charged attention backward in every layer)."""
    batch = _batch()
    b, s = batch["input_ids"].shape
    layer = H * H + 2 * H * (H // HEADS * KV) + H * H + 3 * H * I
    forward = 2 * (L * layer + V * H) + L * 2 * 2 * s * H
    # top layer: input and weight gradients of every product (its norm trains); head: input gradient only
    backward = 2 * 2 * layer + 2 * V * H + 5 * 2 * s * H
    assert _stepper("badam").step([batch], 1e-4).flops == pytest.approx(b * s * (forward + backward), rel=1e-9)


@pytest.mark.parametrize("cfg", [
    {"model_type": "gpt2", "n_embd": H, "n_layer": L, "n_head": HEADS, "vocab_size": V, "n_positions": 512, "bos_token_id": 1,
         "eos_token_id": 2},
    dict(LLAMA, model_type="mixtral", num_local_experts=4, num_experts_per_tok=2),
    dict(LLAMA, model_type="phi3", num_key_value_heads=HEADS),
], ids=["gpt2-conv1d", "mixtral-moe", "phi3-fused"])
def test_conv1d_fused_and_moe_products_are_counted(cfg):
    ledger, measured = _ledger_vs_counter(_stepper("full", cfg=cfg), _batch(lengths=(60, 90)))
    assert ledger == pytest.approx(measured, rel=1e-3)


def test_moe_experts_charged_as_routed():
    """Mixtral: each token runs its top-2 of 4 experts (3-D weights (E, 2I, H) and (E, H, I)) and the router."""
    model = _model(dict(LLAMA, model_type="mixtral", num_local_experts=4, num_experts_per_tok=2))
    attn = H * H + 2 * H * (H // HEADS * KV) + H * H
    assert profile_from_model(model).matmul_params == L * (attn + 4 * H + 2 * 3 * H * I) + V * H


def test_unknown_layer_type_is_refused_by_name():
    model = _model()

    class Mystery(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.kernel = torch.nn.Parameter(torch.zeros(H, H))

    model.model.layers[0].mlp.extra = Mystery()
    with pytest.raises(UserError, match="Mystery"):
        profile_from_model(model)


def test_plan_and_ledger_agree():
    """budgetune plan's FLOPs per token (meta model, no weights) equal the ledger's per padded token over the steps
    the method really runs: one cycle of blocks for BAdam and HiFT."""
    from budgetune.memory.spec import spec_from_dict
    from budgetune.memory.terms import Shape
    from budgetune.methods import registry
    from budgetune.planner.plan import flops_per_token

    spec = spec_from_dict(LLAMA, name="tiny")
    for method, options, ckpt, steps in [("full", {}, False, 1), ("full", {}, True, 1),
                                         ("lora", {"r": 4, "target_modules": ["q_proj", "v_proj"]}, False, 1),
                                         ("badam", {"layers_per_block": 1, "switch_every": 1}, False, L),
                                         ("hift", {"layers_per_group": 1}, False, L + 2), ("mezo", {}, False, 1)]:
        stepper = _stepper(method, options, ckpt=ckpt)
        batch = _batch(rows=2, lengths=(128, 128))
        b, s = batch["input_ids"].shape
        ledger = sum(stepper.step([batch], 1e-4).flops for _ in range(steps)) / (steps * b * s)
        shape = Shape(micro_batch=b, seq_len=s, precision="fp32", gradient_checkpointing=ckpt)
        planned = flops_per_token(spec, method, registry.make_config(method, options), shape)
        assert planned == pytest.approx(ledger, rel=1e-9), method


def test_every_step_is_costed_before_it_runs():
    """stepper.cost() (what the loop checks against the budget) equals what step() then charges, block switches
    included."""
    stepper = _stepper("badam", {"layers_per_block": 1, "switch_every": 1})
    for seed in range(3):
        batch = _batch(seed)
        before = stepper.cost([batch])
        assert stepper.step([batch], 1e-4).flops == pytest.approx(before, rel=1e-12)


def test_train_step_flops_scales_with_batch_and_length():
    p = profile_from_model(_model())
    assert train_step_flops(p, 4, 100) == pytest.approx(2 * train_step_flops(p, 2, 100))
    assert train_step_flops(p, 1, 200) > 2 * train_step_flops(p, 1, 100)  # attention grows with s²
