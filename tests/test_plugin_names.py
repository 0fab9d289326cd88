"""No method, scorer or governor is named outside its own file and its registry (issue 17: a plugin is one file and
one registry line). The source is read with ast: a string literal equal to a registered name, or a CLI example
naming one (`--method NAME`, `scorer=NAME`, `name=NAME`), is a name in code. Docs and tests may name plugins."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import budgetune
from budgetune import governor
from budgetune.methods import registry as methods
from budgetune.selection import registry as scorers

ROOT = Path(budgetune.__file__).parent
REGISTRIES = {"methods/registry.py", "selection/registry.py", "governor/__init__.py"}
# Each entry: a file and a name that it may hold, and why it is not a plugin reference.
ALLOWED = {
    ("config.py", "lora"): "the run's default method, declared once (TrainConfig.method; joint/memory reads it)",
    ("methods/badam.py", "random"): "a block order of BAdam's, not the random scorer",
    ("methods/hift.py", "random"): "a block order of HiFT's, not the random scorer",
}
FIELD_WORDS = {"loss"}  # also the name of a result's field (r["loss"], {"loss": ...}): allowed as a key only
EXAMPLE = re.compile(r"(?:--method[ =]|--scorer[ =]|--governor[ =]|scorer=|method=|name=)(\w+)")


def _owners() -> dict[str, set[str]]:
    """name → the files allowed to hold it: the plugin's own module."""
    out: dict[str, set[str]] = {}
    for registry in (methods.REGISTRY, scorers.REGISTRY, governor.REGISTRY):
        for name, target in registry.modules.items():
            module = target.split(":")[0].removeprefix("budgetune.")
            out.setdefault(name, set()).add(module.replace(".", "/") + ".py")
    return out


def _keys(tree: ast.AST) -> set[int]:
    """ids of the constants used as a key: a subscript, a dict literal's key, .get()'s first argument."""
    keys = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript):
            keys.add(id(node.slice))
        elif isinstance(node, ast.Dict):
            keys.update(id(k) for k in node.keys if k is not None)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
                and node.args:
            keys.add(id(node.args[0]))
    return keys


def names_in_code(root: Path, owners: dict[str, set[str]]) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel in REGISTRIES:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        keys = _keys(tree)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                continue
            named = [node.value] if node.value in owners else []
            named += [m.group(1) for m in EXAMPLE.finditer(node.value) if m.group(1) in owners]
            for name in named:
                if rel in owners[name] or (rel, name) in ALLOWED:
                    continue
                if name in FIELD_WORDS and id(node) in keys:
                    continue
                found.append(f"{rel}:{node.lineno}: {name!r}")
    return found


def test_no_plugin_is_named_outside_its_file_and_registry():
    found = names_in_code(ROOT, _owners())
    assert not found, "plugin names outside their own files and registries (ask the module or the registry):\n" + \
        "\n".join(found)


def test_the_scan_finds_a_name_in_code(tmp_path):
    """The scan itself: a method named in a planner file, a scorer in a CLI example and a governor as a default
    argument are found; the plugin's own file, a field key and an allowed entry are not."""
    (tmp_path / "planner").mkdir()
    (tmp_path / "planner" / "pick.py").write_text(
        'def pick(method="toy"):\n'
        '    return {"loss": 1.0}["loss"] if method == "toy" else "try --scorer shorty"\n'
        'ORDER = ("random",)\n'
        'GOV = "slow"\n', encoding="utf-8")
    (tmp_path / "toy.py").write_text('NAME = "toy"\n', encoding="utf-8")
    owners = {"toy": {"toy.py"}, "shorty": {"shorty.py"}, "slow": {"gov.py"}, "loss": {"loss.py"},
              "random": {"random.py"}}
    found = names_in_code(tmp_path, owners)
    assert sorted(f.split(": ")[1] for f in found) == ["'random'", "'shorty'", "'slow'", "'toy'", "'toy'"]
    assert not any(f.startswith("toy.py") for f in found)
