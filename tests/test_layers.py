"""Imports run only downhill, and no two modules import each other (ADR 0020).

Every module under src/kindling is parsed with ``ast``, so every import counts: the
ones at the top, the lazy ones inside functions (which hide a cycle from Python but not
from a reader) and the ones only the type checker sees. A failure names the file, the
line and the import, and the rule it breaks.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import kindling

SRC = Path(kindling.__file__).parent

#: Imported by everyone, import nothing of kindling: the one exception tree, the named
#: bounds, and the running loop asked for once (ADR 0045).
BASE = frozenset({"kindling.errors", "kindling.limits", "kindling.running"})
#: Libraries of our own that any component may use; they know no component, only BASE.
#: ``store`` (the engine and migrations every component's tables run on) comes with
#: issue 20's store part.
SHARED = frozenset(
    {
        "kindling.httpd",
        "kindling.telemetry",
        "kindling.runtimes",
        "kindling.iam",
        "kindling.store",
        # EventBridge's pattern language: control checks event source mappings' filters
        # with it, events matches rules with it; it knows neither
        "kindling.events.patterns",
    }
)
LEAVES = BASE | SHARED
#: The composition root: reads flags, builds every component, wires them. It may import
#: anything and nothing may import it (components get what they need by constructor).
ROOT = frozenset(
    {
        "kindling",
        "kindling.__main__",
        "kindling.cli",
        "kindling.cli.common",
        "kindling.cli.serve",
        "kindling.cli.functions",
        "kindling.cli.invoke",
        "kindling.cli.ops",
        "kindling.cli.s3notify",
        "kindling.admin_cli",
        "kindling.app",
        "kindling.wiring",
        "kindling.node",
        "kindling.config",
    }
)

#: Component -> the components it may import (besides itself). The spine is DESIGN.md's
#: "api -> invoke/control -> worker -> sandbox"; invoke reads function configs from
#: control, never the other way round; api reaches workers only through invoke.
ALLOWED: dict[str, frozenset[str]] = {
    "kindling.errors": frozenset(),
    "kindling.limits": frozenset(),
    "kindling.running": frozenset(),
    **{leaf: BASE for leaf in SHARED},
    # accounts, keys and IAM's entities are tables of iam's own on the shared engine
    "kindling.iam": BASE | {"kindling.store"},
    # the audit log of control-plane calls is a table of telemetry's own (ADR 0043)
    "kindling.telemetry": BASE | {"kindling.store"},
    "kindling.worker.sandbox": LEAVES,
    "kindling.worker": LEAVES | {"kindling.worker.sandbox"},
    "kindling.control": LEAVES,
    "kindling.invoke": LEAVES | {"kindling.control", "kindling.worker", "kindling.worker.sandbox"},
    #: event sources and routing (rules, schedules, pollers) call functions through
    #: invoke and read their configuration from control, as the front end does
    "kindling.events": LEAVES | {"kindling.invoke", "kindling.control"},
    "kindling.api": LEAVES | {"kindling.invoke", "kindling.control", "kindling.events"},
}

#: Imports that break a rule today, each with who removes it; an entry that no longer
#: occurs fails the test too, so the list only shrinks.
KNOWN: dict[tuple[str, str], str] = {}


@dataclass(frozen=True, slots=True)
class Import:
    importer: str  # module name
    imported: str  # module name (a package's ``__init__`` is the package's name)
    path: Path
    line: int
    how: str  # "top", "lazy" (inside a function) or "typing" (under TYPE_CHECKING)

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.importer} imports {self.imported} ({self.how})"


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Every module below ``root`` (the directory of ``package``) by its dotted name."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join([package, *parts])] = path
    return found


def imports_of(name: str, path: Path, modules: dict[str, Path], shown: Path) -> list[Import]:
    """What one module imports of ``modules``, each import once (``shown``: its path as
    a failure names it)."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    found = _walk(tree, name, is_package, shown, modules, "top")
    return list({(imp.imported, imp.line): imp for imp in found}.values())


def _walk(
    node: ast.AST, name: str, is_package: bool, path: Path, modules: dict[str, Path], how: str
) -> Iterator[Import]:
    for child in ast.iter_child_nodes(node):
        inner = how
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            inner = "lazy"
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            yield from _walk_all(child.body, name, is_package, path, modules, "typing")
            yield from _walk_all(child.orelse, name, is_package, path, modules, how)
            continue
        if isinstance(child, ast.Import):
            for alias in child.names:
                target = _known(alias.name, modules)
                if target is not None:
                    yield Import(name, target, path, child.lineno, how)
        elif isinstance(child, ast.ImportFrom):
            base = _absolute(child, name, is_package)
            for alias in child.names:
                target = _known(f"{base}.{alias.name}", modules) or _known(base, modules)
                if target is not None:
                    yield Import(name, target, path, child.lineno, how)
        yield from _walk(child, name, is_package, path, modules, inner)


