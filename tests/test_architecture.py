"""The import graph of `pipelines` and `kernel_magics`, read with `ast` from the source files.

Every import counts: at the top of a module, inside functions and under `if TYPE_CHECKING:`
(and `importlib.import_module("...")` / `__import__("...")` with a literal name). Imports under
`if TYPE_CHECKING:` never execute, so only the cycle check leaves them out.

The rules:

- `pipelines` never imports `kernel_magics` (the kernel side depends on the engine, not back).
- No import cycles between modules of `pipelines`.
- Each part of `pipelines` imports only the parts below it (`LAYERS`, as the `__init__.py`
  docstrings of the subpackages say).
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipelines", "kernel_magics")

# ---- the layers ---------------------------------------------------------------------------------

FOUNDATION = "foundation"
# The top-level modules everything may import, and which import only each other. The package
# `pipelines` itself (its `__init__.py`: a docstring and `__version__`) counts as one.
FOUNDATION_MODULES = frozenset(
    {
        "pipelines",
        "pipelines.errors",
        "pipelines.status",
        "pipelines.params",
        "pipelines.envrefs",
        "pipelines.choices",
    }
)
SUBPACKAGES = frozenset(
    {"assembly", "rundir", "store", "alerts", "runs", "scheduling", "forms", "cli", "server"}
)
# `python -m pipelines` is the `blockbook` command: it belongs with `cli`.
MODULE_LAYERS = {"pipelines.api": "api", "pipelines.__main__": "cli"}

_ALL = frozenset({FOUNDATION, "api", *SUBPACKAGES})
# Which layers each layer may import (a layer may always import itself). `cli` and `server` may
# import anything but each other; the `cli` docstring asks for less (`api`, `forms`, foundation
# and the types it presents), which this table does not hold it to yet: it imports `assembly`,
# `rundir`, `runs`, `scheduling` and `store` directly today.
LAYERS: Mapping[str, frozenset[str]] = {
    FOUNDATION: frozenset({FOUNDATION}),
    "assembly": frozenset({FOUNDATION, "rundir"}),
    "rundir": frozenset({FOUNDATION}),
    "store": frozenset({FOUNDATION, "assembly", "rundir"}),
    "alerts": frozenset({FOUNDATION, "assembly", "rundir", "store"}),
    "runs": frozenset({FOUNDATION, "assembly", "rundir", "store", "alerts"}),
    "scheduling": frozenset({FOUNDATION, "assembly", "rundir", "store", "alerts"}),
    "forms": frozenset({FOUNDATION, "assembly", "rundir", "store"}),
    "api": _ALL - {"cli", "server"},
    "cli": _ALL - {"server"},
    "server": _ALL - {"cli"},
}


def layer_of(module: str) -> str | None:
    """The layer of a module of `pipelines`; None for one the table does not place."""
    if module in FOUNDATION_MODULES:
        return FOUNDATION
    if module in MODULE_LAYERS:
        return MODULE_LAYERS[module]
    parts = module.split(".")
    if len(parts) >= 2 and parts[0] == "pipelines" and parts[1] in SUBPACKAGES:
        return parts[1]
    return None


# ---- reading the imports ------------------------------------------------------------------------


@dataclass(frozen=True)
class Import:
    """One import of a module of ours by a module of ours."""

    source: str  # the importing module, `pipelines.cli.main`
    target: str  # the imported module, `pipelines.runs.runner`
    path: Path
    line: int
    in_function: bool
    type_checking: bool

    def __str__(self) -> str:
        notes = []
        if self.in_function:
            notes.append("in a function")
        if self.type_checking:
            notes.append("under TYPE_CHECKING")
        note = f" ({', '.join(notes)})" if notes else ""
        return f"{self.path.as_posix()}:{self.line}: {self.source} imports {self.target}{note}"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files(root: Path = REPO_ROOT) -> dict[str, Path]:
    """Module name -> file, for every `.py` file of our packages."""
    files = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            files[module_name(path, root)] = path
    return files


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _dynamic_name(call: ast.Call) -> str | None:
    """The literal module name of `importlib.import_module("x")` or `__import__("x")`."""
    func = call.func
    if isinstance(func, ast.Name):
        name = func.id
    elif isinstance(func, ast.Attribute):
        name = func.attr
    else:
        return None
    if name not in ("import_module", "__import__") or not call.args:
        return None
    first = call.args[0]
    if isinstance(first, ast.Constant) and isinstance(first.value, str):
        return first.value
    return None


class _Collector(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool, known: frozenset[str]) -> None:
        self.module = module
        self.package = module if is_package else module.rpartition(".")[0]
        self.known = known
        self.functions = 0
        self.type_checking = 0
        self.found: list[tuple[str, int, bool, bool]] = []

    def _add(self, target: str, line: int) -> None:
        if target.split(".")[0] in PACKAGES:
            self.found.append((target, line, self.functions > 0, self.type_checking > 0))

    def _function(self, node: ast.AST) -> None:
        self.functions += 1
        self.generic_visit(node)
        self.functions -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        self.visit(node.test)
        self.type_checking += 1
        for statement in node.body:
            self.visit(statement)
        self.type_checking -= 1
        for statement in node.orelse:
            self.visit(statement)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".") if self.package else []
            if node.level - 1 > len(base):
                raise ValueError(f"{self.module}: relative import beyond the top package")
            base = base[: len(base) - (node.level - 1)]
            base_name = ".".join([*base, *([node.module] if node.module else [])])
        else:
            base_name = node.module or ""
        for alias in node.names:
            submodule = f"{base_name}.{alias.name}"
            self._add(submodule if submodule in self.known else base_name, node.lineno)

    def visit_Call(self, node: ast.Call) -> None:
        name = _dynamic_name(node)
        if name is not None:
            self._add(name, node.lineno)
        self.generic_visit(node)


def imports_in(
    source: str, module: str, path: Path, known: Iterable[str], *, is_package: bool = False
) -> list[Import]:
    collector = _Collector(module, is_package, frozenset(known))
    collector.visit(ast.parse(source, filename=str(path)))
    # `from x import a, b` is one import of x, not two.
    unique = dict.fromkeys(collector.found)
    return [Import(module, target, path, line, func, tc) for target, line, func, tc in unique]


@cache
def all_imports() -> tuple[Import, ...]:
    files = source_files()
    found: list[Import] = []
    for module, path in files.items():
        found += imports_in(
            path.read_text(encoding="utf-8"),
            module,
            path.relative_to(REPO_ROOT),
            files,
            is_package=path.name == "__init__.py",
        )
    return tuple(found)


def of_pipelines(imports: Iterable[Import]) -> Iterator[Import]:
    return (i for i in imports if i.source.split(".")[0] == "pipelines")


# ---- cycles -------------------------------------------------------------------------------------


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """One cycle (`[a, b, a]`) through each strongly connected part of `graph` that has one."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    parts: list[list[str]] = []

    def connect(node: str) -> None:  # Tarjan's algorithm; the graph is small
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                connect(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            part = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                part.append(member)
                if member == node:
                    break
            if len(part) > 1 or node in graph.get(node, ()):
                parts.append(part)

    for node in sorted(graph):
        if node not in index:
            connect(node)

    found = []
    for part in parts:
        members, start = set(part), min(part)
        # The shortest way from `start` back to itself inside the part.
        previous: dict[str, str] = {}
        frontier = [start]
        while frontier and start not in previous:
            following = []
            for node in frontier:
                for successor in sorted(graph.get(node, set()) & members):
                    if successor not in previous:
                        previous[successor] = node
                        following.append(successor)
            frontier = following
        path = [start]
        node = previous[start]
        while node != start:
            path.append(node)
            node = previous[node]
        found.append([start, *reversed(path[1:]), start])
    return sorted(found)


# ---- the tests ----------------------------------------------------------------------------------


def test_the_import_reader_sees_every_kind_of_import() -> None:
    known = {"pipelines", "pipelines.x", "pipelines.x.y", "pipelines.x.z", "kernel_magics"}
    source = (
        "from typing import TYPE_CHECKING\n"
        "import os\n"
        "from pipelines.x import y, not_a_module\n"
        "from . import z\n"
        "from .. import x\n"
        "if TYPE_CHECKING:\n"
        "    import kernel_magics\n"
        "else:\n"
        "    import pipelines\n"
        "def f():\n"
        "    from pipelines.x.y import thing\n"
        "    importlib.import_module('kernel_magics')\n"
    )
    found = imports_in(source, "pipelines.x.w", Path("w.py"), known)
    assert [(i.target, i.line, i.in_function, i.type_checking) for i in found] == [
        ("pipelines.x.y", 3, False, False),
        ("pipelines.x", 3, False, False),
        ("pipelines.x.z", 4, False, False),
        ("pipelines.x", 5, False, False),
        ("kernel_magics", 7, False, True),
        ("pipelines", 9, False, False),
        ("pipelines.x.y", 11, True, False),
        ("kernel_magics", 12, True, False),
    ]
    assert cycles({"a": {"b"}, "b": {"c", "a"}, "c": {"c"}, "d": {"a"}}) == [
        ["a", "b", "a"],
        ["c", "c"],
    ]


def test_the_graph_is_read() -> None:
    files = source_files()
    assert "pipelines.store.run_store" in files
    assert "kernel_magics.magics" in files
    targets = {i.target for i in all_imports()}
    assert "pipelines.store.run_store" in targets
    assert any(i.source.startswith("kernel_magics") for i in all_imports())


def test_pipelines_never_imports_kernel_magics() -> None:
    bad = [i for i in of_pipelines(all_imports()) if i.target.split(".")[0] == "kernel_magics"]
    assert not bad, "pipelines imports kernel_magics:\n" + "\n".join(map(str, bad))


def test_no_import_cycles_in_pipelines() -> None:
    edges: dict[tuple[str, str], list[Import]] = {}
    for i in of_pipelines(all_imports()):
        if i.target.split(".")[0] == "pipelines" and i.target != i.source and not i.type_checking:
            edges.setdefault((i.source, i.target), []).append(i)
    graph: dict[str, set[str]] = {}
    for source, target in edges:
        graph.setdefault(source, set()).add(target)
    found = cycles(graph)
    report = []
    for cycle in found:
        report.append(" -> ".join(cycle))
        for source, target in itertools.pairwise(cycle):
            report += [f"    {i}" for i in edges[(source, target)]]
    assert not found, "import cycles in pipelines:\n" + "\n".join(report)


def test_every_module_of_pipelines_has_a_layer() -> None:
    unplaced = [m for m in source_files() if m.split(".")[0] == "pipelines" and not layer_of(m)]
    assert not unplaced, f"add these modules to the layers of {__name__}: {unplaced}"


def layer_violations(layer: str) -> list[str]:
    violations = []
    for i in of_pipelines(all_imports()):
        source, target = layer_of(i.source), layer_of(i.target)
        if source != layer or i.target.split(".")[0] != "pipelines":
            continue
        if target is None or (target != source and target not in LAYERS[source]):
            violations.append(f"{i} [{source} -> {target}]")
    return violations


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_layers(layer: str) -> None:
    violations = layer_violations(layer)
    allowed = ", ".join(sorted(LAYERS[layer])) or "nothing"
    assert not violations, f"{layer} may import {allowed}; it imports more:\n" + "\n".join(
        violations
    )
