"""Static analysis of a block body: which names it binds (outputs) and reads (inputs).

Never runs user code. The body is parsed with `ast`; a body that isn't plain Python (line magics,
`!shell` lines) goes through IPython's own input transformer first, so `%time` or `x = !ls`
inside a block parse the way the kernel will run them.

Module-level statements are walked in order, because a name read before the block binds it is an
input (`x = x + 1`). Function and lambda bodies run later, when called, so their reads of
module-level names count only if the block binds the name nowhere.
"""

from __future__ import annotations

import ast
import builtins
from dataclasses import dataclass, field
from typing import Literal

from pipelines.assembly.bindings import all_args, is_test_decorator, local_bindings
from pipelines.assembly.cell_source import magic_statement, parse_body

BUILTIN_NAMES = frozenset(dir(builtins)) | {
    # Names an IPython kernel provides to every cell.
    "display",
    "get_ipython",
    "In",
    "Out",
    "exit",
    "quit",
    "_",
    "__",
    "___",
    # The decorator that kernel_magics puts in the user namespace.
    "test",
}


@dataclass(frozen=True, slots=True)
class BlockAnalysis:
    """What a block body binds and reads, in source order.

    `outputs` are public top-level bindings (assignments, def, class, for/with/match targets)
    minus imports, `_private` names and `@test` functions; `inputs` are free names it reads.
    """

    outputs: tuple[str, ...]
    inputs: tuple[str, ...]
    tests: tuple[str, ...] = ()
    star_imports: tuple[str, ...] = ()
    imports: tuple[str, ...] = ()
    """Top-level names bound by imports: in scope for later cells of the same kernel."""


def analyze(body: str) -> BlockAnalysis:
    """Analyze a block body. Raises `SyntaxError` (line numbers match the body) when it can't."""
    try:
        tree = parse_body(body)
        visitor = _ModuleVisitor()
        visitor.run(tree)
    except (RecursionError, MemoryError):
        # CPython's parser reports nesting it can't handle this way; the kernel can't run it either.
        raise SyntaxError("the code is nested too deeply to analyze (or to run)") from None
    return visitor.result()


_ScopeKind = Literal["module", "function", "class", "comprehension"]


@dataclass(slots=True)
class _Scope:
    kind: _ScopeKind
    names: set[str] = field(default_factory=set)
    declared_global: set[str] = field(default_factory=set)


