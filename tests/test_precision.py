"""One precision for plan and run: resolution, refusals by name, and the trainer really computing in bf16 under
amp_bf16 (checked with forward hooks on the linear layers, independent of the code that sets it up)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TINY_LLAMA

from budgetune import precision as P
from budgetune.errors import UserError
from budgetune.methods import registry
from budgetune.methods.base import TrainContext

TINY = dict(TINY_LLAMA, vocab_size=512)


def test_auto_is_amp_on_cuda_fp32_on_cpu_and_bf16_for_a_bf16_model():
    assert P.resolve("auto", cuda=False) == "fp32"
    assert P.resolve("auto", cuda=True) == "amp_bf16"
    assert P.resolve(None, cuda=True, model_dtype="bfloat16") == "bf16"
    assert P.resolve("amp_bf16", cuda=False) == "amp_bf16"  # bf16 autocast runs on CPU too


def test_bad_or_conflicting_precision_is_one_clear_error():
    with pytest.raises(UserError, match="train field 'precision' is 'fp16'"):
        P.resolve("fp16", cuda=False)
    with pytest.raises(UserError, match="--dtype float32"):
        P.resolve("amp_bf16", cuda=True, model_dtype="bfloat16")


@pytest.mark.parametrize("name", ["mezo", "lozo", "addax"])
def test_zeroth_order_methods_refuse_pure_bf16_by_name(name):
    module = registry.get(name)
    with pytest.raises(UserError, match=rf"method '{name}' cannot train in bf16 \(.*restore.*\); use --precision"):
        P.check_method(name, module, "bf16")
    P.check_method(name, module, "amp_bf16")  # fp32 weights: the probes restore them exactly enough


def test_the_loop_refuses_before_loading_anything(tmp_path):
    """A refused precision stops the run before the tokenizer or any weight is loaded (the model path is bogus)."""
    from helpers import tiny_run_config

    from budgetune.train.loop import train

    cfg = tiny_run_config(str(tmp_path / "no-such-model"), tmp_path / "run", method="mezo", max_steps=1)
    cfg.train.precision = "bf16"
    with pytest.raises(UserError, match="method 'mezo' cannot train in bf16"):
        train(cfg, progress=False)
    assert not (tmp_path / "run").exists()


def test_plan_skips_what_a_precision_cannot_run():
    from pathlib import Path

    from budgetune.memory.spec import spec_from_model_name
    from budgetune.memory.terms import Shape
    from budgetune.planner.plan import enumerate_plans

    spec = spec_from_model_name(str(Path(__file__).parent / "fixtures" / "memory" / "llama.json"))
    notes: list[str] = []
    plans = enumerate_plans(spec, Shape(precision="bf16"), 2**40, notes=notes)
    assert {"mezo", "lozo", "addax", "qlora"}.isdisjoint(p.method for p in plans)
    assert any(n.startswith("mezo: skipped (it cannot train in bf16)") for n in notes)
    assert "mezo" in {p.method for p in enumerate_plans(spec, Shape(precision="amp_bf16"), 2**40)}


def _stepper(name: str, tmp_path, precision: str, options: dict):
    from budgetune.models import load_model

    config = tmp_path / "config.json"
    config.write_text(json.dumps(TINY))
    module = registry.get(name)
    cfg = registry.make_config(name, options)
    model = P.cast_model(load_model(str(config), seed=0), precision, module)
    dtypes: set = set()
    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            m.register_forward_hook(lambda _m, _i, out: dtypes.add(out.dtype))
    accelerator = P.make_accelerator(precision)
    return module.prepare(model, cfg, TrainContext(accelerator=accelerator, seed=0, precision=precision)), dtypes


def _batch():
    from budgetune.data import Example, collate

    g = torch.Generator().manual_seed(0)
    rows = [torch.randint(3, 500, (n,), generator=g).tolist() for n in (24, 17, 9)]
    return collate([Example(r, r) for r in rows], pad_id=2)


CASES = {"full": {}, "lora": {"r": 4}, "badam": {"switch_every": 1}, "mezo": {}, "galore": {"rank": 8},
         "hift": {"layers_per_group": 1}, "lozo": {"rank": 2}, "addax": {"max_fo_len": 12}, "adamw8bit": {}}


@pytest.mark.parametrize("name", [
    "full", "lora", "badam", "mezo",
    *[pytest.param(n, marks=pytest.mark.slow) for n in ("galore", "hift", "lozo", "addax", "adamw8bit")]])
def test_every_stepper_computes_in_bf16_under_amp(name, tmp_path):
    """Under amp_bf16 the linear layers compute in bf16 (autocast through accelerate, zeroth-order methods
    included), the trained weights stay fp32 and a step gives a finite loss."""
    stepper, dtypes = _stepper(name, tmp_path, "amp_bf16", CASES[name])
    result = stepper.step([_batch()], 1e-3)
    assert dtypes == {torch.bfloat16}
    assert torch.isfinite(torch.tensor(result.loss))
    trained = stepper.trainable_state_dict()
    assert trained and all(v.dtype == torch.float32 for v in trained.values())


def test_lora_under_amp_keeps_a_bf16_base_and_fp32_adapters(tmp_path):
    """What plan assumes for LoRA under amp_bf16 (methods/lora.py memory) is what the trainer builds."""
    stepper, _ = _stepper("lora", tmp_path, "amp_bf16", {"r": 4})
    params = dict(stepper.unwrapped.named_parameters())
    assert all(p.dtype == torch.float32 for n, p in params.items() if "lora_" in n)
    assert all(p.dtype == torch.bfloat16 for n, p in params.items() if "lora_" not in n)


def test_fp32_runs_without_autocast(tmp_path):
    stepper, dtypes = _stepper("full", tmp_path, "fp32", {})
    stepper.step([_batch()], 1e-3)
    assert dtypes == {torch.float32}


def test_check_fits_plans_the_run_precision(tmp_path, tiny_config_path):
    """check_fits costs LoRA under amp_bf16 with the bf16 frozen base the trainer builds (hand arithmetic: 2 bytes
    per base parameter plus 4 per adapter parameter), and with plan's overhead (512 MiB and 5% fragmentation)."""
    from helpers import tiny_run_config

    from budgetune.memory.spec import spec_from_model_name
    from budgetune.planner.plan import check_fits

    cfg = tiny_run_config(tiny_config_path, tmp_path / "run", method="lora", method_options={"r": 4})
    cfg.train.precision = "amp_bf16"
    cfg.budget.max_memory = "8GiB"
    fits = check_fits(cfg)
    spec = spec_from_model_name(tiny_config_path)
    adapters = spec.n_layers * sum(4 * (l.in_features + l.out_features) for l in spec.layer_linears)
    assert fits["bytes"]["weights"] == 2 * spec.n_params + 4 * adapters
    tensors = sum(fits["bytes"][k] for k in ("weights", "gradients", "optimizer", "activations", "other"))
    assert fits["bytes"]["other"] >= 512 * 2**20 and tensors == fits["bytes"]["total"]
    cfg.train.precision = "fp32"
    assert check_fits(cfg)["bytes"]["weights"] == 4 * spec.n_params + 4 * adapters


