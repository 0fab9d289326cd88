"""Exact memory of real training steps without weights: the real transformers architecture runs forward, backward
and the optimizer step on fake tensors (torch._subclasses.FakeTensorMode: shapes and dtypes, no storage), and a
dispatch mode counts every storage that comes alive or dies, keeping only the global peak and what was alive then.

Why our own TorchDispatchMode rather than torch.distributed._tools.mem_tracker.MemTracker: MemTracker installs
gradient hooks on every parameter (it fails on frozen ones) and keeps per-module peaks, which crawls with peft's
thousands of modules; the planner needs only the global peak and its split into weights / gradients / optimizer /
activations / other, which we classify once, at the peak.

How the model is built: on the meta device (no initialisation cost, peft can wrap it there), then every parameter
and buffer is swapped for a fake CPU tensor of the same shape and dtype (tied weights stay tied). The meta device
itself is not used for the step: it takes other attention paths and fails under checkpointing.

What it mirrors: budgetune's loss (methods.base.token_loss), AdamW with the foreach implementation (PyTorch's
default on GPU; on CPU the default is a per-tensor loop with smaller temporaries), in steady state (the optimizer
states exist before the traced step). A method is traced when its module says how (methods/base.py):
trace_setup(model, cfg, shape) marks what trains (or wraps the model), trace_optimizer(model, cfg, trainable) builds
its optimizer where it is not foreach AdamW, trace_after_step(optimizer) does its per-step housekeeping, and
FORWARD_ONLY = True runs the zeroth-order step (two perturbed forward passes under no_grad). Today that is full,
LoRA, BAdam, GaLore, MeZO and SubZero. What it cannot run: bitsandbytes' quantised kernels and 8-bit optimizers (no
fake-tensor kernels), so QLoRA and 8-bit Adam are checked analytically and on a GPU (bench/gpu_memory_check.py)
only; HiFT, LOZO and Addax are not mirrored yet.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

from ..errors import UserError
from ..memory.peak import PeakTracker
from ..memory.terms import MemoryBreakdown, Shape


def traceable() -> list[str]:
    """The registered methods whose module declares a trace set-up (trace_setup)."""
    from ..methods import registry

    return [n for n in registry.names() if hasattr(registry.get(n), "trace_setup")]


def _module(method: str):
    from ..methods import registry

    module = registry.get(method)
    if not hasattr(module, "trace_setup"):
        raise UserError(f"the tracer has no setup for method '{method}' (its module declares no trace_setup); it "
                        f"traces {', '.join(traceable())} (other methods are estimated analytically)")
    return module


@dataclass
class TraceResult:
    peak: int  # bytes of all live tensors at the global peak
    breakdown: MemoryBreakdown  # that peak, by term
    phase: str  # forward / backward / optimizer: where the peak fell
    seconds: float
    n_params: int


def _materialize_fake(model, fake_mode) -> None:
    """Swap every meta parameter and buffer for a fake CPU tensor, keeping shared (tied) tensors shared.
    With fake_mode a nullcontext the tensors are real (uninitialised): the tests compare both."""
    import torch

    made: dict[int, torch.Tensor] = {}
    for module in model.modules():
        for name, p in list(module._parameters.items()):
            if p is None:
                continue
            if id(p) not in made:
                with fake_mode:
                    data = torch.empty(p.shape, dtype=p.dtype, device="cpu")
                made[id(p)] = torch.nn.Parameter(data, requires_grad=p.requires_grad)
            module._parameters[name] = made[id(p)]
        for name, b in list(module._buffers.items()):
            if b is None:
                continue
            if id(b) not in made:
                with fake_mode:
                    made[id(b)] = torch.zeros(b.shape, dtype=b.dtype, device="cpu")
            module._buffers[name] = made[id(b)]


def _build(config, shape: Shape, module, method_cfg):
    """The model on the meta device, set up by the method module's trace_setup (which parameters train), in the
    shape's precision."""
    import torch
    from transformers import AutoModelForCausalLM

    # A frozen base needs no fp32 master copy, so under AMP it is loaded in bf16 (the usual GPU practice);
    # full fine-tuning under AMP keeps fp32 weights. peft keeps adapters in fp32 either way.
    low = shape.precision == "bf16" or (shape.precision == "amp_bf16" and getattr(module, "FROZEN_BASE", False))
    dtype = torch.bfloat16 if low else torch.float32
    config._attn_implementation = shape.attention
    with torch.device("meta"):
        try:
            model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=shape.attention)
        except ValueError as e:  # e.g. Gemma-2 has no SDPA path in transformers
            raise UserError(f"transformers cannot build {config.model_type} with {shape.attention} attention "
                            f"({str(e).split('.')[0]}); plan with --attention eager") from None
    model = module.trace_setup(model, method_cfg, shape)
    # peft keeps adapters in fp32 when the base is bf16 unless told otherwise; the set-up mirrors the training code.
    if shape.gradient_checkpointing and not getattr(module, "FORWARD_ONLY", False):  # nothing to recompute
        from ..methods.base import enable_checkpointing

        enable_checkpointing(model)
    return model


