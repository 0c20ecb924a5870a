"""The import and placement rules that import-linter has no contract for (issue 11, deliverable 8).

Run by scripts/test.sh after ``lint-imports``; exits 1 and prints one line per finding:

- **cycle**: no import cycle between modules of the product packages, imports inside functions
  included. The one allowed loop: a ``<app>.services*`` module importing its own app's
  ``<app>.tasks`` inside a function, to enqueue it.
- **private**: no module uses another app's private (``_name``) definitions: ``from X import _y``,
  ``import X._y``, or ``X._y`` on a name bound to another app's module or object (the Django model
  API's ``_meta``, ``_default_manager``, ``_base_manager`` and ``_state`` are not private here).
- **settings-default**: no ``getattr(settings, NAME, default)`` outside the settings module: a
  setting is declared once there and read as ``settings.NAME``.
- **marketdata-sql**: no string naming one of marketdata's tables (``marketdata_<name>``) outside
  ``marketdata/`` (migrations and docstrings excepted): only marketdata reads and writes them.
- **unclassified**: every ``apiplatform`` module is either a composition point (below, or inside one
  of the COMPOSITION_PACKAGES) or listed in the ``apiplatform-plumbing`` import-linter contract in
  pyproject.toml.

An app is a top-level product package. Usage::

    python scripts/check_imports.py [--root DIR] [PACKAGE ...]

The packages default to ``[tool.importlinter] root_packages`` of DIR/pyproject.toml (DIR defaults
to the repository root).
"""

from __future__ import annotations

import argparse
import ast
import itertools
import re
import sys
import tomllib
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grimp

REPO_ROOT = Path(__file__).resolve().parent.parent
SETTINGS_MODULE = "apiplatform.settings"
DATA_APP = "marketdata"
PLUMBING_CONTRACT = "apiplatform-plumbing"
#: apiplatform modules that may import the apps: they compose the project.
COMPOSITION_POINTS = frozenset(
    {
        "apiplatform",
        "apiplatform.urls",
        "apiplatform.apidocs",
        "apiplatform.gateway",
        "apiplatform.streaming",  # the stream server: marketdata events, billing slots, accounts keys
        "apiplatform.metrics",
        "apiplatform.settings",
        "apiplatform.celery",
        "apiplatform.asgi",
        "apiplatform.wsgi",
    }
)
#: apiplatform packages whose every module is a composition point (``apiplatform.ops``: the doctor).
COMPOSITION_PACKAGES = frozenset({"apiplatform.ops"})
#: Underscore names that belong to Django's model API, not to the app that defines the model.
DJANGO_MODEL_API = frozenset({"_meta", "_default_manager", "_base_manager", "_state"})
#: Table names are lower case (the upper-case MARKETDATA_* settings are not tables).
MARKETDATA_TABLE = re.compile(rf"\b{DATA_APP}_[a-z0-9_]+")
#: ``<app>.services*`` -> ``<app>.tasks`` inside a function: the one allowed loop.
SERVICES_TO_TASKS = re.compile(r"^(?P<app>.+)\.services(?:[._].*)?$")


@dataclass(frozen=True, order=True)
class Finding:
    path: str
    line: int
    rule: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: [{self.rule}] {self.message}"


