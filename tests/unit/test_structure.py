"""The package's shape: the sans-I/O core stays pure, every module imports on its own, no cycles.

Run with the normal suite (and so in CI): a socket or a clock creeping into the
engine, or a new import cycle, fails here with the file and the line.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import natlab

PACKAGE = Path(natlab.__file__).parent
PURE = ("engine", "packet")
"""Subpackages that must stay sans-I/O (STYLE.md, habit 1)."""
FORBIDDEN = {"socket", "time", "subprocess", "threading", "pyroute2", "docker", "netfilterqueue",
             "select", "selectors", "asyncio", "multiprocessing"}
"""Modules the pure core may not import (time comes in as ``now``; I/O lives in the shell)."""


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out[".".join(parts)] = path
    return out


def _pure_files() -> list[Path]:
    return [p for sub in PURE for p in sorted((PACKAGE / sub).rglob("*.py"))]


def _impurities(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    module_level = set(map(id, tree.body))
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "random":
                names += [f"random.{a.name}" for a in node.names if a.name != "Random"]
        for name in names:
            if name.split(".")[0] in FORBIDDEN or name.startswith("random."):
                found.append(f"{path.name}:{node.lineno} imports {name}")
        # random.Random(seed) is injected; the global generator (random.random(), ...) is not.
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id == "random" and node.attr != "Random":
            found.append(f"{path.name}:{node.lineno} uses the global random.{node.attr}")
    for stmt in tree.body:  # a generator made at import time is global state too
        if id(stmt) in module_level and not isinstance(stmt, (ast.FunctionDef, ast.ClassDef)):
            for node in ast.walk(stmt):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                        and node.func.attr == "Random":
                    found.append(f"{path.name}:{node.lineno} makes a random.Random at module level")
    return found


def test_the_engine_and_the_packet_code_do_no_io_and_read_no_clock():
    problems = [p for path in _pure_files() for p in _impurities(path)]
    assert problems == []


def test_the_purity_check_catches_a_socket_a_clock_and_the_global_random(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import socket\nfrom time import monotonic\nimport random\nR = random.Random(1)\n"
                   "def f():\n    return random.randint(1, 2)\n")
    found = " ".join(_impurities(bad))
    assert "imports socket" in found and "imports time" in found
    assert "global random.randint" in found and "module level" in found


def test_every_module_imports_on_its_own_in_a_fresh_interpreter():
    # One fork per module from a parent that has imported no natlab module: each child
    # starts from the same clean slate, as a fresh interpreter would (third-party
    # libraries are imported once in the parent, to keep this fast).
    script = r'''
import importlib, os, sys, traceback
for lib in ("pydantic", "yaml", "typer", "rich", "pyroute2"):
    try: importlib.import_module(lib)
    except ImportError: pass
failed = []
for name in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(name)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if status:
        failed.append(name)
print("FAILED", *failed)
'''
    names = [m for m in _modules() if not m.endswith("__main__")]
    done = subprocess.run([sys.executable, "-c", script, *names], capture_output=True, text=True,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}, timeout=300)
    assert done.stdout.strip() == "FAILED", done.stdout + done.stderr[-3000:]


def _imports_at_load(name: str, path: Path, known: set[str]) -> set[str]:
    """natlab modules ``name`` imports when it is loaded (module level; not TYPE_CHECKING blocks)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()

    def visit(stmts: list[ast.stmt]) -> None:
        for stmt in stmts:
            if isinstance(stmt, ast.If) and "TYPE_CHECKING" in ast.unparse(stmt.test):
                visit(stmt.orelse)
                continue
            if isinstance(stmt, (ast.If, ast.Try)):
                visit(stmt.body)
                visit(getattr(stmt, "orelse", []))
                for handler in getattr(stmt, "handlers", []):
                    visit(handler.body)
                visit(getattr(stmt, "finalbody", []))
                continue
            if isinstance(stmt, ast.Import):
                out.update(a.name for a in stmt.names)
            elif isinstance(stmt, ast.ImportFrom):
                base = stmt.module or ""
                if stmt.level:
                    parent = package.split(".")[: len(package.split(".")) - stmt.level + 1]
                    base = ".".join([*parent, *([base] if base else [])])
                out.add(base)
                out.update(f"{base}.{a.name}" for a in stmt.names)

    visit(tree.body)
    # A module's own packages are always imported before it: naming one is no new edge.
    ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
    return {m for m in out if m in known and m != name and m not in ancestors}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            strong(v)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports_at_load(name, path, set(modules)) for name, path in modules.items()}


def test_no_module_level_import_cycles():
    assert _cycles(import_graph()) == []


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
