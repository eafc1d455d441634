"""How the package is put together: no import cycles (not even ones that an import inside
a function or under TYPE_CHECKING hides), and names that mean one thing."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "hatchway"


def modules() -> dict[str, tuple[Path, bool]]:
    """Every module of the package: its file and whether it is a package's __init__."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if "node_modules" in path.parts:
            continue
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules it imports anywhere in its file: at the top, inside functions
    and under TYPE_CHECKING alike."""
    known = modules()
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in known.items():
        package = name if is_package else name.rsplit(".", 1)[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    origin = ".".join(base + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                for alias in node.names:
                    if f"{origin}.{alias.name}" in known:
                        targets.add(f"{origin}.{alias.name}")
                    elif origin in known:
                        targets.add(origin)
            elif isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names if alias.name in known}
        # Importing a.b.c runs a/__init__ and a/b/__init__ first: those count as imported.
        for target in list(targets):
            parts = target.split(".")
            targets |= {".".join(parts[:depth]) for depth in range(1, len(parts))}
        # A submodule may use its own package (the ssm operations register on the Service
        # that ssm/__init__ makes before it imports them): not a cycle of design.
        graph[name] = {t for t in targets if t in known and not name.startswith(t + ".")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_package_has_no_import_cycles():
    assert cycles(import_graph()) == []


def test_the_graph_sees_imports_inside_functions():
    graph = {"a": {"b"}, "b": {"a"}, "c": {"a"}}
    assert cycles(graph) == [["a", "b"]]
    # The server's parts, as the server imports them.
    graph = import_graph()
    assert "hatchway.server.state" in graph["hatchway.server.app"]
    assert "hatchway.server.ssm" in graph["hatchway.server.app"]  # imported in create_app


def test_control_means_the_agents_control_channel_only():
    """hatchway/agent/control.py is the agent's control channel; the client's control-plane
    API calls live in hatchway/client/controlplane.py, not in a second control.py."""
    assert importlib.util.find_spec("hatchway.agent.control") is not None
    assert importlib.util.find_spec("hatchway.client.control") is None
    assert importlib.util.find_spec("hatchway.client.controlplane") is not None
