"""Every public definition has an ``Args:`` section and an ``Example::`` that runs, and these tests run them.

The public surface: everything in ``predstore.__all__`` and the public
methods and properties of ``Store``, ``StoreWriter`` and ``KeySpec``. Each
example runs as written, in a fresh namespace, in a temporary working
directory that holds a small committed store at ``preds.pstore`` (keys
``logits``, ``pred`` and ``label``; rows named ``case-0`` ...).
"""

from __future__ import annotations

import inspect
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import predstore

CLASSES = (predstore.Store, predstore.StoreWriter, predstore.KeySpec)


def public_definitions() -> dict[str, Any]:
    found: dict[str, Any] = {n: getattr(predstore, n) for n in predstore.__all__}
    del found["__version__"]  # a string has no docstring of its own
    for cls in CLASSES:
        for name, member in vars(cls).items():
            if not name.startswith("_") and (callable(member) or hasattr(member, "__get__")):
                found[f"{cls.__name__}.{name}"] = member
    return found


def docstring(member: Any) -> str:
    target = getattr(member, "fget", None) or getattr(member, "func", None) or member
    return inspect.getdoc(target) or ""


def example(doc: str) -> str | None:
    """The indented block after ``Example::``, dedented; None without one."""
    lines = doc.splitlines()
    try:
        start = lines.index("Example::") + 1
    except ValueError:
        return None
    block = []
    for line in lines[start:]:
        if line.strip() and not line.startswith(" "):
            break
        block.append(line)
    return textwrap.dedent("\n".join(block)).strip() or None


def write_store(path: Path) -> None:
    logits = np.random.default_rng(0).random((8, 10), dtype=np.float32)
    with predstore.StoreWriter(path) as writer:
        writer.write(
            {"logits": logits, "pred": logits.argmax(1), "label": np.arange(8) % 10},
            indices=np.arange(8),
            names=[f"case-{i}" for i in range(8)],
        )


DEFINITIONS = public_definitions()


@pytest.mark.parametrize("name", sorted(DEFINITIONS))
def test_the_example_runs(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = example(docstring(DEFINITIONS[name]))
    assert code, f"{name}'s docstring has no Example:: block"
    monkeypatch.chdir(tmp_path)
    write_store(tmp_path / "preds.pstore")
    exec(compile(code, f"<Example of {name}>", "exec"), {"__name__": "__example__"})


def parameters(member: Any) -> list[str]:
    """The names a caller passes: a class's constructor's, a function's.

    None for a property, or an exception (its one argument is the message).
    """
    if isinstance(member, property) or (
        inspect.isclass(member) and issubclass(member, BaseException)
    ):
        return []
    target = getattr(member, "func", None) or member
    signature = inspect.signature(target.__init__ if inspect.isclass(target) else target)
    skipped = (inspect.Parameter.VAR_POSITIONAL,)
    return [
        name
        for name, p in signature.parameters.items()
        if name not in ("self", "cls") and p.kind not in skipped
    ]


def args_section(doc: str) -> str:
    """The ``Args:`` block of a docstring, up to the next unindented line; "" without one."""
    lines = doc.splitlines()
    if "Args:" not in lines:
        return ""
    block = []
    for line in lines[lines.index("Args:") + 1 :]:
        if line.strip() and not line.startswith(" "):
            break
        block.append(line)
    return "\n".join(block)


@pytest.mark.parametrize("name", sorted(DEFINITIONS))
def test_every_parameter_is_described(name: str) -> None:
    member = DEFINITIONS[name]
    doc = docstring(member)
    if inspect.isclass(member) and "Args:" not in doc:
        doc = inspect.getdoc(member.__init__) or ""
    described = args_section(doc)
    missing = [p for p in parameters(member) if f"\n    {p}:" not in f"\n{described}"]
    assert not missing, f"{name}'s docstring has no Args: entry for {', '.join(missing)}"


def test_an_example_is_found_only_after_its_marker() -> None:
    assert example("Summary.\n\nExample::\n\n    x = 1\n    y = x\n\nMore text.") == "x = 1\ny = x"
    assert example("Summary.\n\nExample:\n    >>> x = 1") is None


def test_an_args_section_ends_at_the_next_unindented_line() -> None:
    doc = "Summary.\n\nArgs:\n    path: where.\n        More.\n    n: how many.\n\nExample::\n\n    x = 1"
    assert args_section(doc) == "    path: where.\n        More.\n    n: how many.\n"
    assert args_section("Summary.\n\nExample::\n\n    x = 1") == ""
