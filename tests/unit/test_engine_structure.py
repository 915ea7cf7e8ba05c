"""The engine's shape: one owner of state, no import cycles, privates stay private.

Read from the source with ``ast`` (nothing is imported):

- no engine module imports ``natlab.engine.nat`` (the facade), not even for type
  checking; only the package's ``__init__`` re-exports it;
- the imports between engine modules (type-checking ones included) form no cycle;
- no engine module reads or writes an underscore attribute of another object: only
  ``self._x``/``cls._x`` inside a class; NamedTuple's public ``_replace``/``_fields``/
  ``_make``/``_asdict`` and dunders are not private; nor imports a private name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import natlab.engine

ENGINE = Path(natlab.engine.__file__).parent
MODULES = sorted(p for p in ENGINE.glob("*.py"))
PUBLIC_UNDERSCORED = {"_replace", "_fields", "_make", "_asdict", "_field_defaults"}


def _name(path: Path) -> str:
    return "natlab.engine" if path.stem == "__init__" else f"natlab.engine.{path.stem}"


def _engine_imports(path: Path) -> set[str]:
    """Every natlab.engine module ``path`` imports, at any depth of the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("natlab.engine"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("natlab.engine"):
            if node.module == "natlab.engine":  # from natlab.engine import fragments, ...
                found.update(f"natlab.engine.{a.name}" for a in node.names
                             if (ENGINE / f"{a.name}.py").exists())
            else:
                found.add(node.module)
    found.discard(_name(path))
    return found


def _private_uses(path: Path) -> list[str]:
    problems = []
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            attr = node.attr
            if not attr.startswith("_") or attr in PUBLIC_UNDERSCORED or (attr.startswith("__") and attr.endswith("__")):
                continue
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            problems.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("natlab"):
            problems += [f"{path.name}:{node.lineno}: imports {node.module}.{a.name}"
                         for a in node.names if a.name.startswith("_")]
    return problems


def test_the_engine_package_has_the_modules_these_checks_read():
    assert {"nat.py", "state.py", "hairpin.py", "icmp_errors.py"} <= {p.name for p in MODULES}


@pytest.mark.parametrize("path", [p for p in MODULES if p.stem not in ("nat", "__init__")], ids=lambda p: p.stem)
def test_no_engine_module_imports_the_engine_facade(path):
    assert "natlab.engine.nat" not in _engine_imports(path)


def test_imports_between_engine_modules_form_no_cycle():
    graph = {_name(p): _engine_imports(p) - {"natlab.engine"} for p in MODULES}
    done: set[str] = set()

    def visit(module: str, trail: tuple[str, ...]) -> None:
        if module in trail:
            raise AssertionError("import cycle: " + " -> ".join(trail[trail.index(module):] + (module,)))
        if module in done:
            return
        for dep in sorted(graph.get(module, ())):
            visit(dep, trail + (module,))
        done.add(module)

    for module in sorted(graph):
        visit(module, ())


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.stem)
def test_no_engine_module_touches_another_objects_privates(path):
    assert _private_uses(path) == []


def test_the_private_check_catches_a_call_into_another_objects_private(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f(engine):\n    return engine._drop(1, None)\n"
                   "from natlab.engine.nat import _IPV4\n")
    assert len(_private_uses(bad)) == 2
