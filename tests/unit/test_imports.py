"""The import graph of greyglass has no cycle, and models/ reaches into no later stage.

The graph is read from the source with `ast`: every `import` and `from ... import`, at module
level, inside functions and under `if TYPE_CHECKING:`, so a cycle hidden in a function (which
runs fine until the day someone moves the import up) is caught too. An import of
`greyglass.a.b` also runs `greyglass/a/__init__.py`, so it counts as an import of `greyglass.a`
(except from inside `greyglass.a`, which Python has already imported by then).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
LATER_STAGES = ("latents", "probes", "steer", "sae", "behaviour", "organism", "store", "report", "serve")


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(name: str, is_package: bool, tree: ast.AST) -> set[str]:
    """Every dotted module name (or module.attribute) the file imports, relative imports resolved."""
    package = name if is_package else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


def import_graph(root: Path, top: str) -> dict[str, set[str]]:
    """Module -> the modules of the same top-level package it imports."""
    files = {module_name(root, p): p for p in (root / top).rglob("*.py")}
    graph = {}
    for name, path in files.items():
        targets = set()
        for imported in imported_names(name, path.name == "__init__.py", ast.parse(path.read_text(), str(path))):
            while imported and imported not in files:  # `from pkg.mod import attr` imports pkg.mod
                imported = imported.rpartition(".")[0]
            parts = imported.split(".")
            for i in range(1, len(parts) + 1):  # the module and the packages it lives in
                target = ".".join(parts[:i])
                if target in files and not name.startswith(target + ".") and target != name:
                    targets.add(target)
        graph[name] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (depth-first search, recursion-free)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    for start in sorted(graph):
        if start in state:
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_greyglass_imports_have_no_cycle():
    graph = import_graph(SRC, "greyglass")
    assert len(graph) > 100 and graph["greyglass.models.text_features"] >= {"greyglass.models.hooks"}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_models_import_no_later_stage():
    assert all((SRC / "greyglass" / stage / "__init__.py").exists() for stage in LATER_STAGES)  # a renamed stage
    graph = import_graph(SRC, "greyglass")
    reach_up = {(m, t) for m, targets in graph.items() if m.startswith("greyglass.models")
                for t in targets if t.split(".")[1] in LATER_STAGES}
    assert not reach_up


def test_a_planted_cycle_is_found_wherever_the_import_hides(tmp_path):
    """The checker itself: each way of importing below closes a cycle a -> b -> ... -> a."""
    hidden = {
        "module level": "from ..pkg import a\n",
        "in a function": "def f():\n    from . import a\n",
        "under TYPE_CHECKING": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import thing\n",
        "absolute": "import top.pkg.a\n",
        "through a package __init__": "from .. import other\n",
    }
    for how, code in hidden.items():
        root = tmp_path / how.replace(" ", "_")
        (root / "top" / "pkg").mkdir(parents=True)
        (root / "top" / "other").mkdir()
        (root / "top" / "__init__.py").write_text("")
        (root / "top" / "pkg" / "__init__.py").write_text("")
        (root / "top" / "pkg" / "a.py").write_text("from .b import g\nthing = 1\n")
        (root / "top" / "pkg" / "b.py").write_text("def g():\n    pass\n" + code)
        (root / "top" / "other" / "__init__.py").write_text("from ..pkg.a import thing\n")
        graph = import_graph(root, "top")
        if how == "through a package __init__":
            assert find_cycle(graph) == ["top.other", "top.pkg.a", "top.pkg.b", "top.other"], how
        else:
            assert find_cycle(graph) is not None, how
        (root / "top" / "pkg" / "b.py").write_text("def g():\n    pass\n")
        assert find_cycle(import_graph(root, "top")) is None, how
