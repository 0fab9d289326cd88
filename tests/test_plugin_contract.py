"""A plugin is one file plus one registry line: a throwaway method and a throwaway scorer, written here to a
temporary directory and registered for the test only, are planned, traced, costed and listed without any other file
of the package knowing their names."""

from __future__ import annotations

import textwrap

import pytest
import torch

from budgetune.flops_reference import counted
from budgetune.memory.spec import spec_from_dict
from budgetune.memory.terms import MemoryBreakdown, Shape

H, I, L, HEADS, KV, V = 64, 128, 2, 4, 2, 256
LLAMA = {"model_type": "llama", "hidden_size": H, "intermediate_size": I, "num_hidden_layers": L,
         "num_attention_heads": HEADS, "num_key_value_heads": KV, "vocab_size": V, "max_position_embeddings": 512,
         "tie_word_embeddings": False, "rms_norm_eps": 1e-6, "bos_token_id": 1, "eos_token_id": 2}

METHOD = '''
"""Top-layer tuning: only the last decoder layer trains (a throwaway method of the contract test)."""

from dataclasses import dataclass

from budgetune.memory.terms import MemoryBreakdown
from budgetune.methods.base import FirstOrderStepper

NAME = "toplayer"
DEFAULT_LR = 1e-4
QUALITY_RANK = -1  # recommended before every registered method
PLAN_OPTIONS = [{}]


@dataclass
class Config:
    pass


def _top(model):
    return model.model.layers[-1]


def prepare(model, cfg, ctx):
    import torch

    for p in model.parameters():
        p.requires_grad_(False)
    for p in _top(model).parameters():
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    return FirstOrderStepper(model, optimizer, ctx)


def memory(spec, shape, cfg):
    top = sum(lin.in_features * lin.out_features for lin in spec.layer_linears)
    return MemoryBreakdown(weights=4 * spec.n_params, gradients=4 * top, optimizer=8 * top, activations=1, other=0)


def flop_kinds(spec, cfg):
    from budgetune.flop_plan import StepKind

    return [StepKind(layers=frozenset({spec.n_layers - 1}))]


def trace_setup(model, cfg, shape):
    for p in model.parameters():
        p.requires_grad_(False)
    for p in _top(model).parameters():
        p.requires_grad_(True)
    return model
'''

SCORER = '''
"""Shortest first: scores an example by minus its token count (a throwaway scorer of the contract test)."""

from dataclasses import dataclass

import numpy as np

from budgetune.selection.protocol import Scores

NAME = "shortest"
NEEDS_MODEL = False
DEFAULT_STRATEGY = "topk"
AUTO = True


def predicted_flops(profile, examples) -> float:
    return 7.0 * len(examples)


@dataclass(kw_only=True)
class Config:
    weight: float = 1.0  # multiplies the score


class Scorer:
    name, needs_model, default_strategy = NAME, NEEDS_MODEL, DEFAULT_STRATEGY

    def __init__(self, config):
        self.config = config

    def score(self, model, pool, target):
        values = np.array([-self.config.weight * e.n_tokens for e in pool], dtype=float)
        return Scores(values, predicted_flops(None, pool), 0)
'''


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    """Writes the two plugin files and registers them (one line each), for this test only."""
    (tmp_path / "toy_method.py").write_text(textwrap.dedent(METHOD), encoding="utf-8")
    (tmp_path / "toy_scorer.py").write_text(textwrap.dedent(SCORER), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    from budgetune.methods import registry as methods
    from budgetune.selection import registry as scorers

    monkeypatch.setitem(methods.REGISTRY.modules, "toplayer", "toy_method")
    monkeypatch.setitem(scorers.REGISTRY.modules, "shortest", "toy_scorer")
    yield


def _model():
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(LlamaConfig(**LLAMA), attn_implementation="sdpa").float()


def test_method_is_listed(plugins):
    from budgetune.commands.choices import methods

    assert methods()["toplayer"].startswith("Top-layer tuning: only the last decoder layer trains")


def test_method_is_planned_and_recommended(plugins):
    from budgetune.planner.plan import check_fits, enumerate_plans, recommend

    spec = spec_from_dict(LLAMA, name="tiny")
    shape = Shape(micro_batch=2, seq_len=64, precision="fp32")
    plans = enumerate_plans(spec, shape, 2**40)
    mine = [p for p in plans if p.method == "toplayer"]
    assert len(mine) == 2  # with and without checkpointing
    top = H * H + 2 * H * (H // HEADS * KV) + H * H + 3 * H * I  # q, k, v, o, gate, up, down by hand
    assert mine[0].breakdown == MemoryBreakdown(weights=4 * spec.n_params, gradients=4 * top, optimizer=8 * top,
                                                activations=1, other=0)
    assert plans[recommend(plans)].method == "toplayer"  # its own QUALITY_RANK puts it first

    class Run:  # the fields check_fits reads of a run config
        model = type("M", (), {"model": None})
        train = type("T", (), {"method": "toplayer", "method_options": {}, "micro_batch_size": 2,
                               "gradient_checkpointing": False})
        data = type("D", (), {"max_seq_len": 64})
        budget = type("B", (), {"max_memory": "1KiB"})

    import budgetune.planner.plan as plan_mod

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("budgetune.memory.spec.spec_from_model_name", lambda name: spec)
        mp.setattr(plan_mod, "run_shape", lambda cfg, precision=None: shape)
        from budgetune.errors import Infeasible

        with pytest.raises(Infeasible, match="method 'toplayer' needs"):
            check_fits(Run)


def test_method_is_costed_as_flop_counter_measures_it(plugins):
    """The planner's FLOPs per token (from the config, through the module's flop_kinds) equal the ledger's (read
    off the real model) and torch's FlopCounterMode on the real step."""
    from accelerate import Accelerator

    from budgetune.methods import registry
    from budgetune.methods.base import TrainContext
    from budgetune.planner.plan import flops_per_token

    module = registry.get("toplayer")
    stepper = module.prepare(_model(), module.Config(), TrainContext(accelerator=Accelerator(cpu=True)))
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, V, (2, 96), generator=g)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}
    box = {}
    measured = counted(lambda: box.setdefault("r", stepper.step([batch], 1e-4)))
    assert box["r"].flops == pytest.approx(measured, rel=1e-3)
    planned = flops_per_token(spec_from_dict(LLAMA, name="tiny"), "toplayer", module.Config(),
                              Shape(micro_batch=2, seq_len=96, precision="fp32"))
    assert planned * 2 * 96 == pytest.approx(measured, rel=1e-3)


