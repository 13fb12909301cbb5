"""The layering the README describes, checked against the imports of every module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "server" / "proofrace"

# What each layer may import, of ours and of Cap'n Proto.
ALLOWED = {
    "core": {"core"},
    "backends": {"core", "backends"},
    "cache": {"core", "cache"},
    "race": {"core", "race", "cache", "backends.base"},
    "observe": {"core", "observe"},
    "wire": {"core", "race", "backends", "wire", "schema", "capnp"},
}


def imports_of(path: Path) -> set[str]:
    """Modules imported by `path`: ours without the `proofrace.` prefix, and `capnp`."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "proofrace":
                names = [f"proofrace.{alias.name}" for alias in node.names]
        for name in names:
            if name.startswith("proofrace."):
                found.add(name.removeprefix("proofrace."))
            elif name.split(".")[0] == "capnp":
                found.add("capnp")
    return found


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_each_layer_imports_only_what_the_readme_says(layer: str) -> None:
    for path in sorted((PACKAGE / layer).glob("*.py")):
        for name in imports_of(path):
            assert any(name == a or name.startswith(f"{a}.") for a in ALLOWED[layer]), (
                f"{layer}/{path.name} imports {name}"
            )
