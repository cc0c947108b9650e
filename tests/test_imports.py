"""The package tree has no import cycles: every module imports alone, in any order, and layers point one way.

A cycle hidden behind a function-level import or an ``if TYPE_CHECKING:`` block still
shows up here: the static check reads every import statement (function bodies and
type-only imports included) of every module.
"""

from __future__ import annotations

import ast
import os
import random
import subprocess
import sys
from pathlib import Path

from helpers.configs import ROOT

PACKAGES = ("mnms", "lightning_modules")


def project_modules() -> dict[str, Path]:
    """Every module of the project by dotted name (a package by its ``__init__``)."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


def imported(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``path`` imports, at any depth, ``if TYPE_CHECKING:`` blocks included."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in modules else node.module)
    return found & set(modules)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node, or a node that imports itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layer(module: str) -> str:
    """The package a module belongs to for layering: ``mnms.<sub>`` or ``lightning_modules``."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "mnms" and len(parts) > 1 else parts[0]


def test_no_module_imports_one_that_imports_it_back() -> None:
    modules = project_modules()
    graph = {name: imported(path, modules) - {name} for name, path in modules.items()}
    assert cycles(graph) == []


def test_packages_form_layers_that_never_import_upwards() -> None:
    modules = project_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph.setdefault(layer(name), set()).update(layer(target) for target in imported(path, modules))
    for package, targets in graph.items():
        targets.discard(package)
    assert cycles(graph) == [], graph


def test_every_module_imports_alone_in_a_fresh_interpreter_in_a_random_order() -> None:
    names = sorted(project_modules())
    seed = random.randrange(2**32)
    random.Random(seed).shuffle(names)
    script = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    done = subprocess.run(
        [sys.executable, "-c", script, *names],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    assert done.returncode == 0, f"import order (random seed {seed}): {names}\n{done.stderr[-3000:]}"


def heavy_modules_loaded(statements: str, heavy: tuple[str, ...]) -> list[str]:
    """Which of ``heavy`` a fresh interpreter has loaded after running ``statements``."""
    script = f"import sys\n{statements}\nprint(sorted(name for name in {heavy!r} if name in sys.modules))\n"
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return ast.literal_eval(done.stdout.strip())


def test_the_executor_seam_imports_no_torch() -> None:
    """An executor never looks inside a child (``mnms/executors/base.py``): its seam loads no torch nor Lightning."""
    seam = "import mnms.executors.base, mnms.executors.trial, mnms.executors.schedule"
    assert heavy_modules_loaded(seam, ("torch", "pytorch_lightning")) == []


def test_composing_imports_neither_lightning_nor_ray() -> None:
    """train.py registers the schemas before Hydra composes, so `--help` and tab completion pay only for these."""
    compose = "from mnms.app.schemas import register_schemas\nregister_schemas()"
    assert heavy_modules_loaded(compose, ("pytorch_lightning", "lightning", "ray")) == []
