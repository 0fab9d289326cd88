"""What single methods promise beyond the contract: BAdam's state is the active block's only, HiFT trains one group
per step, MeZO's peak is that of inference, LOZO's directions are low-rank, Addax splits by length, GaLore counts
its projection FLOPs, and bad options stop with one clear line."""

from __future__ import annotations

import pytest
import torch
from test_methods_contract import (  # noqa: F401
    TINY,
    accelerator,
    build,
    measure_step,
    tiny_paths,
    toy_batch,
)

from budgetune.errors import UserError
from budgetune.flops import forward_flops, profile_from_model, train_step_flops
from budgetune.methods import registry
from budgetune.methods.base import TrainContext, token_loss


def changed_names(model, before):
    return {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}


def snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_badam_state_is_the_active_block_only(tiny_paths, accelerator):
    from budgetune.methods.badam import block_at

    _, cfg, st = build("badam", tiny_paths, accelerator, {"switch_every": 2, "order": "ascending"})
    batch = toy_batch()
    blocks = [set(b) for b in st.blocks]
    assert len(blocks) == TINY["num_hidden_layers"]  # one decoder layer per block; embedding and head frozen
    names = {id(p): n for n, p in st.unwrapped.named_parameters()}
    for step in range(4):
        before = snapshot(st.unwrapped)
        st.step([batch], 3e-3)
        active = blocks[block_at(step, len(blocks), 2, "ascending", 0)]
        assert changed_names(st.unwrapped, before) <= active
        held = {names[id(p)] for p in st.optimizer.state}
        assert held == active, f"step {step}: optimizer state for {sorted(held ^ active)[:3]}"
        assert all(not p.requires_grad for n, p in st.unwrapped.named_parameters() if n not in active)
    assert st.active == 1  # switched after two steps


def test_badam_schedule_is_a_function_of_the_step():
    from budgetune.methods.badam import block_at

    assert [block_at(s, 3, 2, "descending", 0) for s in range(8)] == [2, 2, 1, 1, 0, 0, 2, 2]
    random_cycle = [block_at(s, 5, 1, "random", 7) for s in range(5)]
    assert sorted(random_cycle) == list(range(5))  # each block once per cycle
    assert random_cycle == [block_at(s, 5, 1, "random", 7) for s in range(5)]


def test_hift_updates_one_group_per_step_and_delays_the_lr(tiny_paths, accelerator):
    _, _, st = build("hift", tiny_paths, accelerator, {"layers_per_group": 1, "order": "bottom2up"})
    groups = [set(g) for g in st.groups]
    assert len(groups) == TINY["num_hidden_layers"] + 2  # embedding, each layer, final norm
    batch = toy_batch()
    lrs = [1e-3, 2e-3, 3e-3, 4e-3]
    for step, lr in enumerate(lrs):
        before = snapshot(st.unwrapped)
        st.step([batch], lr)
        changed = changed_names(st.unwrapped, before)
        assert changed and changed <= groups[step % len(groups)]
        assert st.cycle_lr == lrs[0]  # the whole first cycle runs at the learning rate it started with
    assert len(st.optimizers) == len(groups) or len(st.optimizers) == len(lrs)


def test_mezo_peak_is_within_10_percent_of_inference(tiny_config_path, accelerator):
    """On conftest's tiny model with the real 49,152-token vocabulary (so the logits weigh as they do in real
    models): the peak of all live tensors during one MeZO step against one inference forward on the same batch,
    both measured with the dispatch-mode tracker (every storage counted from creation to release)."""
    from budgetune.memory.peak import PeakTracker as _PeakTracker
    from budgetune.models import load_model

    model = load_model(tiny_config_path, seed=0)
    batch = toy_batch()
    batch["attention_mask"] = torch.ones_like(batch["attention_mask"])
    tracker = _PeakTracker()
    for t in list(model.parameters()) + list(model.buffers()) + list(batch.values()):
        tracker.register(t)
    model.eval()
    with tracker.mode, torch.no_grad():
        token_loss(model, batch)
    inference = tracker.peak
    module = registry.get("mezo")
    stepper = module.prepare(model, module.Config(), TrainContext(accelerator=accelerator, seed=0))
    mezo = measure_step(stepper, batch, 1e-5)
    assert mezo <= 1.10 * inference, f"MeZO peak {mezo} B vs inference {inference} B"


