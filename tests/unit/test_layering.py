"""The pure cores never import the I/O shells (design principle 5)."""

import ast
import pathlib
import sys

import roost

PURE = ("core", "placement", "detector", "balancer", "config", "plan")
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
