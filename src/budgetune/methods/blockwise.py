"""What BAdam and HiFT share: the model cut into ordered groups of parameters, one group trainable at a time.

Only the active group has requires_grad, so backward computes weight gradients for it alone and stops below it;
the FLOP profile is recomputed whenever the active group changes.
"""

from __future__ import annotations

from ..errors import UserError
from ..flops import _decoder_layers
from ..lazy import lazy

torch = lazy("torch")


def layer_groups(model, layers_per_group: int, *, what: str) -> list[tuple[str, list[str]]]:
    """(kind, parameter names) per group, bottom to top: the embedding ("embedding"), consecutive decoder layers
    `layers_per_group` at a time ("layers"), then the final norm and an untied head ("head")."""
    if int(layers_per_group) < 1:
        raise UserError(f"{what}={layers_per_group} gives zero layers per group; use 1 or more")
    layers = _decoder_layers(model)
    if not layers:
        raise UserError("the model has no decoder layer list to cut into groups")
    owner = {id(p): i for i, layer in enumerate(layers) for p in layer.parameters()}
    named = list(dict(model.named_parameters()).items())  # tied weights once
    groups: list[list[str]] = [[] for _ in range(0, len(layers), layers_per_group)]
    embedding, rest = [], []
    embed_weight = model.get_input_embeddings().weight if hasattr(model, "get_input_embeddings") else None
    for name, p in named:
        if id(p) in owner:
            groups[owner[id(p)] // layers_per_group].append(name)
        elif embed_weight is not None and p is embed_weight:
            embedding.append(name)
        else:
            rest.append(name)
    out = [("embedding", embedding)] + [("layers", g) for g in groups] + [("head", rest)]
    return [(kind, g) for kind, g in out if g]


def activate(model, names: set[str]) -> list[torch.nn.Parameter]:
    """Make exactly `names` trainable (gradients of the others dropped); returns the active parameters."""
    active = []
    for name, p in dict(model.named_parameters()).items():
        on = name in names
        p.requires_grad_(on)
        if not on:
            p.grad = None
        else:
            active.append(p)
    return active


def single_process(ctx, name: str) -> None:
    if getattr(ctx.accelerator, "num_processes", 1) > 1:
        raise UserError(f"{name} switches the trainable parameters during training, which DDP cannot follow; "
                        f"run it in one process")


def all_weights(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in dict(model.named_parameters()).items()}


def block_sizes(spec, layers_per_group: int, *, embedding: bool, head: bool) -> list[tuple[str, int, int]]:
    """(kind, parameters, decoder layers) of each group, bottom to top, as blockwise.layer_groups cuts them."""
    from .spec_parts import outside_params

    emb, top = outside_params(spec)
    out = [("embedding", emb, 0)] if embedding else []
    for start in range(0, spec.n_layers, layers_per_group):
        k = min(layers_per_group, spec.n_layers - start)
        out.append(("layers", k * spec.layer_params, k))
    if head:
        out.append(("head", top, 0))
    return out
