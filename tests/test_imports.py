"""The torch-free rooms stay torch-free: each module is imported alone in a fresh interpreter and
the heavy packages it must not pull in are looked up in sys.modules afterwards. The pure rooms
(spec, layers, analysis) must not import numpy or onnx either; the ONNX consumers (cnnspec/deploy,
serving/) must not import torch, onnx or the model-building rooms.

Every module file under cnnspec/spec/ and cnnspec/layers/ enrols itself (except layers/modules.py,
which holds the custom torch modules); a module added to those folders is checked too.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

NO_ML = ("torch", "torchvision", "numpy", "onnx", "onnxruntime", "onnxscript", "matplotlib", "PIL")
"""Pure Python rooms: the spec language, the layer registry, analysis and its reports."""

TORCH_MODULES = {"cnnspec.layers.modules"}  # the custom nn.Modules: imported by to_torch only


def room(folder: str) -> list[str]:
    package = folder.replace("/", ".")
    names = [package] + [f"{package}.{path.stem}" for path in sorted((ROOT / folder).glob("*.py"))
                         if path.stem != "__init__"]
    return [name for name in names if name not in TORCH_MODULES]


PURE_MODULES = [*room("cnnspec/spec"), *room("cnnspec/layers"), "cnnspec.analysis", "cnnspec.report",
                "cnnspec.catalog", "cnnspec.errors", "cnnspec"]

NO_TORCH = ("torch", "torchvision", "torchinfo", "onnx", "onnxscript", "matplotlib",
            "cnnspec.spec", "cnnspec.layers", "cnnspec.train", "cnnspec.export", "cnnspec.compile")
"""The ONNX consumers: onnxruntime, numpy and PIL, never torch nor the rooms that build, train and
export models (the container image holds only cnnspec/deploy/ and serving/)."""

CONSUMER_MODULES = [*room("cnnspec/deploy"), *room("serving")]

# Other rooms with their own rules: module -> the packages it must not import.
RULES: dict[str, tuple[str, ...]] = {name: NO_ML for name in PURE_MODULES}
RULES.update({name: NO_TORCH for name in CONSUMER_MODULES})
# the weight mapping and the zoo's table work on tensors they are given: importing them loads no torch
RULES |= {"cnnspec.weights": NO_ML, "cnnspec.zoo": NO_ML}


def imported_after(modules: list[str], watched: tuple[str, ...]) -> dict[str, list[str]]:
    """Import ``modules`` one after the other in one fresh interpreter; for each, the watched
    packages that appeared in sys.modules during its import. One process serves a whole rule:
    a heavy import shows up at the first module that causes it, so none can hide."""
    code = (
        "import importlib, json, sys\n"
        "found = {}\n"
        f"for name in {modules!r}:\n"
        f"    before = {{m for m in {list(watched)!r} if m in sys.modules}}\n"
        "    importlib.import_module(name)\n"
        f"    found[name] = sorted({{m for m in {list(watched)!r} if m in sys.modules}} - before)\n"
        "print(json.dumps(found))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def heavy_imports() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for watched in set(RULES.values()):
        found.update(imported_after([m for m, rule in RULES.items() if rule == watched], watched))
    return found


def test_the_rooms_were_found():
    assert {"cnnspec.spec.model", "cnnspec.spec.types", "cnnspec.layers.conv", "cnnspec.layers.window",
            "cnnspec.layers.receptive_field"} <= set(PURE_MODULES)
    assert "cnnspec.layers.modules" not in PURE_MODULES
    assert {"cnnspec.deploy", "cnnspec.deploy.model_card", "cnnspec.deploy.predict", "cnnspec.deploy.sessions",
            "serving", "serving.app", "serving.classify", "serving.__main__"} <= set(CONSUMER_MODULES)


@pytest.mark.parametrize("module", sorted(RULES))
def test_module_imports_without_the_heavy_packages(module: str, heavy_imports: dict[str, list[str]]):
    assert heavy_imports[module] == [], f"importing {module} imports {heavy_imports[module]}"


def test_the_check_sees_a_heavy_import():
    """The probe itself works: the torch modules do show up, at the module that imports them."""
    found = imported_after(["cnnspec.layers", "cnnspec.layers.modules"], ("torch",))
    assert found == {"cnnspec.layers": [], "cnnspec.layers.modules": ["torch"]}


def sibling_imports(folder: str) -> dict[str, set[str]]:
    """module -> the modules of the same package it imports, at module level or inside a function
    (a lazy import inside a function is how a circle hides)."""
    modules = {path.stem for path in (ROOT / folder).glob("*.py")}
    graph: dict[str, set[str]] = {}
    for stem in modules:
        tree = ast.parse((ROOT / folder / f"{stem}.py").read_text())
        targets: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                names = [node.module.split(".")[0]] if node.module else [alias.name for alias in node.names]
                # ``from . import NAME`` of something that is not a module reads the package's __init__
                targets.update(name if name in modules else "__init__" for name in names)
        graph[stem] = targets - {stem}
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the list of modules around it, or None."""
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> list[str] | None:
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                return path[path.index(target):] + [target] if target in path else [name, target]
            if target not in state and (found := visit(target, [*path, target])):
                return found
        state[name] = "done"
        return None

    for name in sorted(graph):
        if name not in state and (found := visit(name, [name])):
            return found
    return None


@pytest.mark.parametrize("folder", ["cnnspec/spec", "cnnspec/layers"])
def test_imports_inside_a_room_run_one_way(folder: str):
    """spec/: source, validation <- types <- blocks, graph <- model <- __init__; no module imports
    one that imports it back, not even lazily inside a function."""
    graph = sibling_imports(folder)
    assert graph["__init__"]  # the package imports its modules; none may import it back
    assert cycle(graph) is None, " -> ".join(cycle(graph))


def test_the_cycle_check_finds_a_lazy_circle():
    assert cycle({"model": {"blocks"}, "blocks": {"model"}, "source": set()}) in (
        ["model", "blocks", "model"], ["blocks", "model", "blocks"])
    assert cycle({"model": {"types", "blocks"}, "blocks": {"types"}, "types": set()}) is None
