"""The package's layers (docs/architecture.md): a module imports only from its own layer or the
layers below it, at the top of the file or inside a function alike."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.workspace import REPO

PACKAGE = REPO / "transforms"

# Lowest first. Subpackages on one line are one layer and do not import each other.
LAYERS = [
    ["errors", "logs"],
    ["config"],
    ["storage"],
    ["contracts"],
    ["ingest", "language"],
    ["engines"],
    ["manual"],
    ["runs"],
    ["insights"],
    ["cli", "scheduling"],
]
LAYER = {part: index for index, parts in enumerate(LAYERS) for part in parts}


def _part(module: str) -> str | None:
    """`transforms.storage.lake` -> `storage`; None for a module outside the package."""
    names = module.split(".")
    return names[1] if names[0] == "transforms" and len(names) > 1 else None


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "transforms":
                found |= {f"transforms.{alias.name}" for alias in node.names}
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py")


def test_every_part_of_the_package_has_a_layer() -> None:
    parts = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in MODULES}
    assert parts == set(LAYER)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path) -> None:
    own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    upward = sorted(
        module
        for module in _imports(path)
        if (part := _part(module)) is not None and part != own and LAYER[part] >= LAYER[own]
    )
    assert not upward, f"{own} (layer {LAYER[own]}) imports {upward} from its layer or above"
