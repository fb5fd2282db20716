"""Parsing a block body the way the kernel will run it: plain `ast` first, and IPython's input
transformer only for bodies that aren't plain Python (line magics, `!shell` lines)."""

from __future__ import annotations

import ast
import functools
from typing import Any


def parse_body(body: str) -> ast.Module:
    """Parse a cell body as the kernel would see it after IPython's input transformation."""
    try:
        return ast.parse(body)
    except SyntaxError:
        pass
    # Only bodies that aren't plain Python pay for IPython: for those the transformer rewrites
    # magics and shell escapes into calls, keeping line numbers.
    transformed: str = _transformer().transform_cell(body)
    return ast.parse(transformed)


@functools.cache
def _transformer() -> Any:
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager()  # type: ignore[no-untyped-call]


# Line magics whose argument is a statement that runs in the user namespace.
_STATEMENT_MAGICS = frozenset({"time"})


def _is_string(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def magic_statement(node: ast.Call) -> ast.Module | None:
    """The statement inside `%time x = f()`, which IPython turns into a run_line_magic call."""
    func = node.func
    if not (
        isinstance(func, ast.Attribute)
        and func.attr == "run_line_magic"
        and isinstance(func.value, ast.Call)
        and isinstance(func.value.func, ast.Name)
        and func.value.func.id == "get_ipython"
        and len(node.args) >= 2
        and all(_is_string(arg) for arg in node.args[:2])
    ):
        return None
    name, argument = (arg.value for arg in node.args[:2])  # type: ignore[attr-defined]
    if name not in _STATEMENT_MAGICS:
        return None
    try:
        return parse_body(argument)
    except SyntaxError:
        return None
