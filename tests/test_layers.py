"""The layers of docs/architecture.md, checked on the source: nothing imports upward.

format <- write <- lightning; format <- read <- datasets and view; registry beside
them; cli on top. Every ``import`` counts, deferred ones inside functions included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "predstore"

ROOT = "predstore"
"""The package root, which puts the public names together: only cli sits above it."""

BOTTOM = {"errors"}
"""Modules at the package root that every layer may use."""

MAY_IMPORT: dict[str, set[str]] = {
    "format": set(),
    "write": {"format"},
    "read": {"format"},
    "datasets": {"read", "format"},
    "view": {"read", "registry", "format"},
    "registry": {"format"},
    "lightning": {"write", "registry", "format"},
    "cli": {"format", "write", "read", "datasets", "view", "registry", ROOT},
}
"""For each layer (a subpackage of predstore), the layers below it that it may import."""

DEFERRED_UPWARD = {
    # Store.dataset() and Store.sequential() are shortcuts to the datasets package: they
    # import it when called (torch loads then), never when predstore.read loads.
    ("predstore.read.store", "predstore.datasets.map_style"),
    ("predstore.read.store", "predstore.datasets.sequential"),
}
"""Upward imports allowed only inside a function or under ``TYPE_CHECKING``."""


def module_name(path: Path, src: Path = SRC) -> str:
    parts = ["predstore", *path.relative_to(src).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    """The layer of ``predstore.<layer>...``; :data:`ROOT` for the package root itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ROOT


def imports(tree: ast.Module, src: Path = SRC) -> list[tuple[str, int, bool]]:
    """``(imported module, line, at import time)`` for every predstore import in ``tree``."""
    found = []

    def visit(node: ast.AST, eager: bool) -> None:
        for child in ast.iter_child_nodes(node):
            deferred = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) or (
                isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test)
            )
            if isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                names = [child.module]
                if child.module == ROOT:  # from predstore import errors, open
                    names = [
                        f"{ROOT}.{a.name}" if _is_module(src, a.name) else ROOT for a in child.names
                    ]
                found.extend((n, child.lineno, eager) for n in names if n.startswith("predstore"))
            elif isinstance(child, ast.Import):
                found.extend(
                    (a.name, child.lineno, eager)
                    for a in child.names
                    if a.name.startswith("predstore")
                )
            visit(child, eager and not deferred)

    visit(tree, True)
    return found


def _is_module(src: Path, name: str) -> bool:
    return (src / name).is_dir() or (src / f"{name}.py").is_file()


def violations(src: Path = SRC) -> list[str]:
    """Every import in the package under ``src`` that runs against the layers."""
    found = []
    for path in sorted(src.rglob("*.py")):
        module = module_name(path, src)
        layer = layer_of(module)
        if layer in (ROOT, "__main__") or layer in BOTTOM:
            continue  # the package root puts the public names together; it sits on top
        if layer not in MAY_IMPORT:
            found.append(f"{module}: the layer {layer!r} is not in MAY_IMPORT; place it there")
            continue
        for target, line, eager in imports(ast.parse(path.read_text(), str(path)), src):
            below = layer_of(target)
            if below == layer or below in BOTTOM or below in MAY_IMPORT[layer]:
                continue
            if (module, target) in DEFERRED_UPWARD and not eager:
                continue
            found.append(f"{module}:{line} imports {target} ({layer} may not import {below})")
    return found


def test_no_module_imports_upward() -> None:
    assert violations() == []


def test_every_layer_exists_and_every_subpackage_has_a_layer() -> None:
    packages = {p.parent.name for p in SRC.glob("*/__init__.py")}
    assert packages - set(MAY_IMPORT) == set()
    assert {"format", "write", "read", "datasets", "registry", "lightning", "cli"} <= packages


@pytest.mark.parametrize(
    ("where", "source", "expected"),
    [
        ("format/x.py", "from predstore.read.store import Store\n", "format may not import read"),
        ("write/x.py", "def f():\n    import predstore.read.store\n", "write may not import read"),
        ("read/x.py", "from predstore.write import keys\n", "read may not import write"),
        (
            "registry/x.py",
            "import predstore.lightning.freezer\n",
            "registry may not import lightning",
        ),
        (
            "read/store.py",
            "from predstore.datasets.map_style import D\n",
            "may not import datasets",
        ),
        ("newlayer/x.py", "", "'newlayer' is not in MAY_IMPORT"),
    ],
)
def test_an_upward_import_is_reported(
    tmp_path: Path, where: str, source: str, expected: str
) -> None:
    (tmp_path / where).parent.mkdir(parents=True)
    (tmp_path / where).write_text(source)
    (tmp_path / where).with_name("__init__.py").touch()
    found = violations(tmp_path)
    assert found
    assert all(expected in f for f in found)


def test_a_deferred_shortcut_is_allowed_only_where_listed(tmp_path: Path) -> None:
    (tmp_path / "read").mkdir()
    (tmp_path / "read" / "store.py").write_text(
        "def dataset():\n    from predstore.datasets.map_style import D\n"
    )
    assert violations(tmp_path) == []
    (tmp_path / "read" / "other.py").write_text(
        "def dataset():\n    from predstore.datasets.map_style import D\n"
    )
    assert violations(tmp_path) == [
        "predstore.read.other:2 imports predstore.datasets.map_style (read may not import datasets)"
    ]