def _walk_all(
    nodes: list[ast.stmt],
    name: str,
    is_package: bool,
    path: Path,
    modules: dict[str, Path],
    how: str,
) -> Iterator[Import]:
    holder = ast.Module(body=nodes, type_ignores=[])
    yield from _walk(holder, name, is_package, path, modules, how)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _absolute(node: ast.ImportFrom, name: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    parts = name.split(".")
    if not is_package:
        parts.pop()
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join([*parts, *([node.module] if node.module else [])])


def _known(name: str, modules: dict[str, Path]) -> str | None:
    return name if name in modules else None


def component_of(module: str, components: frozenset[str], root: frozenset[str]) -> str:
    """The module itself if it is one of the root's, else the longest component name
    that is the module or a package holding it (the root's names hold nothing: a new
    top-level package is placed on purpose, not by default)."""
    if module in root:
        return module
    best = ""
    for component in components:
        if (module == component or module.startswith(component + ".")) and len(component) > len(
            best
        ):
            best = component
    if not best:
        raise AssertionError(f"{module} belongs to no component: add it to ALLOWED or ROOT")
    return best


def upward_imports(
    found: list[Import], allowed: dict[str, frozenset[str]], root: frozenset[str]
) -> list[tuple[Import, str]]:
    """Each import that breaks the map, with the rule it breaks."""
    components = frozenset(allowed)
    broken = []
    for imp in found:
        source = component_of(imp.importer, components, root)
        target = component_of(imp.imported, components, root)
        if source == target or source in root:
            continue
        if target in root:
            broken.append((imp, f"only the composition root imports {target}"))
        elif target not in allowed[source]:
            broken.append((imp, f"{source} may not import {target}"))
    return broken


def cycles(found: list[Import]) -> list[list[Import]]:
    """One import loop per strongly connected group of modules (Tarjan's algorithm)."""
    edges: dict[str, dict[str, Import]] = {}
    for imp in found:
        if imp.importer != imp.imported:
            edges.setdefault(imp.importer, {}).setdefault(imp.imported, imp)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.add(top)
                if top == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return [_loop(sorted(group)[0], group, edges) for group in groups]


def _loop(start: str, group: set[str], edges: dict[str, dict[str, Import]]) -> list[Import]:
    """The shortest path of imports from ``start`` back to itself inside its group."""
    paths: dict[str, list[Import]] = {start: []}
    frontier = [start]
    while frontier:
        nxt_frontier = []
        for node in frontier:
            for target, imp in sorted(edges.get(node, {}).items()):
                if target == start:
                    return [*paths[node], imp]
                if target in group and target not in paths:
                    paths[target] = [*paths[node], imp]
                    nxt_frontier.append(target)
        frontier = nxt_frontier
    raise AssertionError(f"no loop through {start}")


def all_imports(root: Path, package: str) -> list[Import]:
    modules = module_names(root, package)
    return [
        imp
        for name, path in modules.items()
        for imp in imports_of(name, path, modules, path.relative_to(root.parent.parent))
    ]


@pytest.fixture(scope="module")
def kindling_imports() -> list[Import]:
    found = all_imports(SRC, "kindling")
    # the parser sees the imports inside functions (the checker tests below do the rest)
    assert any(imp.importer.startswith("kindling.cli") and imp.how == "lazy" for imp in found)
    return found


def test_every_module_has_a_place() -> None:
    for module in module_names(SRC, "kindling"):
        component_of(module, frozenset(ALLOWED), ROOT)


def test_imports_run_only_downhill(kindling_imports: list[Import]) -> None:
    broken = upward_imports(kindling_imports, ALLOWED, ROOT)
    known = {(imp.importer, imp.imported) for imp in kindling_imports}
    news = [f"{imp}: {why}" for imp, why in broken if (imp.importer, imp.imported) not in KNOWN]
    gone = [f"{a} -> {b}: {who}" for (a, b), who in KNOWN.items() if (a, b) not in known]
    assert not news, "imports that run upwards:\n  " + "\n  ".join(news)
    assert not gone, "KNOWN exceptions no longer needed, remove them:\n  " + "\n  ".join(gone)


def test_no_module_imports_itself_back(kindling_imports: list[Import]) -> None:
    loops = [loop for loop in cycles(kindling_imports) if not _all_known(loop)]
    text = "\n\n".join("  " + "\n  ".join(str(imp) for imp in loop) for loop in loops)
    assert not loops, "import cycles (each line an import, the last one closes the loop):\n" + text


def _all_known(loop: list[Import]) -> bool:
    return any((imp.importer, imp.imported) in KNOWN for imp in loop)


# The checker itself, on a small package of its own: it must catch what it claims to.


def _tree(tmp_path: Path, files: dict[str, str]) -> list[Import]:
    root = tmp_path / "tmp" / "pkg"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return all_imports(root, "pkg")


def test_checker_names_an_upward_import_even_a_lazy_one(tmp_path: Path) -> None:
    found = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "low/__init__.py": "",
            "low/a.py": "def f():\n    from pkg.high import b\n",
            "high/__init__.py": "",
            "high/b.py": "from pkg.low import a\n",
        },
    )
    allowed = {"pkg.low": frozenset(), "pkg.high": frozenset({"pkg.low"})}
    ((imp, why),) = upward_imports(found, allowed, frozenset({"pkg"}))
    assert f"{imp}: {why}" == (
        "tmp/pkg/low/a.py:2: pkg.low.a imports pkg.high.b (lazy): pkg.low may not import pkg.high"
    )


def test_checker_refuses_a_module_no_component_holds(tmp_path: Path) -> None:
    found = _tree(tmp_path, {"__init__.py": "", "cli.py": "import pkg.extra\n", "extra.py": ""})
    with pytest.raises(AssertionError, match=r"pkg\.extra belongs to no component"):
        upward_imports(found, {}, frozenset({"pkg", "pkg.cli"}))


def test_checker_finds_a_cycle_hidden_behind_type_checking_and_relative_imports(
    tmp_path: Path,
) -> None:
    found = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import b\n",
            "b.py": "from .c import x\n",
            "c.py": "import pkg.a\nx = 1\n",
            "d.py": "import pkg.a\n",
        },
    )
    (loop,) = cycles(found)
    assert [(imp.importer, imp.imported, imp.how) for imp in loop] == [
        ("pkg.a", "pkg.b", "typing"),
        ("pkg.b", "pkg.c", "top"),
        ("pkg.c", "pkg.a", "top"),
    ]
