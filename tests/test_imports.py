"""The import structure of ``nastk``: no import cycles between the modules of the engine and
of the built-in plugins (``tasks/``, ``search_spaces/`` and ``predictors/``, installed as
``nastk.tasks``, ``nastk.search_spaces`` and ``nastk.predictors``), and no import of a plugin
by the engine: plugins register through entry points the way a third-party package would
(docs/architecture.md).

Every import statement counts, wherever it stands: at module level, inside functions, under
``if TYPE_CHECKING:``. The graph builder is checked on small synthetic trees first, so a pass
on the real package means something.
"""

from __future__ import annotations

import ast
import itertools
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
#: the plugin packages, by their installed names; their old top-level names are forbidden too
PLUGIN_PACKAGES = ("nastk.tasks", "nastk.search_spaces", "nastk.predictors", "tasks",
                   "search_spaces", "predictors")
#: folder -> installed package name of every tree the import checks walk
TREES = {"nastk": "nastk", "tasks": "nastk.tasks", "search_spaces": "nastk.search_spaces",
         "predictors": "nastk.predictors"}


@dataclass
class ImportGraph:
    """Modules of one package as nodes; ``a -> b`` when ``a`` imports ``b`` (edge attribute
    ``where``: the ``file:line`` places); ``forbidden``: ``file:line: import ...`` lines that
    import one of the forbidden top-level packages."""

    graph: nx.DiGraph
    forbidden: list[str] = field(default_factory=list)


def _module_name(path: Path, root: Path, prefix: str = "") -> tuple[str, bool]:
    """(dotted module name, is a package) of a .py file below ``root``; ``prefix`` replaces the
    first folder's name (``tasks/x.py`` -> ``nastk.tasks.x``)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if prefix:
        parts = [*prefix.split("."), *parts[1:]]
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    return ".".join(parts), is_package


def _resolve(name: str, modules: set[str]) -> str | None:
    """The module of ``modules`` that importing ``name`` loads: its longest dotted prefix that
    is a module (``nastk.a.b.func`` -> ``nastk.a.b``)."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in modules:
            return candidate
    return None