def test_method_is_traced(plugins):
    """The tracer sets the model up through the module's trace_setup: only the top layer has gradients, and Adam
    keeps two fp32 moments of it (known by construction from the model's own parameter count)."""
    from transformers import LlamaConfig

    from budgetune.planner.trace import trace_step, traceable

    assert "toplayer" in traceable()
    top = sum(p.numel() for p in _model().model.layers[-1].parameters())
    r = trace_step(LlamaConfig(**LLAMA), Shape(micro_batch=1, seq_len=8, precision="fp32"), "toplayer")
    assert r.breakdown.gradients == 4 * top
    assert r.breakdown.optimizer == pytest.approx(8 * top, abs=64)  # plus one step counter per tensor


def test_scorer_is_listed_in_help_and_errors(plugins):
    from budgetune.commands.choices import scorers
    from budgetune.selection import registry

    assert "shortest" in registry.listing().split(", ")
    assert scorers()["shortest"].startswith("Shortest first")
    assert registry.model_free().endswith("or shortest")  # named where a model-based scorer lacks its model
    assert registry.make("shortest", {"weight": "2"}).config.weight == 2.0  # its Config parses its options


def test_scorer_selects_and_is_costed(plugins):
    from budgetune.budget import Ledger
    from budgetune.data import Example
    from budgetune.selection import select

    pool = [Example([1] * n, [1] * n, uid=str(n)) for n in (5, 3, 9, 4)]
    ledger = Ledger()
    result = select({"scorer": "shortest", "budget": 2}, None, pool, pool[:1], ledger)
    assert sorted(pool[i].n_tokens for i in result.indices) == [3, 4]
    assert ledger.flops["selection"] == 7.0 * 4  # its own cost model, charged


def test_scorer_is_weighed_by_auto(plugins):
    """scorer 'auto' reads the cost model from the scorer's file: 7 FLOPs per pool example."""
    from budgetune.data import IGNORE, Example
    from budgetune.selection.auto import plan

    pool = [Example([1] * 40, [IGNORE] * 20 + [1] * 20, messages=[{"role": "user", "content": "q"}], uid=str(i))
            for i in range(50)]
    p = plan(pool, pool[:4], _model(), total_flops=1e9, batch=4)
    mine = [c for c in p.candidates if c["scorer"] == "shortest"]
    assert [c["predicted_flops"] for c in mine] == [7.0 * 50]
