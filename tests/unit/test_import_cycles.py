"""The import graph of the `lockd` package has no cycle (STYLE §2: imports point down).

Every import statement counts wherever it is: module level, inside functions, and under
`if TYPE_CHECKING:` (a type-only import is still a dependency a reader must follow). An edge
goes to the module named: `from lockd.cli import serve` names `lockd.cli.serve` when that is a
module, else `lockd.cli`. Importing `a.b` also runs `a/__init__.py`, but an edge to the parent
package is not counted: a package that imports its own submodules (`lockd.cli` registering its
commands) is the ordinary shape, not a loop.
"""

from __future__ import annotations

import ast
import pathlib

import lockd

PKG = pathlib.Path(lockd.__file__).parent

# Type-only imports that close a loop, tolerated only under TYPE_CHECKING. None is left: the
# servicers and helpers that once named `LockdNode` take narrow ports instead (issue 14;
# lockd/api/ports.py). Keep it empty; an entry needs a reason and the test below.
KNOWN_TYPE_ONLY_EDGES: set[tuple[str, str]] = set()


def _module_name(path: pathlib.Path, root: pathlib.Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_lines(tree: ast.Module) -> set[int]:
    """Line numbers of statements inside `if TYPE_CHECKING:` blocks."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else (
                test.attr if isinstance(test, ast.Attribute) else None)
            if name == "TYPE_CHECKING":
                for stmt in node.body:
                    for sub in ast.walk(stmt):
                        if hasattr(sub, "lineno"):
                            lines.add(sub.lineno)
    return lines


def import_graph(root: pathlib.Path) -> tuple[dict[str, set[str]], set[tuple[str, str]]]:
    """(module -> modules it imports, the edges that are only under TYPE_CHECKING) for the
    package whose directory is `root` (its parent is the import root)."""
    files = {_module_name(p, root.parent): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    typed: dict[tuple[str, str], bool] = {}      # edge -> every occurrence is type-only
    for mod, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        type_only = _type_checking_lines(tree)
        package = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
        edges: set[str] = set()
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    keep = len(package) - (node.level - 1)
                    base = ".".join(package[:keep] + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base
                           for a in node.names]
            for t in targets:
                if t in files and t != mod:
                    edges.add(t)
                    key = (mod, t)
                    typed[key] = typed.get(key, True) and node.lineno in type_only
        graph[mod] = edges
    return graph, {e for e, only in typed.items() if only}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (iterative depth-first search)."""
    state: dict[str, int] = {}                   # 1 = on the current path, 2 = done
    for start in sorted(graph):
        if state.get(start):
            continue
        path = [start]
        stack = [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_the_lockd_package_has_no_import_cycle():
    graph, _ = import_graph(PKG)
    for a, b in KNOWN_TYPE_ONLY_EDGES:
        graph.get(a, set()).discard(b)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_known_exceptions_are_type_only_and_still_exist():
    graph, type_only = import_graph(PKG)
    for a, b in sorted(KNOWN_TYPE_ONLY_EDGES):
        assert b in graph.get(a, ()), (
            f"{a} no longer imports {b}: remove it from KNOWN_TYPE_ONLY_EDGES")
        assert (a, b) in type_only, f"{a} imports {b} outside TYPE_CHECKING: a real cycle"


def test_the_graph_sees_function_level_relative_and_type_only_imports():
    """The walk is not vacuous: it finds the lazy and the typed edges of the real package."""
    graph, type_only = import_graph(PKG)
    assert "lockd.server" in graph["lockd.cli.serve"]            # inside `serve()`
    assert "lockd.replication" in graph["lockd.server"]          # `from .replication import`
    assert "lockd.cli.serve" in graph["lockd.cli.main"]          # `from lockd.cli import serve`
    assert ("lockd.membership", "lockd.replication") in type_only
    assert ("lockd.server", "lockd.replication") not in type_only


def test_cycle_finder_finds_a_loop_through_a_function_level_import(tmp_path):
    pkg = tmp_path / "p"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from p.c import x\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\n"
                              "if TYPE_CHECKING:\n    import p.a\n")
    graph, type_only = import_graph(pkg)
    assert find_cycle(graph) == ["p.a", "p.b", "p.c", "p.a"]
    assert type_only == {("p.c", "p.a")}
    (pkg / "c.py").write_text("x = 1\n")
    assert find_cycle(import_graph(pkg)[0]) is None