def test_zeroth_order_restores_weights_and_counts_two_forwards(tiny_paths, accelerator):
    _, _, st = build("mezo", tiny_paths, accelerator, {"samples": 2})
    batch = toy_batch()
    before = snapshot(st.model)
    g, _, _ = st.spsa.estimate([batch], 0, 0)
    for n, p in st.model.named_parameters():  # θ+εz−2εz+εz: back to θ up to rounding
        assert torch.allclose(p, before[n], atol=1e-6)
    result = st.step([batch], 1e-3)
    assert result.flops == pytest.approx(2 * 2 * forward_flops(profile_from_model(st.model), *batch["input_ids"].shape))
    assert not any(p.requires_grad for p in st.model.parameters())


def test_lozo_directions_are_low_rank():
    from budgetune.methods.lozo import LowRankPerturbation

    w = torch.nn.Parameter(torch.zeros(40, 24))
    v = torch.nn.Parameter(torch.zeros(24))
    LowRankPerturbation(rank=3, lazy=5, seed=1).apply([w, v], seed=11, scale=1.0, step=0)
    assert torch.linalg.matrix_rank(w.detach()) == 3
    assert bool((v != 0).all())  # vectors get dense directions
    z1 = w.detach().clone()
    w.data.zero_()
    LowRankPerturbation(rank=3, lazy=5, seed=1).apply([w], seed=12, scale=1.0, step=4)  # same V (step // lazy)
    both = torch.cat([z1, w.detach()], dim=0)
    assert torch.linalg.matrix_rank(both) == 3  # new U, shared row space


def test_addax_splits_rows_by_length_and_uses_both_paths(tiny_paths, accelerator):
    from budgetune.methods.addax import split_by_length

    batch = toy_batch()  # row 0 has 20 real tokens, the others 32
    short, long = split_by_length(batch, 24)
    assert short["input_ids"].shape == (1, 20) and long["input_ids"].shape == (3, 32)
    assert split_by_length(batch, 40)[1] is None
    _, _, st = build("addax", tiny_paths, accelerator, {"max_fo_len": 24})
    profile = profile_from_model(st.model)
    result = st.step([batch], 0.1)
    expected = 2 * forward_flops(profile, 3, 32) + train_step_flops(profile, 1, 20)
    assert result.flops == pytest.approx(expected)
    assert all(p.grad is None for p in st.model.parameters())  # plain SGD: nothing kept between steps


def test_galore_counts_projection_and_svd_flops(tiny_paths, accelerator):
    _, cfg, st = build("galore", tiny_paths, accelerator, {"rank": 8, "update_proj_gap": 2})
    batch = toy_batch()
    plain = train_step_flops(st.profile(), *batch["input_ids"].shape)
    first, second = st.step([batch], 1e-3).flops, st.step([batch], 1e-3).flops
    assert first > second > plain  # SVD refresh at step 0, projections every step


@pytest.mark.parametrize("name, options, message", [
    ("badam", {"layers_per_block": "0"}, "zero blocks"),
    ("badam", {"order": "sideways"}, "order"),
    ("hift", {"layers_per_group": "0"}, "zero groups"),
    ("galore", {"rank": "0"}, "rank"),
    ("mezo", {"eps": "0"}, "eps"),
    ("lozo", {"lazy": "0"}, "lazy"),
    ("addax", {"alpha": "2"}, "alpha"),
    ("qlora", {"quant_type": "int3"}, "quant_type"),
    ("qlora", {"r": "0"}, "r=0"),
    ("adamw8bit", {"min_8bit_size": "0"}, "min_8bit_size"),
    ("galore", {"ranks": "8"}, "no option"),
])
def test_bad_options_stop_with_one_line(name, options, message):
    with pytest.raises(UserError) as err:
        registry.make_config(name, options)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("name, options, message", [
    ("galore", {"rank": 1000}, "larger than the smallest"),
    ("lozo", {"rank": 1000}, "larger than the smallest"),
    ("qlora", {"r": 1000}, "larger than the smallest"),
])
def test_options_too_large_for_the_model_stop_with_one_line(name, options, message, tiny_paths, accelerator):
    with pytest.raises(UserError) as err:
        build(name, tiny_paths, accelerator, options)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_qlora_on_gpu(tiny_paths):
    """Where CUDA is present: the 4-bit base loads with bf16 compute, adapters train, the loss falls."""
    from accelerate import Accelerator

    acc = Accelerator()
    _, _, st = build("qlora", tiny_paths, acc)
    batch = {k: v.to(acc.device) for k, v in toy_batch().items()}
    with torch.no_grad():
        before = float(token_loss(st.model, batch)[0])
    for _ in range(5):
        st.step([batch], 1e-2)
    with torch.no_grad():
        assert float(token_loss(st.model, batch)[0]) < before


