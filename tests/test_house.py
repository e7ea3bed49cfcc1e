"""The package's layer order (stated in `mobilevitv3/__init__.py`) holds for every import, function-level ones
included: no upward import, no cycle between files, no oversized file, no import-time side effect."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import mobilevitv3

ROOT = Path(mobilevitv3.__file__).parent
LAYERS = ["errors", "layers", "weights", "models", "hub", "timm", "data", "tasks", "export", "train", "infer", "bench",
          "commands", "cli", "__main__"]
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Package modules `name` imports anywhere in its body (TYPE_CHECKING blocks excluded)."""
    tree = ast.parse(path.read_text())
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for b in node.body for n in ast.walk(b)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "mobilevitv3"}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            if mod.split(".")[0] != "mobilevitv3":
                continue
            subs = {f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in MODULES}   # from pkg import module
            found |= subs | ({mod} if len(subs) < len(node.names) else set())
    resolved = set()
    for target in found:
        while target not in MODULES:
            target = target.rpartition(".")[0]
        if target != name:
            resolved.add(target)
    return resolved


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return None if len(parts) == 1 else LAYERS.index(parts[1])


def test_house_every_module_belongs_to_a_stated_layer():
    assert [m for m in MODULES if len(m.split(".")) > 1 and m.split(".")[1] not in LAYERS] == []


def test_house_the_layer_order_is_the_one_the_package_states():
    doc_order = [line.split()[0] for line in mobilevitv3.__doc__.splitlines()
                 if line.startswith("    ") and line.split() and line.split()[0] in LAYERS]
    assert doc_order == [layer for layer in LAYERS if layer not in ("cli", "__main__")]


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m) is not None))
def test_house_no_import_points_up(module):
    upward = [t for t in GRAPH[module] if _layer(t) is None or _layer(t) > _layer(module)]
    assert upward == [], f"{module} imports {upward}, which sit above it (or the package face)"


def test_house_no_cycle_between_files():
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in GRAPH[node]:
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for module in GRAPH:
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_house_no_file_over_the_size_bar():
    long = {str(p.relative_to(ROOT)): n for p in MODULES.values() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_house_import_changes_nothing_global():
    # Third-party imports first: torchvision sets TORCHINDUCTOR_CACHE_DIR and OpenCV LD_LIBRARY_PATH on import;
    # what is checked is what our own modules do.
    probe = r"""
import importlib.util, json, os, sys
import matplotlib, torch, torchvision
if importlib.util.find_spec("cv2"):
    import cv2
before = dict(os.environ)
backend, threads = matplotlib.get_backend(), torch.get_num_threads()
import importlib, pkgutil, mobilevitv3
for info in pkgutil.walk_packages(mobilevitv3.__path__, "mobilevitv3."):
    if not info.name.endswith("__main__"):
        importlib.import_module(info.name)
changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))
print(json.dumps([changed, matplotlib.get_backend() == backend, torch.get_num_threads() == threads]))
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin", "MPLBACKEND": "TkAgg", "HOME": "/tmp"})
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [[], True, True]


def _reach(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for target in GRAPH[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    return seen


@pytest.mark.parametrize("start", ["mobilevitv3.export", "mobilevitv3.commands.export", "mobilevitv3.infer.load"])
def test_house_export_and_loading_do_not_depend_on_train(start):
    """Exporting or loading a model needs no training code: no import path from export/, the export command or the
    loader reaches train/."""
    reached = _reach(start) | {m for m in MODULES if m.startswith(start + ".")}
    for module in list(reached):
        reached |= _reach(module)
    assert sorted(m for m in reached if m.startswith("mobilevitv3.train")) == []
