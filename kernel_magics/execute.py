"""Running a block body the way IPython runs a cell: transformed, last expression displayed,
within the block's `--timeout`; and checking afterwards that it bound what `--out` names."""

from __future__ import annotations

import ast
import contextlib
import signal
import threading
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from pipelines.errors import BlockbookError, ErrorKind

_PACKAGE_DIR = str(Path(__file__).parent)


class BlockTimeout(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"block timed out after {seconds:g} s (--timeout)")
        self.seconds = seconds


class OutputNotBound(BlockbookError):
    """The block ran without binding a name its `--out` promises: the readers of that name
    would otherwise fail later, blaming a block that "was not run"."""

    kind = ErrorKind.INVALID


def unbound_outputs(
    declared: Collection[str],
    before: Mapping[str, Any],
    namespace: Mapping[str, Any],
    bound_in_source: Collection[str],
) -> list[str]:
    """The `declared` names the body did not bind: missing from `namespace` afterwards, or
    still holding the very object they held before (`before`) with no binding of them in the
    block's source (a value left over from an earlier cell is not this block's output). A
    binding the source does not show (`globals()[name] = ...`) counts when it changed the
    value."""

    def left_over(name: str) -> bool:
        return name in before and namespace[name] is before[name] and name not in bound_in_source

    return [name for name in declared if name not in namespace or left_over(name)]


def check_outputs_bound(block: str, missing: list[str]) -> None:
    if not missing:
        return
    names = ", ".join(f"`{name}`" for name in missing)
    raise OutputNotBound(
        f"block `{block}` did not bind {names}, which its --out names",
        hint=f"assign {names} in the block, or leave {'them' if len(missing) > 1 else 'it'} "
        "out of --out",
    )


def user_traceback(tb: TracebackType | None) -> TracebackType | None:
    """The traceback without Blockbook's own frames around the user's code (the magic in
    front, the timeout's signal handler behind)."""
    frames: list[TracebackType] = []
    while tb is not None:
        frames.append(tb)
        tb = tb.tb_next
    ours = [f.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR) for f in frames]
    start = ours.index(False) if False in ours else len(frames)
    end = len(frames)
    while end > start and ours[end - 1]:
        end -= 1
    rebuilt: TracebackType | None = None
    for frame in reversed(frames[start:end]):
        rebuilt = TracebackType(rebuilt, frame.tb_frame, frame.tb_lasti, frame.tb_lineno)
    return rebuilt


def show_user_frames(shell: Any, error: BaseException) -> None:
    """Make IPython show `error` with the user's frames only when it is raised out of the
    magic: the magic, the executor and IPython's own cell-magic call are noise to the person,
    and a failure with no user frame (a failed `@test`, a missing input) shows as its message,
    which the block view already explains. The full traceback stays on `error` for `%debug`.
    """
    if hasattr(error, "_render_traceback_"):
        return  # the exception renders itself (IPython's hook); leave it be
    frames = user_traceback(error.__traceback__)
    rendered = shell.InteractiveTB.structured_traceback(type(error), error, frames, tb_offset=0)
    with contextlib.suppress(AttributeError):  # an exception type without a __dict__
        error._render_traceback_ = lambda: rendered  # type: ignore[attr-defined]


def run_body(shell: Any, body: str, header_line: str = "", *, display: bool = True) -> Any:
    """Execute `body` in the user namespace and return its trailing expression's value (None
    when it doesn't end with an expression); exceptions propagate to the caller.

    Goes through IPython's transformer (magics, `!shell` lines) and caching compiler, so
    tracebacks show the block's own lines, and displays the value of a trailing expression
    unless `display` is false (a sensor re-runs its body: one display per poke would be noise).
    """
    transformed = shell.transform_cell(body)
    tree = ast.parse(transformed)
    # Line 1 of the cell is the `%%block` header: shift so tracebacks count lines as the
    # notebook shows them.
    ast.increment_lineno(tree, 1)
    source = f"{header_line}\n{transformed}"
    filename = shell.compile.cache(source, shell.execution_count, raw_code=source)
    trailing: ast.Expression | None = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        trailing = ast.Expression(tree.body.pop().value)
    namespace = shell.user_ns
    if tree.body:
        exec(compile(tree, filename, "exec", flags=0), namespace)
    if trailing is None:
        return None
    value = eval(compile(trailing, filename, "eval", flags=0), namespace)
    if display and value is not None:
        shell.displayhook(value)
    return value


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise BlockTimeout in the block's code after `seconds` (main thread only; the runner
    interrupts or kills the kernel for code that ignores signals)."""
    if seconds is None or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise BlockTimeout(seconds)

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
