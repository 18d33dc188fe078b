"""The layers of docs/ARCHITECTURE.md, checked on the source (ast), so that they stay true.

- entry points (the package-root modules with a main) never import each other;
- no module imports a private name (`_x`) of another braingan module;
- the library packages (nn/, data/, training/, metrics/, utils/, inversion/) import neither Hydra nor the
  experiment layer nor an entry point;
- one module owns the checkpoint format (`torch.load` only in checkpoint.py) and one the run-folder
  layout (the literals "checkpoints" and "last.ckpt" only in rundir.py).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from helpers.runs import ENTRY_POINTS, REPO

PACKAGE = REPO / "src" / "braingan"
LIBRARY = ("nn", "data", "training", "metrics", "utils", "inversion")
SOURCES = sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) for every import of a file, relative ones resolved."""
    tree = ast.parse(path.read_text(), str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")
                parent = parent[: len(parent) - (node.level - 1)]
                base = ".".join(parent + ([node.module] if node.module else []))
            for alias in node.names:
                out.append((base, alias.name, node.lineno))
    return out


def test_the_checks_see_every_entry_point_and_resolve_relative_imports():
    assert {p.stem for p in PACKAGE.glob("*.py")} >= set(ENTRY_POINTS)
    found = {(m, n) for m, n, _ in imports(PACKAGE / "train.py")}
    assert ("braingan.experiment.run", "train") in found and ("braingan.confdir", "CONF_DIR") in found
    found = {(m, n) for m, n, _ in imports(PACKAGE / "experiment" / "run.py")}
    assert ("braingan.checkpoint", "read_info") in found


def test_no_entry_point_imports_another():
    bad = []
    for path in SOURCES:
        me = module_name(path)
        for module, name, line in imports(path):
            targets = {module} | ({f"{module}.{name}"} if name else set())
            for target in targets:
                if target in {f"braingan.{e}" for e in ENTRY_POINTS} and target != me:
                    bad.append(f"{path.relative_to(REPO)}:{line} imports {target}")
    assert not bad, "\n".join(bad)


def test_no_module_imports_a_private_name_of_another():
    bad = [
        f"{path.relative_to(REPO)}:{line} imports {module}.{name}"
        for path in SOURCES
        for module, name, line in imports(path)
        if module.startswith("braingan") and name and name.startswith("_") and not name.startswith("__")
    ]
    bad += [
        f"{path.relative_to(REPO)}:{line} imports {module}"
        for path in SOURCES
        for module, _, line in imports(path)
        if module.startswith("braingan") and any(p.startswith("_") and p != "__init__" for p in module.split("."))
    ]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("package", LIBRARY)
def test_library_packages_know_no_hydra_no_experiment_and_no_entry_point(package):
    forbidden = ("hydra", "braingan.experiment", *(f"braingan.{e}" for e in ENTRY_POINTS), "braingan.cli")
    bad = [
        f"{path.relative_to(REPO)}:{line} imports {module}"
        for path in sorted((PACKAGE / package).rglob("*.py"))
        for module, _, line in imports(path)
        if any(module == f or module.startswith(f + ".") for f in forbidden)
    ]
    assert not bad, "\n".join(bad)


def _calls_torch_load(path: Path) -> list[int]:
    tree = ast.parse(path.read_text())
    return [
        n.lineno
        for n in ast.walk(tree)
        if isinstance(n, ast.Attribute) and n.attr == "load" and isinstance(n.value, ast.Name) and n.value.id == "torch"
    ]


def test_only_checkpoint_py_reads_checkpoint_files():
    bad = [
        f"{p.relative_to(REPO)}:{line}" for p in SOURCES if p.name != "checkpoint.py" for line in _calls_torch_load(p)
    ]
    assert not bad, "torch.load outside checkpoint.py: " + ", ".join(bad)
    assert _calls_torch_load(PACKAGE / "checkpoint.py")  # the check finds the one that is there


def _string_literals(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text())
    docstrings = {
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        and n.body
        and isinstance(n.body[0], ast.Expr)
        and isinstance(n.body[0].value, ast.Constant)
    }
    return [
        (n.value, n.lineno)
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings
    ]


@pytest.mark.parametrize("literal", ["checkpoints", "last.ckpt"])
def test_only_rundir_py_spells_the_run_folder_layout(literal):
    bad = [
        f"{p.relative_to(REPO)}:{line}"
        for p in SOURCES
        if p.name != "rundir.py"
        for value, line in _string_literals(p)
        if value == literal
    ]
    assert not bad, f"the literal {literal!r} outside rundir.py: " + ", ".join(bad)
    assert any(value == literal for value, _ in _string_literals(PACKAGE / "rundir.py"))


def test_the_key_of_our_checkpoint_entry_is_spelt_once():
    bad = [
        f"{p.relative_to(REPO)}:{line}"
        for p in SOURCES
        if p.name != "checkpoint.py"
        for value, line in _string_literals(p)
        if value == "braingan" and _used_as_key(p, line)
    ]
    assert not bad, "the checkpoint entry 'braingan' spelt outside checkpoint.py: " + ", ".join(bad)


def _used_as_key(path: Path, line: int) -> bool:
    """Whether a 'braingan' literal on `line` indexes a dict (x["braingan"], .get("braingan"))."""
    text = path.read_text().splitlines()[line - 1]
    return '["braingan"]' in text or '.get("braingan"' in text