def padded_batch(shape: Shape, pad_id: int = 0) -> dict:
    """A micro-batch as the training loop builds it: examples right-padded to the longest by
    budgetune.data.collate, padding masked from attention and loss. Row 0 is seq_len long; the others share the
    real tokens so that `shape.padding_share` of the positions are padding."""
    from ..data import Example, collate

    b, s = shape.micro_batch, shape.seq_len
    share = shape.padding_share
    if b == 1 or share == 0:
        lengths = [s] * b
    else:
        rest = max(b - 1, round((1 - share) * b * s) - s)  # real tokens of rows 1..b-1
        lengths = [s] + [max(1, min(s, rest // (b - 1) + (1 if i < rest % (b - 1) else 0))) for i in range(b - 1)]
    examples = [Example([1] * n, [1] * n) for n in lengths]
    return collate(examples, pad_id)


def _loss(model, batch, *, precision: str = "fp32", no_grad: bool = False):
    """methods.base.token_loss's tensor operations under the loop's precision (its token count reads data, which
    fake tensors have none of). Under amp_bf16 accelerate wraps the model's forward in autocast and converts its
    outputs to fp32 (accelerate.utils.convert_outputs_to_fp32); the loss runs outside autocast."""
    import torch

    from ..loss import next_token_loss

    # The mask as the loop passes it: transformers skips an all-ones mask on real tensors (and then SDPA handles
    # grouped-query K/V without expanding them); with padding, or on fake tensors whose values it cannot read, it
    # builds a b×1×s×s mask and expands K/V to every head (repeat_kv). A batch without padding is passed without
    # its mask, which is what transformers does with the all-ones mask. token_loss passes use_cache=False; under
    # fake tensors that alone makes transformers build a mask (on real tensors it does not), so an unpadded batch
    # with autograd (where the cache holds only tensors backward saves anyway) keeps the default, and without
    # autograd (where the cache would hold every layer's K/V) turns it off.
    padded = bool(batch.get("padded"))
    kw = {"attention_mask": batch["attention_mask"], "use_cache": False} if padded else (
        {"use_cache": False} if no_grad else {})
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if precision == "amp_bf16"
                else contextlib.nullcontext())
    with autocast:
        logits = model(input_ids=batch["input_ids"], **kw).logits
    if precision == "amp_bf16":
        logits = logits.float()
    loss, mask = next_token_loss(logits, batch["labels"])
    return loss / mask.numel()


def _optimizer(model, module, method_cfg, trainable: list):
    """The optimizer the method's stepper builds: its module's trace_optimizer, else foreach AdamW (as on GPU)."""
    import torch

    if getattr(module, "FORWARD_ONLY", False):
        return None  # no optimizer state: z is regenerated from its seed
    if hasattr(module, "trace_optimizer"):
        return module.trace_optimizer(model, method_cfg, trainable)
    return torch.optim.AdamW(trainable, lr=1e-5, foreach=True)


def _zeroth_order_steps(model, batch, tracker, precision: str, steps: int) -> None:
    """MeZO's step (methods.zeroth_order): θ+εz, forward, θ−2εz, forward, θ+εz, θ−lr·g·z, all in place. The
    perturbation allocates only its pool of z (CHUNK values at most) and adds windows of it to views of each weight;
    one window per weight allocates exactly what the chunked loop does, without thousands of fake ops per pass."""
    import torch

    from ..methods.zeroth_order import CHUNK

    params = list(dict(model.named_parameters()).values())
    model.eval()

    def perturb(scale: float) -> None:
        tracker.phase = "optimizer"
        if "z" not in pools:
            pools["z"] = torch.randn(min(CHUNK, max(p.numel() for p in params)), dtype=params[0].dtype)
        pool = pools["z"]
        for p in params:
            k = min(p.numel(), pool.numel())
            p.view(-1)[:k].add_(pool[:k], alpha=scale)

    def probe() -> None:
        tracker.phase = "forward"
        loss = _loss(model, batch, precision=precision, no_grad=True)
        del loss

    pools: dict = {}
    with torch.no_grad():
        for _ in range(steps):
            perturb(1e-3)
            probe()
            perturb(-2e-3)
            probe()
            perturb(1e-3)
            perturb(-1e-6)  # the update: lr·g along the same z
            tracker.phase = "setup"


def trace_step(config, shape: Shape, method: str, method_cfg=None, *, steps: int = 2,
               fake: bool = True) -> TraceResult:
    """Peak memory of training `method` on the architecture of `config` (a transformers config) in steady state:
    an optimizer step that creates the optimizer states, then `steps - 1` full training steps."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    start = time.perf_counter()
    module = _module(method)
    shape = getattr(module, "trace_shape", lambda s, c: s)(shape, method_cfg)  # a method may train at another shape
    model = _build(config, shape, module, method_cfg)
    model.train()
    fake_mode = FakeTensorMode(allow_non_fake_inputs=True) if fake else contextlib.nullcontext()
    _materialize_fake(model, fake_mode)
    params = list(model.parameters())
    trainable = [p for p in params if p.requires_grad]
    optimizer = _optimizer(model, module, method_cfg, trainable)
    batch = padded_batch(shape)
    batch["padded"] = bool((batch["attention_mask"] == 0).any())
    if fake:
        batch = {k: fake_mode.from_tensor(v) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    tracker = PeakTracker()
    weight_ids = {id(t.untyped_storage()) for t in list(params) + list(model.buffers())}

    def classify(live: dict) -> MemoryBreakdown:
        grads = {id(p.grad.untyped_storage()) for p in trainable if p.grad is not None}
        states = {id(v.untyped_storage()) for s in (optimizer.state.values() if optimizer else ()) for v in s.values()
                  if isinstance(v, torch.Tensor)}
        terms = dict(weights=0, gradients=0, optimizer=0, activations=0, other=0)
        for key, (nbytes, phase) in live.items():
            if key in weight_ids:
                terms["weights"] += nbytes
            elif key in grads:
                terms["gradients"] += nbytes
            elif key in states:
                terms["optimizer"] += nbytes
            elif phase in ("forward", "backward"):
                terms["activations"] += nbytes
            else:
                terms["other"] += nbytes
        return MemoryBreakdown(**terms)

    for t in list(params) + list(model.buffers()) + [v for v in batch.values() if isinstance(v, torch.Tensor)]:
        tracker.register(t)
    tracker.classify = classify
    if getattr(module, "FORWARD_ONLY", False):
        with fake_mode, tracker.mode:
            _zeroth_order_steps(model, batch, tracker, shape.precision, steps)
        tracker.finish()
        n_params = sum(p.numel() for p in {id(p): p for p in params}.values())
        return TraceResult(tracker.peak, tracker.snapshot or MemoryBreakdown(), tracker.peak_phase,
                           time.perf_counter() - start, n_params)
    def compact() -> None:  # the method's own per-step housekeeping (GaLore compacts its projectors)
        if hasattr(module, "trace_after_step"):
            module.trace_after_step(optimizer)

    with fake_mode, tracker.mode:
        # Steady state without paying for a first forward/backward: one optimizer step on zero gradients creates
        # the optimizer states (its own peak is that of a real step's optimizer phase).
        tracker.phase = "optimizer"
        for p in trainable:
            p.grad = torch.zeros_like(p)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        compact()
        for _ in range(steps - 1):
            tracker.phase = "forward"
            loss = _loss(model, batch, precision=shape.precision)
            tracker.phase = "backward"
            loss.backward()
            del loss
            tracker.phase = "optimizer"
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            compact()
            tracker.phase = "setup"
    tracker.finish()
    breakdown = tracker.snapshot or MemoryBreakdown()
    n_params = sum(p.numel() for p in {id(p): p for p in params}.values())
    return TraceResult(tracker.peak, breakdown, tracker.peak_phase, time.perf_counter() - start, n_params)


def trace_model(name: str, shape: Shape, method: str, options: dict | None = None, **kw) -> TraceResult:
    """trace_step for a model reference (config.json, directory, embedded name, cached id)."""
    from ..methods.registry import make_config
    from ..models import load_config

    cfg = make_config(method, options or {}) if method in traceable() else None
    return trace_step(load_config(name), shape, method, cfg, **kw)
