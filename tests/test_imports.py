"""The import graph: no cycles (function-level imports included), data flows down the
pipeline's stages, serving and evaluation import nothing from training, the runtime
needs nothing but numpy, scipy and onnxruntime, and only the CLI knows click."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "npcf"

#: pipeline stage of each module prefix (longest prefix wins); a module may import
#: modules of a lower stage, or of its own stage package
STAGES = {
    "npcf._version": 0, "npcf.errors": 0, "npcf.utils": 0,
    "npcf.rundir": 1, "npcf.data": 1,
    "npcf.nn": 2,
    "npcf.evaluation": 3,
    "npcf.autoencoder": 4, "npcf.serving": 4,
    "npcf.workflows": 5, "npcf.curves": 5,
    "npcf.cli": 6,
    "npcf": 7,                    # the package's facade (lazy re-exports)
}
#: what serving and evaluation must never import
TRAINING = ("npcf.autoencoder", "npcf.nn.network", "npcf.nn.optim", "npcf.nn.noise",
            "npcf.nn.schedules", "npcf.nn.losses", "npcf.workflows")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in PKG.rglob("*.py")}


def imports_of(name: str, top_level: bool = False) -> set[str]:
    """Every module ``name`` imports anywhere in its body (top-level or in a function;
    ``top_level``: only the ones run at import time), as absolute names; ``from pkg
    import sub`` counts as importing ``pkg.sub``."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    out = set()
    for node in (tree.body if top_level else ast.walk(tree)):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES)
    return out


def ancestors(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


# a module's own parent packages run before it anyway: not edges of the graph
GRAPH = {name: {m for m in imports_of(name) if m in MODULES and m != name
                and m not in ancestors(name)} for name in MODULES}


def stage(name: str) -> int:
    best = max((p for p in STAGES if name == p or name.startswith(p + ".")), key=len)
    return STAGES[best]


def stage_package(name: str) -> str:
    return ".".join(name.split(".")[:2])


def test_every_module_is_parsed():
    assert {"npcf.serving.runtime", "npcf.evaluation.ranking", "npcf.cli.train",
            "npcf.rundir"} <= set(GRAPH)


def test_no_import_cycles():
    """Tarjan's strongly connected components over every import, function-level ones
    included; the package facade's lazy re-exports are its own stage."""
    index, low, on_stack, stack, cycles = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert not cycles, cycles


def test_imports_flow_down_the_pipeline():
    bad = []
    for src, targets in GRAPH.items():
        for dst in targets:
            if stage_package(src) == stage_package(dst):
                continue
            if stage(dst) >= stage(src):
                bad.append(f"{src} (stage {stage(src)}) imports {dst} (stage {stage(dst)})")
    assert not bad, "\n".join(sorted(bad))


@pytest.mark.parametrize("layer", ["npcf.evaluation", "npcf.serving"])
def test_serving_and_evaluation_import_nothing_from_training(layer):
    bad = [(src, dst) for src, targets in GRAPH.items() if src.startswith(layer + ".")
           for dst in targets if dst.startswith(TRAINING)]
    assert not bad, bad


def closure(name: str) -> set[str]:
    """Modules that run when ``name`` is imported: its imports and their packages; the
    facade ``npcf`` re-exports lazily, so only its top-level imports count."""
    seen, todo = set(), [name]
    while todo:
        v = todo.pop()
        if v not in seen:
            seen.add(v)
            deps = {m for m in imports_of(v, top_level=True) if m in MODULES} \
                if v == "npcf" else GRAPH[v]
            todo.extend(deps | (ancestors(v) & set(GRAPH)))
    return seen


def third_party(names) -> set[str]:
    return {m.split(".")[0] for n in names for m in imports_of(n)
            if not m.startswith("npcf") and m.split(".")[0] not in sys.stdlib_module_names
            and m != "__future__"}


def test_runtime_needs_only_numpy_scipy_onnxruntime():
    assert third_party(closure("npcf.serving.runtime")) <= {"numpy", "scipy", "onnxruntime"}


def test_runtime_imports_nothing_heavy_when_run():
    code = ("import sys, npcf.serving.runtime; bad = [m for m in ('pandas', 'click', 'onnx', "
            "'npcf.autoencoder', 'npcf.nn', 'npcf.workflows') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_only_the_cli_imports_click_and_nn_knows_no_files():
    click_users = sorted(n for n in GRAPH if "click" in third_party([n]))
    assert all(n.startswith("npcf.cli") for n in click_users), click_users
    nn_io = [(n, m) for n in GRAPH if n.startswith("npcf.nn")
             for m in GRAPH[n] if m.startswith(("npcf.utils.files", "npcf.rundir", "npcf.data"))]
    assert not nn_io, nn_io
