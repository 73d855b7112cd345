"""Import boundaries of the pure core (STYLE §3, §7): fsm.py and commands.py use only a few
stdlib modules and each other, and never reach for a clock, randomness, ids, the environment,
I/O or logging -- every replica must compute the same thing from the same log."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

import lockd

PKG = pathlib.Path(lockd.__file__).parent
PURE_MODULES = ["fsm.py", "commands.py", "codes.py"]

ALLOWED_STDLIB = {"__future__", "json", "dataclasses", "enum", "typing"}
ALLOWED_RELATIVE = {"commands", "fsm", "codes"}
FORBIDDEN_NAMES = {
    "time", "datetime", "random", "secrets", "uuid", "os", "sys", "socket", "threading",
    "logging", "structlog", "pysyncobj", "grpc", "importlib", "__import__", "open", "print",
    "input", "eval", "exec", "compile", "globals", "hash", "id",
}


def _tree(name: str) -> ast.Module:
    return ast.parse((PKG / name).read_text(), filename=name)


def _imports(tree: ast.Module) -> list[tuple[int, str]]:
    """(level, module) of every import; level 0 is absolute."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(0, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append((node.level, node.module or ""))
    return out


@pytest.mark.parametrize("name", PURE_MODULES)
def test_pure_core_imports_only_allowed_stdlib_modules_and_each_other(name):
    imports = _imports(_tree(name))
    assert imports, "expected at least `from __future__ import annotations`"
    for level, module in imports:
        if level == 0:
            assert module.split(".")[0] in ALLOWED_STDLIB, f"{name} imports {module}"
        else:
            assert level == 1 and module in ALLOWED_RELATIVE, (
                f"{name} imports {'.' * level}{module}")


@pytest.mark.parametrize("name", PURE_MODULES)
def test_pure_core_never_calls_clocks_randomness_ids_env_io_or_logging(name):
    used = set()
    for node in ast.walk(_tree(name)):
        if isinstance(node, ast.Name):
            used.add(node.id)
        elif isinstance(node, ast.Attribute):
            root = node
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name):
                used.add(root.id)
    assert not used & FORBIDDEN_NAMES, f"{name} uses {sorted(used & FORBIDDEN_NAMES)}"


def test_fsm_never_iterates_a_set():
    """Set order is not deterministic across processes for str elements (hash seed)."""
    for node in ast.walk(_tree("fsm.py")):
        assert not isinstance(node, (ast.Set, ast.SetComp)), f"set at line {node.lineno}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in {"set", "frozenset"}, f"set() at line {node.lineno}"


def test_import_walk_sees_absolute_and_relative_imports():
    """The walk itself works, so the boundary test above cannot pass vacuously."""
    bad = ast.parse("import time\nfrom os import path\nfrom ..x import y\n")
    assert _imports(bad) == [(0, "time"), (0, "os"), (2, "x")]


def test_importing_the_pure_core_loads_nothing_heavy():
    code = (
        "import sys, lockd.fsm, lockd.commands\n"
        "heavy = ('grpc', 'pysyncobj', 'structlog', 'google.protobuf')\n"
        "bad = [m for m in heavy if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# ---------------------------------------------------------------- the product and its harness

def _package_modules() -> list[pathlib.Path]:
    return sorted(p for p in PKG.rglob("*.py") if "v1" not in p.relative_to(PKG).parts)


def _absolute_imports(path: pathlib.Path) -> list[str]:
    """Every module an import statement in `path` names, at any depth (functions included),
    relative imports resolved against the module's package."""
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    package = parts[:-1]        # the package a relative import starts from
    out = []
    for level, module in _imports(ast.parse(path.read_text(), filename=str(path))):
        if level == 0:
            out.append(module)
        else:
            base = package[:len(package) - (level - 1)]
            out.append(".".join(base + ([module] if module else [])))
    return out


def test_no_module_of_the_product_imports_the_test_harness():
    """`lockd up`, `lockd lock` and `lockd bench` run from lockd.local; lockd_cluster (the
    chaos harness) builds on the product, never the reverse."""
    offenders = [f"{p.relative_to(PKG.parent)} imports {m}"
                 for p in _package_modules() for m in _absolute_imports(p)
                 if m.split(".")[0] == "lockd_cluster"]
    assert offenders == []


def test_harness_walk_sees_imports_inside_functions(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from lockd_cluster.procs import x\n")
    assert [m for _, m in _imports(ast.parse(src.read_text()))] == ["lockd_cluster.procs"]
