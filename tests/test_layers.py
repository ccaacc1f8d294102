"""The layers (docs/architecture.md), checked on the source: no import cycles, and nothing below
``commands/`` imports Typer, the CLI or the commands' option bag. Imports inside functions count
too (they are cycles all the same, only later); ``if TYPE_CHECKING:`` imports do not."""

from __future__ import annotations

import ast
from pathlib import Path

import streamcli

ROOT = Path(streamcli.__file__).parent
# Entry points that take command lines: the CLI, and the Locust users (which parse the
# command's arguments with the command itself).
CLI_LAYER = ("streamcli.cli", "streamcli.__main__", "streamcli.commands", "streamcli.locust")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in ROOT.rglob("*.py")}


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The modules (of ``known``, or outside names like ``typer``) that ``path`` imports."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _type_checking(node):
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(path, known) & known for name, path in mods.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            connect(v)
    return out


def test_the_package_has_no_import_cycles():
    assert cycles(graph()) == []


def test_the_cycle_check_would_see_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_nothing_below_the_commands_imports_typer_the_cli_or_the_option_bag():
    mods = modules()
    known = set(mods)
    offenders = {}
    for name, path in mods.items():
        if name.startswith(CLI_LAYER):
            continue
        bad = {
            m
            for m in imports_of(path, known)
            if m.split(".")[0] in ("typer", "click") or m.startswith(CLI_LAYER)
        }
        if bad:
            offenders[name] = sorted(bad)
    assert offenders == {}


def test_the_engine_is_used_by_the_commands_the_load_test_and_veridas():
    edges = graph()
    users = ("streamcli.commands.run", "streamcli.loadtest", "streamcli.batch", "streamcli.locust")
    for user in (*users, "streamcli.veridas_session"):
        assert any(m.startswith("streamcli.engine") for m in edges[user]), user