def test_pooled_directions_have_identity_covariance():
    """The default z (shifted, signed windows of one Gaussian pool) has E[z zᵀ] ≈ I like i.i.d. Gaussian z: unit
    diagonal, and off-diagonal sample covariances no larger than i.i.d. sampling gives (≈ 0.8/√n for n draws)."""
    from budgetune.methods.zeroth_order import GaussianPerturbation

    pert = GaussianPerturbation(seed=3)
    w, v = torch.nn.Parameter(torch.zeros(2000)), torch.nn.Parameter(torch.zeros(300))
    draws = []
    for s in range(300):
        w.data.zero_()
        v.data.zero_()
        pert.apply([w, v], seed=s, scale=1.0, step=s)
        draws.append(torch.cat([w.data.clone(), v.data.clone()]))
    z = torch.stack(draws)
    cov = z.T @ z / len(draws)
    off = cov - torch.diag(cov.diag())
    assert abs(float(cov.diag().mean()) - 1) < 0.03
    assert float(off.abs().mean()) < 1.15 * 0.8 / len(draws) ** 0.5


@pytest.mark.parametrize("name", ["adamw8bit", "qlora", "galore", "badam", "hift", "addax"])
def test_gradient_checkpointing_is_an_option_of_every_first_order_method(name, tiny_paths, accelerator):
    """With ctx.gradient_checkpointing the step recomputes the layers (and charges that forward) and gives the same
    loss as without."""
    from budgetune.models import load_model

    module = registry.get(name)
    # addax: every row takes the first-order path; galore: a rank the 64-dim model has
    options = {"max_fo_len": 64} if name == "addax" else {"rank": 8} if name == "galore" else {}
    results = []
    for recompute in (False, True):
        cfg = registry.make_config(name, options)
        model = (load_model(tiny_paths[1], **module.load_kwargs(cfg)) if hasattr(module, "load_kwargs")
                 else load_model(tiny_paths[0], seed=0))
        st = module.prepare(model, cfg, TrainContext(accelerator=accelerator, seed=0,
                                                     gradient_checkpointing=recompute))
        results.append(st.step([toy_batch()], 1e-3))
    plain, ckpt = results
    assert ckpt.flops > plain.flops
    assert ckpt.loss == pytest.approx(plain.loss, rel=1e-5)


def test_qlora_gradients_survive_an_evaluation(tiny_paths, accelerator):
    """An eval-mode forward without gradients (what the loop's evaluation does) must not change the gradients the
    next training step computes (bitsandbytes would repack the 4-bit weights into an inference-only layout)."""
    batch = toy_batch()
    grads = []
    for evaluate_first in (False, True):
        _, _, st = build("qlora", tiny_paths, accelerator, {"r": 4})
        if evaluate_first:
            st.model.eval()
            with torch.no_grad():
                token_loss(st.model, batch)
        st.model.train()
        loss, n = token_loss(st.model, batch)
        (loss / n).backward()
        grads.append({k: p.grad.clone() for k, p in st.model.named_parameters() if p.requires_grad})
    for key in grads[0]:
        assert torch.allclose(grads[0][key], grads[1][key], atol=1e-6), key
