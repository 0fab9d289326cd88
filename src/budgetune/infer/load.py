"""Load what a run produced for inference: RUN_DIR/config.json names the base model; RUN_DIR/adapter holds a peft
adapter (merged into the base so decoding costs the base model's FLOPs) or RUN_DIR/model a full model."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserError
from ..models import load_model, load_tokenizer


def run_config(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "config.json"
    if not Path(run_dir).is_dir():
        raise UserError(f"{run_dir}: no such run directory; pass the --out directory of a finished run")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} is missing; {run_dir} is not a budgetune run directory") from None
    except ValueError as e:
        raise UserError(f"{path}: not valid JSON ({e}); the run directory is damaged") from None


def base_model_name(run_dir: str | Path, model: str | None = None) -> str:
    trained_on = run_config(run_dir).get("model", {}).get("model")
    if not trained_on:
        raise UserError(f"{Path(run_dir) / 'config.json'}: field model.model is missing; the run directory is damaged")
    if model is not None and model != trained_on:
        raise UserError(f"--model {model} differs from the model {run_dir} was trained on ({trained_on}); drop "
                        f"--model or pass --model {trained_on}")
    return trained_on


def artefact(run_dir: str | Path) -> tuple[str, Path]:
    run_dir = Path(run_dir)
    for kind in ("adapter", "model"):
        if (run_dir / kind).is_dir():
            return kind, run_dir / kind
    raise UserError(f"{run_dir}: no adapter/ or model/ inside; the run has not finished (resume it with --resume)")


def apply_run(base, run_dir: str | Path):
    """The fine-tuned model of a run: the adapter merged into `base` (modified in place), or the saved model."""
    kind, path = artefact(run_dir)
    if kind == "model":
        return load_model(str(path), dtype=str(next(base.parameters()).dtype).replace("torch.", "")).eval()
    from peft import PeftModel

    return PeftModel.from_pretrained(base, str(path)).merge_and_unload().eval()


def load_for_inference(model: str | None = None, run_dir: str | None = None, *, dtype: str = "float32",
                       allow_download: bool = False):
    """(model, tokenizer, name): a plain model, or a run's fine-tuned model when run_dir is given."""
    if run_dir is None:
        if model is None:
            raise UserError("no model given; pass --model NAME (e.g. smollm2-135m) or --adapter RUN_DIR")
        return (load_model(model, dtype=dtype, allow_download=allow_download).eval(),
                load_tokenizer(model, allow_download=allow_download), model)
    name = base_model_name(run_dir, model)
    cfg_dtype = run_config(run_dir).get("model", {}).get("dtype") or dtype
    tokenizer = load_tokenizer(name, allow_download=allow_download)
    kind, path = artefact(run_dir)
    base = None if kind == "model" else load_model(name, dtype=cfg_dtype, allow_download=allow_download)
    tuned = apply_run(base, run_dir) if base is not None else load_model(str(path), dtype=cfg_dtype).eval()
    return tuned, tokenizer, f"{name} + {run_dir}"