@dataclass
class Module:
    name: str
    path: Path
    rel: str  # path relative to the root, for messages
    tree: ast.Module

    @property
    def app(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def is_package(self) -> bool:
        return self.path.name == "__init__.py"

    @property
    def is_migration(self) -> bool:
        return ".migrations." in f".{self.name}."


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


# --- loading ---------------------------------------------------------------------------------------
def load_modules(root: Path, packages: Iterable[str]) -> dict[str, Module]:
    modules: dict[str, Module] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            if not all(part.isidentifier() for part in parts):
                continue  # not importable (e.g. a folder with a dash)
            name = ".".join(parts)
            rel = path.relative_to(root).as_posix()
            modules[name] = Module(name, path, rel, ast.parse(path.read_text(encoding="utf-8"), rel))
    return modules


def function_level_lines(tree: ast.Module) -> set[int]:
    """Line numbers of the import statements that sit inside a function."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import | ast.ImportFrom):
                    lines.add(inner.lineno)
    return lines


def resolve_from(module: Module, node: ast.ImportFrom) -> str:
    """The absolute module name of ``from <node.module> import ...``."""
    if not node.level:
        return node.module or ""
    base = module.name.split(".")
    if not module.is_package:
        base = base[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


# --- cycles ----------------------------------------------------------------------------------------
def import_edges(graph: grimp.ImportGraph, modules: dict[str, Module]) -> dict[str, set[str]]:
    """importer -> imported among the product modules, without the allowed services -> tasks loop."""
    function_lines = {name: function_level_lines(module.tree) for name, module in modules.items()}
    edges: dict[str, set[str]] = {}
    for importer in sorted(graph.modules):
        targets = set()
        for imported in graph.find_modules_directly_imported_by(importer):
            if imported == importer or (
                allowed_enqueue(importer, imported)
                and all(
                    detail["line_number"] in function_lines.get(importer, set())
                    for detail in graph.get_import_details(importer=importer, imported=imported)
                )
            ):
                continue
            targets.add(imported)
        edges[importer] = targets
    return edges


def allowed_enqueue(importer: str, imported: str) -> bool:
    match = SERVICES_TO_TASKS.match(importer)
    if not match:
        return False
    tasks = f"{match['app']}.tasks"
    return imported == tasks or imported.startswith(f"{tasks}.")


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of more than one module (iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return sorted(components)


def shortest_cycle(edges: dict[str, set[str]], component: list[str]) -> list[str]:
    """One shortest cycle through the component's first module, as [a, b, ..., a]."""
    members = set(component)
    start = component[0]
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(edges.get(node, ())):
            if child not in members:
                continue
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [*reversed(path), start]
            if child not in previous:
                previous[child] = node
                queue.append(child)
    return [*component, start]  # not reached: a component of 2+ modules has a cycle through each


def check_cycles(graph: grimp.ImportGraph, modules: dict[str, Module]) -> list[Finding]:
    edges = import_edges(graph, modules)
    findings = []
    for component in strongly_connected(edges):
        cycle = shortest_cycle(edges, component)
        steps = []
        for importer, imported in itertools.pairwise(cycle):
            details = graph.get_import_details(importer=importer, imported=imported)
            lines = ",".join(str(d["line_number"]) for d in details)
            steps.append(f"{importer} -(l.{lines})-> {imported}")
        first = modules.get(cycle[0])
        others = f" (cycle among {len(component)} modules: {', '.join(component)})"
        findings.append(
            Finding(
                first.rel if first else cycle[0],
                0,
                "cycle",
                "import cycle " + "; ".join(steps) + (others if len(component) > len(cycle) - 1 else ""),
            )
        )
    return findings


# --- names ----------------------------------------------------------------------------------------
def check_names(module: Module, apps: set[str]) -> list[Finding]:
    """Other apps' private names; getattr(settings, NAME, default); marketdata table names."""
    findings: list[Finding] = []
    # names bound (anywhere in the module) to another app's module or object, by dotted path
    bound: dict[str, str] = {}
    settings_names = {"settings"}

    def other_app(dotted: str) -> bool:
        top = dotted.split(".", 1)[0]
        return top in apps and top != module.app

    def private(line: int, what: str) -> None:
        findings.append(Finding(module.rel, line, "private", f"uses another app's private name {what}"))

    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if other_app(alias.name) and any(is_private(p) for p in alias.name.split(".")):
                    private(node.lineno, alias.name)
                if alias.asname:
                    bound[alias.asname] = alias.name
                else:
                    top = alias.name.split(".", 1)[0]
                    bound[top] = top
        elif isinstance(node, ast.ImportFrom):
            source = resolve_from(module, node)
            for alias in node.names:
                dotted = f"{source}.{alias.name}"
                if other_app(source) and any(is_private(p) for p in dotted.split(".")):
                    private(node.lineno, dotted)
                bound[alias.asname or alias.name] = dotted
                if dotted == "django.conf.settings":
                    settings_names.add(alias.asname or alias.name)

    docstrings = {
        id(body[0].value)
        for owner in ast.walk(module.tree)
        if isinstance(owner, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and (body := owner.body)
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    }
    check_sql = module.app != DATA_APP and not module.is_migration

    for node in ast.walk(module.tree):
        if isinstance(node, ast.Attribute) and is_private(node.attr) and node.attr not in DJANGO_MODEL_API:
            chain = [node.attr]
            value = node.value
            while isinstance(value, ast.Attribute):
                chain.append(value.attr)
                value = value.value
            if isinstance(value, ast.Name) and value.id in bound:
                dotted = ".".join([bound[value.id], *reversed(chain)])
                if other_app(dotted):
                    private(node.lineno, dotted)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and len(node.args) == 3
            and module.name != SETTINGS_MODULE
            and is_settings(node.args[0], settings_names)
        ):
            name = node.args[1]
            shown = repr(name.value) if isinstance(name, ast.Constant) else ast.unparse(name)
            findings.append(
                Finding(
                    module.rel,
                    node.lineno,
                    "settings-default",
                    f"getattr(settings, {shown}, default): declare the setting in {SETTINGS_MODULE} "
                    "and read settings.NAME",
                )
            )
        elif (
            check_sql
            and isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and (match := MARKETDATA_TABLE.search(node.value))
        ):
            findings.append(
                Finding(
                    module.rel,
                    node.lineno,
                    "marketdata-sql",
                    f"names marketdata's table {match.group(0)!r}: ask marketdata's selectors/services",
                )
            )
    return findings


def is_settings(node: ast.expr, settings_names: set[str]) -> bool:
    if isinstance(node, ast.Name):
        return node.id in settings_names
    return isinstance(node, ast.Attribute) and node.attr == "settings"


# --- apiplatform classification -------------------------------------------------------------------
def check_classified(modules: dict[str, Module], config: dict) -> list[Finding]:
    contracts = config.get("tool", {}).get("importlinter", {}).get("contracts", [])
    plumbing = next((c for c in contracts if c.get("id") == PLUMBING_CONTRACT), None)
    if plumbing is None:
        return []
    expressions = plumbing.get("source_modules", [])
    findings = []
    for name, module in sorted(modules.items()):
        if module.app != "apiplatform" or module.is_migration or name in COMPOSITION_POINTS:
            continue
        if any(matches(package, name) for package in COMPOSITION_PACKAGES):
            continue
        if not any(matches(expression, name) for expression in expressions):
            findings.append(
                Finding(
                    module.rel,
                    0,
                    "unclassified",
                    f"{name} is neither a composition point (COMPOSITION_POINTS in "
                    f"scripts/check_imports.py) nor in the {PLUMBING_CONTRACT!r} contract",
                )
            )
    return findings


def matches(expression: str, name: str) -> bool:
    """import-linter's module expressions as used here: a module (and, as a package, its
    descendants), ``pkg.*`` (children) or ``pkg.**`` (descendants)."""
    if expression.endswith(".**"):
        return name.startswith(expression[:-2])
    if expression.endswith(".*"):
        prefix = expression[:-1]
        return name.startswith(prefix) and "." not in name[len(prefix) :]
    return name == expression or name.startswith(f"{expression}.")


# --- main -----------------------------------------------------------------------------------------
def check(root: Path, packages: list[str], config: dict | None = None) -> list[Finding]:
    root = root.resolve()
    sys.path.insert(0, str(root))
    try:
        graph = grimp.build_graph(*packages, include_external_packages=False, cache_dir=None)
    finally:
        sys.path.remove(str(root))
    modules = load_modules(root, packages)
    apps = set(packages)
    findings = check_cycles(graph, modules)
    for module in modules.values():
        findings.extend(check_names(module, apps))
    findings.extend(check_classified(modules, config or {}))
    return sorted(set(findings))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="the folder holding the packages")
    parser.add_argument("packages", nargs="*", help="top-level packages (default: pyproject's)")
    args = parser.parse_args(argv)
    pyproject = args.root / "pyproject.toml"
    config = tomllib.loads(pyproject.read_text(encoding="utf-8")) if pyproject.is_file() else {}
    packages = args.packages or config.get("tool", {}).get("importlinter", {}).get("root_packages", [])
    if not packages:
        parser.error("no packages given and none in pyproject.toml [tool.importlinter] root_packages")
    findings = check(args.root, packages, config)
    for finding in findings:
        print(finding)
    print(f"check_imports: {len(findings)} finding(s) in {', '.join(packages)}", file=sys.stderr)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
