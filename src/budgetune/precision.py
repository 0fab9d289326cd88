"""The training precision, one name for `plan` and `run`: what the weights are stored in and what the matrix
products compute in, applied through accelerate's mixed precision.

- fp32: fp32 weights and compute (the only choice that is fast on most CPUs).
- amp_bf16: fp32 master weights, forward under bf16 autocast (accelerate `mixed_precision="bf16"`: it wraps the
  model's forward in torch.autocast and converts its outputs to fp32); a base the method never updates (LoRA) is
  stored in bf16, as it needs no fp32 master copy. The default on CUDA.
- bf16: pure bf16 weights, gradients and Adam moments (no autocast).
- auto: amp_bf16 on CUDA, fp32 elsewhere; bf16 when the model's dtype is already bfloat16/float16.

A method that cannot run a precision says so in its module (`PRECISIONS`, `PRECISION_REASON`) and is refused by
name with the reason, before any weight is loaded.
"""

from __future__ import annotations

from .errors import UserError

CHOICES = ("auto", "fp32", "bf16", "amp_bf16")
LOW_DTYPES = ("bfloat16", "float16")


def resolve(requested: str | None, *, cuda: bool, model_dtype: str = "float32") -> str:
    """The precision a run uses: `requested` (a CHOICES name), with auto resolved for this machine and dtype."""
    requested = (requested or "auto").lower()
    if requested not in CHOICES:
        raise UserError(f"train field 'precision' is '{requested}'; use one of {', '.join(CHOICES)}")
    low = model_dtype in LOW_DTYPES
    if requested == "auto":
        return "bf16" if low else ("amp_bf16" if cuda else "fp32")
    if low and requested != "bf16":
        raise UserError(f"precision {requested} needs fp32 weights but model dtype is {model_dtype}; use "
                        f"--precision bf16 or --dtype float32")
    return requested


def for_run(cfg, *, cuda: bool | None = None) -> str:
    """The resolved precision of a RunConfig (auto: on this machine)."""
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    return resolve(getattr(cfg.train, "precision", "auto"), cuda=cuda, model_dtype=cfg.model.dtype)


def check_method(name: str, module, precision: str) -> None:
    """Refuse a precision the method's stepper cannot run, naming the method and the reason."""
    allowed = getattr(module, "PRECISIONS", None)
    if allowed is not None and precision not in allowed:
        reason = getattr(module, "PRECISION_REASON", "")
        raise UserError(f"method '{name}' cannot train in {precision}" + (f" ({reason})" if reason else "")
                        + f"; use --precision {' or '.join(allowed)}")


def supports(module, precision: str) -> bool:
    allowed = getattr(module, "PRECISIONS", None)
    return allowed is None or precision in allowed


def load_dtype(precision: str, module, model_dtype: str) -> str:
    """The dtype the loop loads the model in: bf16 for pure bf16 and for a frozen base under AMP
    (`FROZEN_BASE = True` in the method module), else the configured dtype."""
    if precision == "bf16":
        return model_dtype if model_dtype in LOW_DTYPES else "bfloat16"
    if precision == "amp_bf16" and getattr(module, "FROZEN_BASE", False):
        return "bfloat16"
    return model_dtype


def mixed_precision(precision: str) -> str:
    """accelerate's mixed_precision argument for a precision."""
    return "bf16" if precision == "amp_bf16" else "no"


def make_accelerator(precision: str, **kw):
    """An Accelerator with this precision's mixed precision. accelerate keeps one process-wide state, fixed by the
    first Accelerator; in a single process (tests, notebooks, several runs in one session) a later run with another
    precision resets it, which accelerate allows only that way."""
    import torch
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    kw.setdefault("cpu", not torch.cuda.is_available())
    try:
        return Accelerator(mixed_precision=mixed_precision(precision), **kw)
    except ValueError as e:
        if "already been initialized" not in str(e) or AcceleratorState().num_processes > 1:
            raise
        AcceleratorState._reset_state()
        return Accelerator(mixed_precision=mixed_precision(precision), **kw)


def cast_model(model, precision: str, module, model_dtype: str = "float32"):
    """A model handed to the loop already loaded, cast to the dtype load_dtype gives (quantised models as they are)."""
    import torch

    if getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False):
        return model
    want = load_dtype(precision, module, model_dtype)
    dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}.get(want)
    first = next((p for p in model.parameters() if p.is_floating_point()), None)
    if dtype is not None and first is not None and first.dtype != dtype:
        model = model.to(dtype)
    return model
