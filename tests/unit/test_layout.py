"""The package layout keeps its promises: no import cycles between modules; only the communication
layer touches MPI (the command-line entry point and the benchmarks, which measure MPI itself,
aside): everything else that crosses ranks goes through its control channel; compressors and
communicators never see each other, and only the exchange layer joins them."""
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


#: modules that may import mpi4py: the communication layer, the entry point, the MPI benchmarks
MPI_ALLOWED = ("hpcgan.comm", "hpcgan.__main__", "hpcgan.benchmarks")


def test_only_the_communication_layer_touches_mpi():
    """Train, recorder, checkpoints, metrics, errors, world, algorithms, analysis: none imports
    mpi4py (at module level or inside a function); ranks talk through the control channel."""
    for path in ROOT.rglob("*.py"):
        module = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts).removesuffix(".__init__")
        if module.startswith(MPI_ALLOWED):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.startswith("mpi4py") for n in names), f"{module} imports mpi4py"


#: what the communication layer may take from compress/: the C kernels of 16-bit sums (the MPI
#: backend's fp16/bf16 reduction op), built alongside the casts, not a compressor
KERNELS = {"hpcgan.compress.cast"}


def test_compressors_and_communicators_never_import_each_other():
    imports = module_imports()
    for m, deps in imports.items():
        if m.startswith("hpcgan.compress") and m != "hpcgan.compress.hooks":  # hooks: the DDP plug-in, an exchange
            assert not any(d.startswith(("hpcgan.comm", "hpcgan.exchange")) for d in deps), f"{m} imports {deps}"
        if m.startswith("hpcgan.comm"):
            assert not any(d.startswith(("hpcgan.compress", "hpcgan.exchange")) for d in deps - KERNELS), f"{m}: {deps}"