@pytest.mark.slow
def test_a_run_trains_under_amp_bf16(tmp_path, tiny_config_path, tokenizer):
    """End to end through the loop (about a minute on 2 cores: the 49k vocabulary in bf16 on CPU)."""
    from helpers import small_split, tiny_run_config

    from budgetune.train.loop import train

    cfg = tiny_run_config(tiny_config_path, tmp_path / "run", method="lora", max_steps=2,
                          method_options={"r": 4})
    cfg.train.precision = "amp_bf16"
    result = train(cfg, tokenizer=tokenizer, data=small_split(tokenizer, 16, 4), progress=False)
    assert result.ledger.steps == 2
    base = [p for n, p in result.extra["model"].named_parameters() if "lora_" not in n]
    assert base and all(p.dtype == torch.bfloat16 for p in base)


def test_qlora_computes_in_the_runs_precision_not_by_cuda_availability():
    """--precision fp32 on a GPU computes the 4-bit matmuls in fp32; amp_bf16 in bf16 (even where no GPU is)."""
    from budgetune.methods import qlora

    cfg = qlora.Config()
    assert qlora.load_kwargs(cfg, "fp32")["quantization_config"].bnb_4bit_compute_dtype == torch.float32
    assert qlora.load_kwargs(cfg, "amp_bf16")["quantization_config"].bnb_4bit_compute_dtype == torch.bfloat16