def _imported_names(node: ast.Import | ast.ImportFrom, module: str,
                    is_package: bool) -> list[str]:
    """Absolute dotted names an import statement refers to: ``import a.b`` -> ``a.b``;
    ``from a import b, c`` -> ``a.b``, ``a.c`` (the caller falls back to ``a`` when ``a.b`` is
    not a module); relative imports resolved against ``module``."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        up = node.level - 1
        if up > len(package) or (up == len(package) and not node.module):
            raise ValueError(f"relative import beyond the top-level package in {module}")
        base_parts = package[:len(package) - up]
        base = ".".join([*base_parts, *([node.module] if node.module else [])])
    else:
        base = node.module or ""
    return [f"{base}.{alias.name}" if alias.name != "*" else base for alias in node.names]


def _is_in(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def build_import_graph(root: Path, package: str,
                       forbidden: tuple[str, ...] = PLUGIN_PACKAGES,
                       trees: dict[str, str] | None = None) -> ImportGraph:
    """The import graph of ``root/package`` (every ``.py`` file below it; with ``trees``, of
    every ``root/folder`` it maps to an installed package name) and the imports of the
    ``forbidden`` packages found in ``root/package``."""
    trees = trees or {package: package}
    files = {f: prefix for folder, prefix in trees.items()
             for f in sorted((root / folder).rglob("*.py"))}
    names = {f: _module_name(f, root, prefix) for f, prefix in files.items()}
    modules = {name for name, _ in names.values()}
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    bad: list[str] = []
    for path, (module, is_package) in names.items():
        rel = path.relative_to(root).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            where = f"{rel}:{node.lineno}"
            imported = _imported_names(node, module, is_package)
            in_engine = not _is_in(module, tuple(p for p in trees.values() if p != package))
            if in_engine and any(_is_in(name, forbidden) for name in imported):
                bad.append(f"{where}: {ast.unparse(node)}")
            # `from a import b`: the submodule a.b if there is one, else a itself
            targets = {_resolve(name, modules) for name in imported
                       if name.split(".")[0] == package.split(".")[0]}
            for target in sorted(targets - {None, module}):
                if graph.has_edge(module, target):
                    graph.edges[module, target]["where"].append(where)
                else:
                    graph.add_edge(module, target, where=[where])
    return ImportGraph(graph, bad)


def describe_cycles(graph: nx.DiGraph, most: int = 20) -> list[str]:
    """The import cycles of ``graph``, shortest first, each as
    ``a -> b (a.py:3) -> a (b.py:9)`` starting at its alphabetically first module; at most
    ``most`` of them."""
    cycles = []
    for cycle in itertools.islice(nx.simple_cycles(graph), 10_000):
        first = cycle.index(min(cycle))
        cycles.append(cycle[first:] + cycle[:first])
    cycles.sort(key=lambda c: (len(c), c))
    out = []
    for cycle in cycles[:most]:
        hops = [cycle[0]]
        for a, b in itertools.pairwise([*cycle, cycle[0]]):
            hops.append(f"{b} ({', '.join(graph.edges[a, b]['where'])})")
        out.append(" -> ".join(hops))
    if len(cycles) > most:
        out.append(f"... and {len(cycles) - most} more cycles")
    return out


# -- the builder on synthetic trees ------------------------------------------------------------
def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def test_builder_finds_a_cycle_through_an_import_inside_a_function(tmp_path):
    root = _tree(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg import b\n",
        "pkg/b.py": "def f():\n    from pkg.a import thing\n    return thing\n",
        "pkg/c.py": "import pkg.a\nfrom pkg.a import x, y\n",  # c only points into the cycle
    })
    result = build_import_graph(root, "pkg")
    assert set(result.graph.edges) == {("pkg.a", "pkg.b"), ("pkg.b", "pkg.a"),
                                       ("pkg.c", "pkg.a")}
    assert result.graph.edges["pkg.b", "pkg.a"]["where"] == ["pkg/b.py:2"]
    assert result.graph.edges["pkg.c", "pkg.a"]["where"] == ["pkg/c.py:1", "pkg/c.py:2"]
    cycles = describe_cycles(result.graph)
    assert cycles == ["pkg.a -> pkg.b (pkg/a.py:1) -> pkg.a (pkg/b.py:2)"]
    assert result.forbidden == []


def test_builder_resolves_relative_and_type_checking_imports(tmp_path):
    root = _tree(tmp_path, {
        "pkg/__init__.py": "from .sub import leaf\n",   # package-relative: pkg.sub.leaf
        "pkg/sub/__init__.py": "from . import leaf\n",  # pkg.sub -> pkg.sub.leaf
        "pkg/sub/leaf.py": ("from typing import TYPE_CHECKING\n"
                            "if TYPE_CHECKING:\n"
                            "    from ..top import Thing\n"),  # pkg.sub.leaf -> pkg.top
        "pkg/top.py": "from pkg.sub.leaf import name_not_a_module\n",
    })
    g = build_import_graph(root, "pkg").graph
    assert set(g.edges) == {("pkg", "pkg.sub.leaf"), ("pkg.sub", "pkg.sub.leaf"),
                            ("pkg.sub.leaf", "pkg.top"), ("pkg.top", "pkg.sub.leaf")}
    assert g.edges["pkg.sub.leaf", "pkg.top"]["where"] == ["pkg/sub/leaf.py:3"]
    assert describe_cycles(g) == [
        "pkg.sub.leaf -> pkg.top (pkg/sub/leaf.py:3) -> pkg.sub.leaf (pkg/top.py:1)"]


def test_builder_reports_forbidden_plugin_imports_with_file_and_line(tmp_path):
    root = _tree(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/ok.py": "import tasksmith\nfrom pkg import other\n",  # not a plugin package
        "pkg/other.py": ("from typing import TYPE_CHECKING\n"
                         "\n"
                         "if TYPE_CHECKING:\n"
                         "    from nastk.tasks.segmentation import SegmentationTask\n"
                         "def f():\n"
                         "    import nastk.predictors.mlp as m\n"
                         "    return m\n"),
    })
    result = build_import_graph(root, "pkg")
    assert result.forbidden == [
        "pkg/other.py:4: from nastk.tasks.segmentation import SegmentationTask",
        "pkg/other.py:6: import nastk.predictors.mlp as m",
    ]
    assert describe_cycles(result.graph) == []


# -- the real package ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def nastk_imports() -> ImportGraph:
    result = build_import_graph(ROOT, "nastk", trees=TREES)
    assert result.graph.number_of_nodes() > 100  # the walk found the engine and the plugins
    assert result.graph.number_of_edges() > 100
    for prefix in TREES.values():
        assert any(n.startswith(prefix + ".") for n in result.graph), prefix
    return result


def test_no_import_cycles_in_the_engine_or_the_plugins(nastk_imports):
    cycles = describe_cycles(nastk_imports.graph)
    assert not cycles, "import cycles:\n  " + "\n  ".join(cycles)


def test_nastk_never_imports_the_plugin_packages(nastk_imports):
    assert not nastk_imports.forbidden, (
        "nastk must reach tasks/, search_spaces/ and predictors/ only through the registry "
        "(entry points):\n  " + "\n  ".join(nastk_imports.forbidden))


# -- private names across files -------------------------------------------------------------------
#: folders whose modules must reach one another through public names only
PUBLIC_ONLY = ("nastk/prediction/path_filter", "predictors/path_filter")


def private_uses(root: Path, folder: str) -> list[str]:
    """``file:line: code`` of every use of another module's or object's underscore name in the
    ``.py`` files below ``root/folder``: ``from m import _x``, ``m._x`` and ``obj._x`` for any
    ``obj`` but ``self`` and ``cls`` (dunder names are public)."""
    def private(name: str) -> bool:
        return name.startswith("_") and not name.startswith("__")

    out = []
    for path in sorted((root / folder).rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and any(private(a.name) for a in node.names):
                out.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
            elif (isinstance(node, ast.Attribute) and private(node.attr)
                  and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
                out.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
    return out


def test_private_uses_finds_imports_and_attributes_of_other_objects(tmp_path):
    root = _tree(tmp_path, {
        "pkg/a.py": ("from pkg.b import _Rule, public\n"
                     "class A:\n"
                     "    def f(self, other):\n"
                     "        self._own()\n"
                     "        other._fitted = True\n"
                     "        return other.__class__, _Rule\n"),
    })
    assert private_uses(root, "pkg") == ["pkg/a.py:1: from pkg.b import _Rule, public",
                                         "pkg/a.py:5: other._fitted"]


@pytest.mark.parametrize("folder", PUBLIC_ONLY)
def test_the_path_filter_modules_use_each_other_through_public_names(folder):
    found = private_uses(ROOT, folder)
    assert not found, "private names used across objects:\n  " + "\n  ".join(found)
