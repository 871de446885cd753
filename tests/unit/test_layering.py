"""The pure cores never import the I/O shells (design principle 5), and no two packages import each other,
directly or around a loop."""

import ast
import collections
import pathlib
import sys

import roost

PURE = ("core", "placement", "detector", "balancer", "config", "plan", "privnet")
PURE_MODULES = ("drill/analysis.py",)  # a pure core inside a shell package
ALLOWED_ROOST = tuple(f"roost.{p}" for p in PURE)
FORBIDDEN_STDLIB = {"socket", "asyncio", "subprocess", "httpx", "starlette", "sqlalchemy", "uvicorn", "threading"}


def test_pure_packages_import_only_pure_code():
    root = pathlib.Path(roost.__file__).parent
    problems = []
    paths = [p for package in PURE for p in (root / package).rglob("*.py")] + [root / m for m in PURE_MODULES]
    for path in paths:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if name.startswith("roost") and name != "roost" and not name.startswith(ALLOWED_ROOST):
                    problems.append(f"{path.name} imports {name}")
                if top in FORBIDDEN_STDLIB:
                    problems.append(f"{path.name} imports {name}")
                if top not in sys.stdlib_module_names and top != "roost" and top != "__future__":
                    problems.append(f"{path.name} imports third-party {name}")
    assert problems == []


def package_graph() -> dict[str, set[str]]:
    """Which top-level roost packages (or modules) each one imports."""
    root = pathlib.Path(roost.__file__).parent
    graph: dict[str, set[str]] = collections.defaultdict(set)
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).parts
        package = parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            for name in names:
                if name.startswith("roost.") and name.split(".")[1] != package:
                    graph[package].add(name.split(".")[1])
    return graph


def test_no_package_cycles():
    graph = package_graph()
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt in path:
                cycles.append(" -> ".join([*path[path.index(nxt):], nxt]))
            elif len(path) < 20:
                visit(nxt, [*path, nxt])

    for start in sorted(graph):
        visit(start, [start])
    assert cycles == []


def test_the_client_and_deploy_do_not_reach_into_the_cli_or_the_server():
    graph = package_graph()
    assert not graph["client"] & {"cli", "server", "agent", "proxy", "deploy", "drill"}
    assert not graph["deploy"] & {"cli", "server", "agent", "proxy"}