class _ModuleVisitor(ast.NodeVisitor):
    def __init__(self) -> None:
        self.module = _Scope("module")
        self.scopes: list[_Scope] = [self.module]
        # Ordered sets (dicts) keep first-seen order for deterministic output.
        self.binding_kind: dict[str, str] = {}
        self.inputs: dict[str, None] = {}
        self.deferred_reads: dict[str, None] = {}
        self.tests: dict[str, None] = {}
        self.star_imports: list[str] = []

    def run(self, tree: ast.Module) -> None:
        for statement in tree.body:
            self.visit(statement)

    def result(self) -> BlockAnalysis:
        bound = self.binding_kind
        for name in self.deferred_reads:
            if name not in bound and name not in self.module.names:
                self.inputs.setdefault(name, None)
        outputs = tuple(
            name
            for name, kind in bound.items()
            if kind == "value" and not name.startswith("_") and name in self.module.names
        )
        return BlockAnalysis(
            outputs=outputs,
            inputs=tuple(self.inputs),
            tests=tuple(self.tests),
            star_imports=tuple(self.star_imports),
            imports=tuple(
                name
                for name, kind in bound.items()
                if kind == "import" and name in self.module.names
            ),
        )

    # ---- name resolution -------------------------------------------------------------------

    def read(self, name: str) -> None:
        crossed_function = False
        innermost = len(self.scopes) - 1
        for depth in range(innermost, -1, -1):
            scope = self.scopes[depth]
            if scope.kind == "module":
                break
            if scope.kind == "class" and depth != innermost:
                continue  # class bodies are invisible to nested scopes
            if scope.kind == "function" and name in scope.declared_global:
                crossed_function = True
                break
            if name in scope.names:
                return
            if scope.kind == "function":
                crossed_function = True
        if name in BUILTIN_NAMES:
            return
        if crossed_function:
            self.deferred_reads.setdefault(name, None)
        elif name not in self.module.names:
            self.inputs.setdefault(name, None)

    def write(self, name: str, kind: str = "value", *, walrus: bool = False) -> None:
        scopes = self.scopes
        index = len(scopes) - 1
        if walrus:
            while scopes[index].kind == "comprehension":
                index -= 1
        scope = scopes[index]
        if scope.kind == "function" and name in scope.declared_global:
            scope = self.module
        scope.names.add(name)
        if scope is self.module:
            self.binding_kind.pop(name, None)  # re-binding moves the name to the end
            self.binding_kind[name] = kind

    def delete(self, name: str) -> None:
        scope = self.scopes[-1]
        if scope.kind == "function" and name in scope.declared_global:
            scope = self.module
        if scope is self.module:
            if name not in self.module.names:
                self.read(name)
            self.module.names.discard(name)
            self.binding_kind.pop(name, None)
        else:
            scope.names.discard(name) if scope.kind != "function" else None

    def visit_Call(self, node: ast.Call) -> None:
        statement = magic_statement(node)
        if statement is None:
            self.generic_visit(node)
        elif self.scopes[-1] is self.module:
            for inner in statement.body:
                self.visit(inner)

    # ---- names ---------------------------------------------------------------------------

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self.read(node.id)
        elif isinstance(node.ctx, ast.Store):
            self.write(node.id)
        else:
            self.delete(node.id)

    def visit_Starred(self, node: ast.Starred) -> None:
        self.visit(node.value)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        # Walk a left-nested chain (`a + b + c + ...`, common in generated code) without
        # recursing once per operator, left to right as Python evaluates it.
        rights: list[ast.expr] = []
        left: ast.expr = node
        while isinstance(left, ast.BinOp):
            rights.append(left.right)
            left = left.left
        self.visit(left)
        for right in reversed(rights):
            self.visit(right)

    # ---- statements whose evaluation order differs from field order ------------------------

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        for target in node.targets:
            self.visit(target)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if isinstance(node.target, ast.Name):
            self.read(node.target.id)
            self.visit(node.value)
            self.write(node.target.id)
        else:
            self.visit(node.target)
            self.visit(node.value)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if self.scopes[-1].kind != "function":
            self.visit(node.annotation)
        if node.value is not None:
            self.visit(node.value)
            self.visit(node.target)
        elif not isinstance(node.target, ast.Name):
            self.visit(node.target)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        self.write(node.target.id, walrus=True)

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self.visit(node.iter)
        self.visit(node.target)
        for statement in (*node.body, *node.orelse):
            self.visit(statement)

    visit_AsyncFor = visit_For

    def visit_With(self, node: ast.With | ast.AsyncWith) -> None:
        for item in node.items:
            self.visit(item.context_expr)
            if item.optional_vars is not None:
                self.visit(item.optional_vars)
        for statement in node.body:
            self.visit(statement)

    visit_AsyncWith = visit_With

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.type is not None:
            self.visit(node.type)
        if node.name is not None:
            self.write(node.name, kind="except")
        for statement in node.body:
            self.visit(statement)
        if node.name is not None:
            # Python unbinds the name when the handler ends.
            scope = self.scopes[-1]
            if scope.kind != "function":
                scope.names.discard(node.name)
                if scope is self.module:
                    self.binding_kind.pop(node.name, None)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.write(alias.asname or alias.name.partition(".")[0], kind="import")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name == "*":
                self.star_imports.append("." * node.level + (node.module or ""))
            else:
                self.write(alias.asname or alias.name, kind="import")

    def visit_Global(self, node: ast.Global) -> None:
        pass  # collected by bindings.local_bindings before the function body is walked

    def visit_Nonlocal(self, node: ast.Nonlocal) -> None:
        pass

    # ---- match patterns --------------------------------------------------------------------

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        if node.pattern is not None:
            self.visit(node.pattern)
        if node.name is not None:
            self.write(node.name)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name is not None:
            self.write(node.name)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        for key in node.keys:
            self.visit(key)
        for pattern in node.patterns:
            self.visit(pattern)
        if node.rest is not None:
            self.write(node.rest)

    # ---- scopes ----------------------------------------------------------------------------

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)
        self._visit_arguments_outside(node.args)
        if node.returns is not None:
            self.visit(node.returns)
        is_test = self.scopes[-1] is self.module and any(
            is_test_decorator(d) for d in node.decorator_list
        )
        self.write(node.name, kind="test" if is_test else "value")
        if is_test:
            self.tests[node.name] = None
        self._visit_function_body(node.args, node.body)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._visit_arguments_outside(node.args)
        self._visit_function_body(node.args, [node.body])

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)
        for base in node.bases:
            self.visit(base)
        for keyword_ in node.keywords:
            self.visit(keyword_.value)
        self.scopes.append(_Scope("class"))
        for statement in node.body:
            self.visit(statement)
        self.scopes.pop()
        self.write(node.name)

    def visit_ListComp(self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp) -> None:
        self._visit_comprehension(node.generators, [node.elt])

    visit_SetComp = visit_ListComp
    visit_GeneratorExp = visit_ListComp

    def visit_DictComp(self, node: ast.DictComp) -> None:
        self._visit_comprehension(node.generators, [node.key, node.value])

    def _visit_comprehension(
        self, generators: list[ast.comprehension], results: list[ast.expr]
    ) -> None:
        # The first iterable is evaluated in the enclosing scope, the rest inside.
        self.visit(generators[0].iter)
        self.scopes.append(_Scope("comprehension"))
        for index, generator in enumerate(generators):
            if index:
                self.visit(generator.iter)
            self.visit(generator.target)
            for condition in generator.ifs:
                self.visit(condition)
        for result in results:
            self.visit(result)
        self.scopes.pop()

    def _visit_arguments_outside(self, args: ast.arguments) -> None:
        """Defaults and annotations are evaluated where the function is defined."""
        for default in (*args.defaults, *(d for d in args.kw_defaults if d is not None)):
            self.visit(default)
        if self.scopes[-1].kind != "function":
            for arg in all_args(args):
                if arg.annotation is not None:
                    self.visit(arg.annotation)

    def _visit_function_body(
        self, args: ast.arguments, body: list[ast.stmt] | list[ast.expr]
    ) -> None:
        local, declared_global = local_bindings(body)
        local |= {arg.arg for arg in all_args(args)}
        self.scopes.append(_Scope("function", local - declared_global, declared_global))
        for item in body:
            self.visit(item)
        self.scopes.pop()
