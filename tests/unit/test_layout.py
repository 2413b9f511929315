"""The package layout keeps its promises: no import cycles between modules, only the communication
layer (and the few entry points that start MPI) imports mpi4py, and analysis never does."""
from __future__ import annotations

import ast
from pathlib import Path

import hpcgan

ROOT = Path(hpcgan.__file__).parent


def module_imports() -> dict[str, set[str]]:
    """Module -> the hpcgan modules it imports at module level (``from . import sub`` counts as ``sub``)."""
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        parts = parts[:-1] if is_pkg else parts
        pkg = parts if is_pkg else parts[:-1]
        deps = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom):
                base = pkg[:len(pkg) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                subs = [f"{target}.{a.name}" for a in node.names]
                found = [s for s in subs if (ROOT.parent / s.replace(".", "/")).with_suffix(".py").exists()
                         or (ROOT.parent / s.replace(".", "/")).is_dir()]
                deps.update(found)
                if len(found) < len(subs):
                    deps.add(target)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        out[".".join(parts)] = deps
    return out


def test_no_import_cycles():
    graph = {m: {d for d in deps if d.startswith("hpcgan") and d != m} for m, deps in module_imports().items()}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(x for x in graph[m] if x in graph):
            assert state.get(d) != 1, "import cycle: " + " -> ".join(path + [d])
            if d not in state:
                visit(d, path + [d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_only_the_communication_layer_touches_mpi_in_algorithms_and_analysis():
    imports = module_imports()
    for m, deps in imports.items():
        if m.startswith(("hpcgan.algorithms", "hpcgan.analysis", "hpcgan.gan", "hpcgan.compress", "hpcgan.netmodel")):
            assert not any(d.startswith("mpi4py") for d in deps), f"{m} imports mpi4py"
