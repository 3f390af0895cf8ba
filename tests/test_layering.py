"""The package's import rules, read from the source: no cycles, and each layer imports only what is below it.

- presentation (report, render, console, verify, provenance, stats) reads a Plan but never loads the
  planner or the engine;
- the planner (wsel/plan) never loads the engine, the presentation or the command line;
- the engine (execute) never loads the presentation or the command line;
- checkpoint/ (the file formats) knows nothing of plans, students or architectures, and sources/ (where the
  bytes are) nothing of what they mean;
- nothing but `__main__` imports the command line.
Imports inside functions count (they are dependencies all the same); TYPE_CHECKING imports and the
package's own `__init__` (which only re-exports, lazily) do not.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parent.parent / "wsel"

PRESENTATION = ("wsel.report", "wsel.render", "wsel.console", "wsel.verify", "wsel.provenance", "wsel.stats")
ENGINE = ("wsel.execute",)
COMMAND_LINE = ("wsel.cli", "wsel.api")
PLANNER = "wsel.plan."


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The wsel modules a file imports (`from wsel.x import y` counts y when wsel.x.y is a module, and every
    package above x, whose `__init__` runs first)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_checking = {
        id(statement)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
        for statement in ast.walk(node)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_checking:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    own = module_name(path)
    parents = {".".join(name.split(".")[:i]) for name in found for i in range(2, name.count(".") + 1)}
    parents = {p for p in parents if own != p and not own.startswith(p + ".")}  # its own packages ran already
    return {name for name in found | parents if name in MODULES and name != "wsel"}  # importing a.b.c runs a.b


MODULES = {module_name(p): p for p in SOURCE.rglob("*.py")}
GRAPH = {name: imports(path) for name, path in MODULES.items() if name != "wsel"}


def test_the_graph_is_read() -> None:
    assert "wsel.plan.model" in GRAPH["wsel.report"]
    assert "wsel.plan.dispatch" in GRAPH["wsel.api"]
    assert len(GRAPH) > 40


def test_no_import_cycles() -> None:
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            pytest.fail("import cycle: " + " -> ".join((*path[path.index(name) :], name)))
        if name in done:
            return
        for other in sorted(GRAPH.get(name, ())):
            visit(other, (*path, name))
        done.add(name)

    for name in sorted(GRAPH):
        visit(name, ())


def reachable(name: str) -> set[str]:
    seen: set[str] = set()
    todo = [name]
    while todo:
        for other in GRAPH.get(todo.pop(), ()):
            if other not in seen:
                seen.add(other)
                todo.append(other)
    return seen


def planner_or_engine(name: str) -> bool:
    return (name.startswith(PLANNER) and name != "wsel.plan.model") or name in ENGINE


@pytest.mark.parametrize("module", PRESENTATION)
def test_presentation_never_loads_the_planner_or_the_engine(module: str) -> None:
    assert sorted(m for m in reachable(module) if planner_or_engine(m) or m in COMMAND_LINE) == []


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m.startswith(PLANNER)))
def test_the_planner_never_loads_the_engine_or_what_presents(module: str) -> None:
    assert sorted(m for m in reachable(module) if m in (*ENGINE, *PRESENTATION, *COMMAND_LINE)) == []


def test_the_engine_never_loads_what_presents() -> None:
    assert sorted(m for m in reachable("wsel.execute") if m in (*COMMAND_LINE, "wsel.render", "wsel.console")) == []


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m.startswith("wsel.checkpoint.")))
def test_checkpoint_knows_only_files(module: str) -> None:
    allowed = ("wsel.checkpoint", "wsel.sources", "wsel.errors", "wsel.select")  # the reader picks a Selection's
    assert sorted(m for m in reachable(module) if not m.startswith(allowed)) == []


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m.startswith("wsel.sources.")))
def test_sources_know_only_bytes(module: str) -> None:
    assert sorted(m for m in reachable(module) if not m.startswith(("wsel.sources", "wsel.errors"))) == []


def test_only_main_imports_the_command_line() -> None:
    assert sorted(m for m, deps in GRAPH.items() if "wsel.cli" in deps) == ["wsel.__main__"]
