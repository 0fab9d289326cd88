"""The choices a flag accepts, listed from the registries with one line each, for `--help`.

Each line is the first sentence of the plugin's own docstring, read from its source file with `ast` (never by
importing it: methods import torch and peft, and `--help` must stay fast)."""

from __future__ import annotations

import ast
import importlib.util
import re
from functools import cache

# Strategies are functions of one module, not plugin files; their one-line descriptions live here.
STRATEGY_LINES = {
    "topk": "the highest scores first",
    "bottomk": "the lowest scores first",
    "offset": "skip the top share (--selection offset=0.1), then the highest",
    "stratified": "round-robin over score bins, so every difficulty level is kept (CCS-style)",
    "balanced": "round-robin over k-means clusters (or the scorer's groups), so every kind of example is kept",
}


def _first_sentence(text: str | None, width: int = 100) -> str:
    """The docstring's first sentence without its citations, cut at a word to fit one help line."""
    if not text:
        return ""
    flat = " ".join(text.split())
    m = re.search(r"(?<!\bet al)(?<!\be\.g)(?<!\bi\.e)\.(\s|$)", flat)
    flat = flat[: m.start()] if m else flat.rstrip(".")
    flat = re.sub(r"\s*\([^()]*\b(?:19|20)\d\d[^()]*\)", "", flat).strip()  # citations
    if len(flat) > width:
        flat = flat[: flat.rfind(" ", 0, width - 1)].rstrip(",;:") + " …"
    return flat


@cache
def docstring_line(module: str, attribute: str | None = None) -> str:
    """First sentence of a module's docstring (or of one of its classes), without importing the module."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin:
        return ""
    with open(spec.origin, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    if attribute is None:
        return _first_sentence(ast.get_docstring(tree))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == attribute and ast.get_docstring(node):
            return _first_sentence(ast.get_docstring(node))
    # A module documenting several classes as bullets ("- Successive halving (...): ...") describes each there.
    key = attribute.lower()
    for bullet in re.split(r"\n- ", ast.get_docstring(tree) or ""):
        head = re.split(r"[:(]", bullet, maxsplit=1)[0]
        if head.replace(" ", "").lower() == key:
            return _first_sentence(bullet)
    return ""


def methods() -> dict[str, str]:
    from ..methods.registry import METHODS

    return {name: docstring_line(module) for name, module in METHODS.items()}


def scorers() -> dict[str, str]:
    from ..selection.registry import SCORERS

    return {name: docstring_line(module) for name, module in SCORERS.items()}


def governors() -> dict[str, str]:
    from ..governor import GOVERNORS

    out = {}
    for name, target in GOVERNORS.items():
        module, _, cls = target.partition(":")
        out[name] = docstring_line(module, cls or None) or docstring_line(module)
    return out


def strategies() -> dict[str, str]:
    from ..selection.strategies import STRATEGIES

    return {name: STRATEGY_LINES.get(name, "") for name in STRATEGIES}


def listing(choices: dict[str, str], indent: str = "  ") -> str:
    """'name  description' lines, names aligned."""
    width = max((len(n) for n in choices), default=0)
    return "\n".join(f"{indent}{n:<{width}}  {d}".rstrip() for n, d in choices.items())


BLOCKS = {
    "methods": ("methods (--method; options with -o KEY=VALUE)", methods),
    "scorers": ("data scorers (--selection scorer=NAME budget=10%, or select --scorer NAME)", scorers),
    "strategies": ("selection strategies (--selection strategy=NAME, or select --strategy NAME)", strategies),
    "governors": ("governors (--governor name=NAME)", governors),
}


def epilog(blocks=tuple(BLOCKS)) -> str:
    """The choices shown under `run --help`, `train --help` (all) and `select --help` (scorers, strategies)."""
    return "\n\n".join(f"{BLOCKS[b][0]}:\n" + listing(BLOCKS[b][1]()) for b in blocks)


def lazy_epilog(parser, blocks=tuple(BLOCKS)) -> None:
    """Show the choices under the verb's --help, built only when help is printed (reading the registries imports
    numpy through budgetune.selection, which a plain command line does not need)."""
    format_help = parser.format_help

    def with_choices():
        parser.epilog = epilog(blocks)
        return format_help()

    parser.format_help = with_choices
