"""What SubZero promises beyond the method contract: each matrix's direction lies in a rank-r subspace with
orthonormal factors, kept for `lazy` steps; entries have unit variance like MeZO's; its ledger counts the
perturbation products and the QRs; a killed run resumes into the same subspace; bad options stop with one line."""

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
from budgetune.flops import forward_flops, profile_from_model
from budgetune.methods import registry
from budgetune.methods.subzero import SubspacePerturbation


def direction(pert, shape, seed, step):
    w = torch.nn.Parameter(torch.zeros(shape))
    pert.apply([w], seed=seed, scale=1.0, step=step)
    return w.detach().clone()


def test_directions_lie_in_one_orthonormal_subspace_per_window():
    pert = SubspacePerturbation(rank=3, lazy=5, seed=1)
    z1, z2 = direction(pert, (40, 24), 11, 0), direction(pert, (40, 24), 12, 4)
    assert torch.linalg.matrix_rank(z1) == 3
    u, v = pert.factors(torch.zeros(40, 24), 0, 4)
    assert torch.allclose(u.t() @ u, torch.eye(3), atol=1e-5) and torch.allclose(v.t() @ v, torch.eye(3), atol=1e-5)
    # Same window: both directions are U·Σ·Vᵀ with the same U and V, so projecting on them loses nothing.
    for z in (z1, z2):
        assert torch.allclose(u @ (u.t() @ z @ v) @ v.t(), z, atol=1e-5)
    assert not torch.allclose(z1, z2)  # a fresh core Σ per probe seed
    z3 = direction(pert, (40, 24), 11, 5)  # next window: a new subspace
    assert torch.linalg.matrix_rank(torch.cat([z1, z3])) > 3


def test_entries_have_unit_variance_on_average():
    # √(m·n)/r scaling: E‖Z‖²_F = m·n, as for MeZO's dense Gaussian z (the paper's unscaled Z has E‖Z‖²_F = r²).
    norms = [direction(SubspacePerturbation(rank=4, lazy=1, seed=0), (60, 30), s, s).pow(2).mean() for s in range(200)]
    assert float(torch.stack(norms).mean()) == pytest.approx(1.0, rel=0.1)


def test_ledger_counts_forwards_products_and_qr(tiny_paths, accelerator):
    _, _, st = build("subzero", tiny_paths, accelerator, {"rank": 4, "lazy": 2})
    batch = toy_batch()
    forward = forward_flops(profile_from_model(st.model), *batch["input_ids"].shape)
    matrices = [tuple(p.shape) for _, p in st.named if p.dim() >= 2]
    r = 4
    # By hand: U·Σ (2mr²) plus the rank-r product (2mnr) per matrix, four passes; QR 2kr² − (2/3)r³ per factor.
    passes = 4 * sum(2 * m * r * r + 2 * m * n * r for m, n in matrices)
    qr = sum(2 * k * r * r - 2 / 3 * r ** 3 for m, n in matrices for k in (m, n))
    first, second, third = (st.step([batch], 1e-3).flops for _ in range(3))
    assert first == pytest.approx(2 * forward + passes + qr)
    assert second == pytest.approx(2 * forward + passes)
    assert third == pytest.approx(first)  # step 2 opens a new window


def test_resume_mid_window_rebuilds_the_same_subspace(tiny_paths, accelerator):
    _, _, st = build("subzero", tiny_paths, accelerator, {"rank": 4, "lazy": 4})
    batch = toy_batch()
    st.step([batch], 1e-3)
    _, _, twin = build("subzero", tiny_paths, accelerator, {"rank": 4, "lazy": 4})
    twin.load_trainable_state_dict(st.trainable_state_dict())
    twin.load_state_dict(st.state_dict())
    assert twin.spsa.perturbation.tensors() == []  # nothing cached yet: the factors come from the seed
    st.step([batch], 1e-3)
    twin.step([batch], 1e-3)
    for (name, a), (_, b) in zip(st.named, twin.named):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("options, message", [
    ({"rank": "0"}, "rank"), ({"lazy": "0"}, "lazy"), ({"eps": "-1"}, "eps"), ({"samples": "0"}, "samples")])
def test_bad_options_stop_with_one_line(options, message):
    with pytest.raises(UserError) as err:
        registry.make_config("subzero", options)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_rank_larger_than_the_model_stops_with_one_line(tiny_paths, accelerator):
    with pytest.raises(UserError) as err:
        build("subzero", tiny_paths, accelerator, {"rank": 1000})
    assert "larger than the smallest" in str(err.value)
