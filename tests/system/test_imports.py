"""The package's import graph, imports inside functions included: no cycle, and every
import points down the layers of ARCHITECTURE.md (or within a row); nothing below model.py
imports it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "python" / "lenet_fast"

# top to bottom; a module may import from its own row and the rows below
ROWS = [
    ("__init__", "__main__", "cli", "plots", "_predict", "export", "dask", "sklearn"),
    ("model",),
    ("train",),
    ("checkpoint", "pretrained", "_onnx", "tflite"),
    ("network",),
    ("mnist", "download", "distort", "image"),
    ("_imageio",),
    ("kernels", "reference", "tables", "layout", "runtime", "_validate", "_files", "_core"),
]
RANK = {name: i for i, row in enumerate(ROWS) for name in row}


def modules() -> dict[str, Path]:
    return {p.stem: p for p in sorted(PACKAGE.glob("*.py"))}


def _type_checking_only(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The package modules ``path`` imports anywhere in its body, ``if TYPE_CHECKING:``
    blocks excepted; ``from . import name`` of a name that is not a module is __init__."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.ImportFrom):
            absolute = node.level == 0 and (node.module or "").split(".")[0] == "lenet_fast"
            if node.level == 1 or absolute:
                parts = (node.module or "").split(".")
                sub = parts[1:] if absolute else parts
                if sub and sub[0]:
                    found.add(sub[0])
                else:
                    for alias in node.names:
                        found.add(alias.name if alias.name in known else "__init__")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "lenet_fast":
                    found.add(parts[1] if len(parts) > 1 else "__init__")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return found - {path.stem}


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods) | {"_core"}
    return {name: imports_of(path, known) for name, path in mods.items()}


def test_every_module_has_a_row():
    assert set(modules()) - set(RANK) == set(), "place the new module in ROWS"


def test_the_parser_sees_imports_inside_functions(tmp_path):
    src = tmp_path / "probe.py"
    src.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from .model import LeNet5\n"
        "def f():\n    from .train import train\n    import lenet_fast.layout\n"
        "    from . import tables, info\n",
        encoding="utf-8",
    )
    assert imports_of(src, {"train", "layout", "tables", "model"}) == {
        "train",
        "layout",
        "tables",
        "__init__",
    }


def test_no_import_cycle():
    g = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(m: str) -> None:
        state[m] = 1
        path.append(m)
        for d in sorted(g.get(m, ())):
            if state.get(d) == 1:
                pytest.fail("import cycle: " + " -> ".join(path[path.index(d) :] + [d]))
            if d not in state:
                walk(d)
        path.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            walk(m)


def test_imports_point_down_the_layers():
    up = [(m, d) for m, deps in graph().items() for d in deps if RANK[d] < RANK[m]]
    assert up == [], f"imports from a higher row: {up}"


def test_nothing_below_the_model_imports_it():
    users = {m for m, deps in graph().items() if "model" in deps}
    assert users <= {"__init__", "cli", "__main__", "export", "dask", "sklearn"}, users
