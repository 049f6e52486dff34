"""The architecture, checked on the source: layers import only downwards, no import hides in a function, no code
outside the method modules compares method names, and the README's Layout section lists the layers in order."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import diffcls.methods

SRC = Path(diffcls.methods.__file__).resolve().parents[1]  # src/diffcls
README = SRC.parents[1] / "README.md"

# Bottom to top; a module may import from its own layer or any lower one. Packages of one layer must not form a
# cycle between them. Keep in step with the README's Layout section (test_readme_lists_the_layers_in_order).
LAYERS: list[tuple[str, ...]] = [
    ("errors", "runtime"),
    ("data",),
    ("didicm", "models"),
    ("generative", "inference"),
    ("repcond",),
    ("train",),
    ("methods",),
    ("eval",),
    ("zoo",),
    ("bench",),
    ("cli", "__main__"),
]
LAYER_OF = {name: i for i, names in enumerate(LAYERS) for name in names}
# The CLI imports the library inside its command functions so that `diffcls --help` does not import torch
# (~10 s here); it sits on top, so these imports cannot hide a cycle.
LAZY_IMPORTS_ALLOWED = {"cli"}


def modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py"))


def unit(path: Path) -> str:
    """The layered unit a file belongs to: its package under diffcls, or the module's name at the top."""
    parts = path.relative_to(SRC).with_suffix("").parts
    return "errors" if parts == ("__init__",) else parts[0]  # diffcls/__init__.py holds the version only


def imported_units(path: Path) -> list[tuple[str, ast.AST]]:
    """(unit, node) for every import of a diffcls module in ``path``, relative imports resolved."""
    tree = ast.parse(path.read_text())
    package = ["diffcls", *path.relative_to(SRC).parent.parts]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names = [module] if node.module else [f"{module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "diffcls":
                found.append(("errors" if len(parts) == 1 else parts[1], node))
    return found


def test_every_unit_has_a_layer():
    units = {unit(p) for p in modules()}
    assert units <= set(LAYER_OF), f"give these a layer in LAYERS: {sorted(units - set(LAYER_OF))}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_down(path: Path):
    here = unit(path)
    upward = sorted({(u, n.lineno) for u, n in imported_units(path) if LAYER_OF[u] > LAYER_OF[here]})
    assert not upward, f"{path.relative_to(SRC)} ({here}, layer {LAYER_OF[here]}) imports upwards: {upward}"


def test_no_cycle_between_packages_of_one_layer():
    edges = {(unit(p), u) for p in modules() for u, _ in imported_units(p) if u != unit(p)}
    for a, b in edges:
        assert (b, a) not in edges, f"{a} and {b} import each other"


@pytest.mark.parametrize(
    "path", [p for p in modules() if unit(p) not in LAZY_IMPORTS_ALLOWED], ids=lambda p: str(p.relative_to(SRC))
)
def test_no_diffcls_import_inside_a_function(path: Path):
    tree = ast.parse(path.read_text())
    inside = []
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("diffcls")):
                    inside.append(node.lineno)
                if isinstance(node, ast.Import) and any(a.name.startswith("diffcls") for a in node.names):
                    inside.append(node.lineno)
    assert not inside, f"{path.relative_to(SRC)}: diffcls imported inside a function at lines {sorted(set(inside))}"


def method_name_comparisons(path: Path, names: set[str]) -> list[int]:
    """Lines where a method name literal is compared (==, !=, in, not in) or used as a dict key to dispatch on."""
    tree = ast.parse(path.read_text())
    found = []

    def literals(node: ast.AST) -> set[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return {node.value}
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return set().union(*(literals(e) for e in node.elts)) if node.elts else set()
        return set()

    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            if any(literals(side) & names for side in [node.left, *node.comparators]):
                found.append(node.lineno)
        elif isinstance(node, ast.Dict):
            if any(k is not None and literals(k) & names for k in node.keys):
                found.append(node.lineno)
    return found


@pytest.mark.parametrize(
    "path", [p for p in modules() if unit(p) not in ("methods", "cli")], ids=lambda p: str(p.relative_to(SRC))
)
def test_only_the_method_modules_compare_method_names(path: Path):
    lines = method_name_comparisons(path, set(diffcls.methods.METHODS))
    assert not lines, (
        f"{path.relative_to(SRC)} compares method names at lines {lines}: ask the method "
        f"(diffcls.methods.get_method(name)) instead"
    )


def test_readme_lists_the_layers_in_order():
    text = README.read_text()
    layout = text[text.index("## Layout") :]
    block = layout[layout.index("```") + 3 :]
    block = block[: block.index("```")]
    listed = [m.group(1) for line in block.splitlines() if (m := re.match(r"\s*(\w+)(?:/|\.py)\s", line))]
    order = [name for name in listed if name in LAYER_OF]
    assert [LAYER_OF[n] for n in order] == sorted((LAYER_OF[n] for n in order), reverse=True), (
        f"the README lists the layers out of order: {order}"
    )
    missing = {n for n in LAYER_OF if n not in ("__main__",)} - set(order)
    assert not missing, f"the README's Layout section does not list {sorted(missing)}"
