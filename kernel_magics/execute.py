"""Running a block body the way IPython runs a cell: transformed, last expression displayed."""

from __future__ import annotations

import ast
from typing import Any


def run_body(shell: Any, body: str) -> None:
    """Execute `body` in the user namespace; exceptions propagate to the caller.

    Goes through IPython's transformer (magics, `!shell` lines) and caching compiler, so
    tracebacks show the block's own lines, and displays the value of a trailing expression.
    """
    transformed = shell.transform_cell(body)
    tree = ast.parse(transformed)
    filename = shell.compile.cache(transformed, shell.execution_count, raw_code=body)
    trailing: ast.Expression | None = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        trailing = ast.Expression(tree.body.pop().value)
    namespace = shell.user_ns
    if tree.body:
        exec(compile(tree, filename, "exec", flags=0), namespace)
    if trailing is not None:
        value = eval(compile(trailing, filename, "eval", flags=0), namespace)
        if value is not None:
            shell.displayhook(value)
