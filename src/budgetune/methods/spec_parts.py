"""Parameter counts of a ModelSpec's parts, as the method memory models need them (pure functions).

The layout mirrors how transformers builds the model (memory/spec.py): embedding, per decoder layer its linear
layers and norms, the final norm, and an LM head unless it is tied to the embedding.
"""

from __future__ import annotations

from ..memory.spec import ModelSpec
from ..memory.terms import precision_dtypes


def tensor_numels(spec: ModelSpec) -> list[int]:
    """Element count of every parameter tensor (tied weights once)."""
    out = [spec.embedding_params]
    per_norm = [spec.hidden] * (2 if spec.norm_kind == "layernorm" else 1)
    for _ in range(spec.n_layers):
        for lin in spec.layer_linears:
            out.append(lin.in_features * lin.out_features)
            if lin.bias:
                out.append(lin.out_features)
        out += per_norm * spec.norms_per_layer
        if spec.qk_norm:
            out += [spec.head_dim, spec.head_dim]
    out += per_norm
    if spec.head_params:
        out.append(spec.head_params)
    return out


def layer_matrix_params(spec: ModelSpec) -> int:
    """Weights of the linear layers inside one decoder layer (biases excluded)."""
    return sum(l.in_features * l.out_features for l in spec.layer_linears)


def outside_params(spec: ModelSpec) -> tuple[int, int]:
    """(embedding group, head group: final norm plus an untied head) parameter counts."""
    return spec.embedding_params, spec.norm_params + spec.head_params


def state_format(precision: str) -> str:
    """Adam moments follow the parameter dtype in PyTorch: bf16 weights get bf16 moments."""
    return "bf16" if precision == "bf16" else "fp32"


def formats(precision: str) -> tuple[str, str]:
    """(weight format, gradient format) of a precision mode."""
    wfmt, _, _, gfmt = precision_dtypes(precision)
    return wfmt, gfmt


def matmul_params(spec: ModelSpec) -> int:
    """Weights used in matrix products: every decoder linear and the LM head (tied or not)."""
    return spec.n_layers * layer_matrix_params(spec) + spec.vocab * spec.hidden


def tied_embedding_grad_bytes(spec: ModelSpec, precision: str, trains: bool = True) -> int:
    """The end-of-backward transient of a trained, tied embedding: the lookup's dense gradient (V×h) is added to the
    head's gradient out of place, so for a moment three V×h gradients exist where the gradient term counts one
    (autograd's accumulation into .grad; measured in bench/methods.py). Zero when untied or frozen."""
    if not (trains and spec.tied_embeddings):
        return 0
    _, gfmt = formats(precision)
    return 2 * spec.vocab * spec.hidden * (2 if gfmt == "bf16" else 4)
