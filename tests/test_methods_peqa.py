"""What PEQA promises beyond the method contract: the integers never change and the result is still the b-bit model
(at most 2^b values per row, saved packed); quantisation is round-to-nearest per row; the step's FLOPs are the ones
torch counts; the saved float model opens with transformers and computes what the trained model computes."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from test_methods_contract import (  # noqa: F401
    TINY,
    accelerator,
    build,
    tiny_paths,
    toy_batch,
)

from budgetune.errors import UserError
from budgetune.flops import train_step_flops
from budgetune.methods import registry
from budgetune.methods.int_layers import QuantLinear, pack, quantize_rows, unpack


def test_round_to_nearest_per_row_and_packing_roundtrip():
    w = torch.randn(6, 9)
    codes, scale, zero = quantize_rows(w, 4)
    assert int(codes.max()) <= 15
    assert bool(((scale * (codes.float() - zero) - w).abs() <= scale / 2 + 1e-6).all())
    assert torch.equal(unpack(pack(codes), 9), codes)
    assert pack(codes).shape == (6, 5) and pack(codes).dtype == torch.uint8  # two codes a byte, one pad


def test_training_keeps_the_low_bit_model(tiny_paths, accelerator, tmp_path):
    _, _, st = build("peqa", tiny_paths, accelerator)
    quant = {n: m for n, m in st.unwrapped.named_modules() if isinstance(m, QuantLinear)}
    assert len(quant) == TINY["num_hidden_layers"] * 7
    codes = {n: m.weight.detach().clone() for n, m in quant.items()}
    scales = {n: m.scale.detach().clone() for n, m in quant.items()}
    for _ in range(3):
        st.step([toy_batch()], 3e-2)
    for n, m in quant.items():
        assert torch.equal(m.weight, codes[n])  # the integers are frozen
        assert not torch.equal(m.scale, scales[n])
        w = m.dequantized()
        assert max(len(torch.unique(row)) for row in w) <= 16  # still a 4-bit grid per row
    st.save_pretrained(tmp_path, None)
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    low = load_file(str(tmp_path / "peqa-lowbit.safetensors"))
    packed = sum(v.numel() for k, v in low.items() if k.endswith(".codes"))
    assert packed == sum(m.out_features * m.in_features // 2 for m in quant.values())
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    batch = toy_batch()
    st.unwrapped.eval()
    with torch.no_grad():
        a = st.unwrapped(input_ids=batch["input_ids"]).logits
        b = reloaded(input_ids=batch["input_ids"]).logits
    assert torch.allclose(a, b, atol=1e-4)


def test_step_flops_are_what_torch_counts(tiny_paths, accelerator):
    from torch.utils.flop_counter import FlopCounterMode

    _, _, st = build("peqa", tiny_paths, accelerator)
    st.unwrapped.config._attn_implementation = "eager"  # FlopCounterMode misses CPU SDPA
    batch = toy_batch()
    with FlopCounterMode(display=False) as counter:
        result = st.step([batch], 1e-3)
    assert result.flops == pytest.approx(counter.get_total_flops(), rel=0.03)
    # and below a full fine-tuning step of the same shape: no weight-gradient products
    p = st.profile()
    full = dataclasses.replace(p, trainable_matmul_params=p.matmul_params, input_grad_params=p.matmul_params)
    assert result.flops < train_step_flops(full, *batch["input_ids"].shape)


def test_bad_bits_stop_with_one_line():
    with pytest.raises(UserError) as err:
        registry.make_config("peqa", {"bits": "8"})
    assert "bits" in str(err.value) and "\n" not in str(err.value)
