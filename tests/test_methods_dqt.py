"""What DQT promises beyond the method contract: the trained weights exist only as integers on their grid (no float
copy of a quantised layer survives a step), stochastic rounding is unbiased, small steps still move the weights on
average, and the step's FLOPs are the ones torch counts."""

from __future__ import annotations

import pytest
import torch
from test_methods_contract import (  # noqa: F401
    accelerator,
    build,
    tiny_paths,
    toy_batch,
)

from budgetune.errors import UserError
from budgetune.methods import registry
from budgetune.methods.int_layers import GridLinear, stochastic_round


def test_stochastic_rounding_is_unbiased():
    x = (torch.arange(200_000) % 3).float() + 0.3
    r = stochastic_round(x, torch.Generator().manual_seed(0))
    assert torch.equal(r, torch.floor(r)) and bool(((r - x).abs() < 1).all())
    assert float(r.mean()) == pytest.approx(float(x.mean()), abs=0.005)  # 0.3 up, 0.7 down, on average


def test_weights_live_only_on_the_grid(tiny_paths, accelerator):
    _, _, st = build("dqt", tiny_paths, accelerator)
    layers = {n: m for n, m in st.model.named_modules() if isinstance(m, GridLinear)}
    before = {n: m.weight.clone() for n, m in layers.items()}
    for _ in range(3):
        st.step([toy_batch()], 3e-3)
    moved = 0
    for n, m in layers.items():
        assert m.weight.dtype == torch.int8 and int(m.weight.abs().max()) <= 127 and m.grad_w is None
        moved += int((m.weight != before[n]).sum())
    assert moved > 0
    shapes = {tuple(m.weight.shape) for m in layers.values()}
    floats = [t for t in list(st.model.parameters()) + list(st.model.buffers())
              if t.is_floating_point() and tuple(t.shape) in shapes]
    assert not floats  # no float master copy of any quantised layer


def test_steps_below_one_grid_step_move_the_weights_on_average(tiny_paths, accelerator):
    _, _, st = build("dqt", tiny_paths, accelerator)
    layer = next(m for m in st.model.modules() if isinstance(m, GridLinear))
    start = layer.weight.float().clone()
    st.step([toy_batch()], 1e-5)  # Adam's first step is ±lr per entry: far below one grid step
    step = -1e-5 * torch.sign(st.state[next(iter(st.state))]["m"]) / layer.scale
    moved = layer.weight.float() - start
    assert 0 < int((moved != 0).sum()) < moved.numel() // 2
    # E[moved] = step entry by entry; each move is a Bernoulli draw (variance ≤ 1/4), so the means agree within
    # 4 standard deviations of the mean: 4 · ½ / √N.
    assert abs(float(moved.mean()) - float(step.mean())) <= 2 / moved.numel() ** 0.5


def test_step_flops_are_what_torch_counts(tiny_paths, accelerator):
    from torch.utils.flop_counter import FlopCounterMode

    _, _, st = build("dqt", tiny_paths, accelerator)
    st.model.config._attn_implementation = "eager"  # FlopCounterMode misses CPU SDPA
    priced = st.cost([toy_batch()])  # the loop prices each step before it runs (train/precost.py)
    with FlopCounterMode(display=False) as counter:
        result = st.step([toy_batch()], 1e-3)
    assert result.flops == pytest.approx(counter.get_total_flops(), rel=0.03)
    assert priced == pytest.approx(counter.get_total_flops(), rel=0.03)


def test_bad_bits_stop_with_one_line():
    with pytest.raises(UserError) as err:
        registry.make_config("dqt", {"bits": "1"})
    assert "bits" in str(err.value) and "\n" not in str(err.value)
