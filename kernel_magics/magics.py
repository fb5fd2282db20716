"""The `%%block` cell magic. All state lives on the `BlockMagics` instance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, magics_class

from kernel_magics.contexts import BlockContext, HeadlessContext, InteractiveContext
from kernel_magics.execute import show_user_frames, user_traceback
from kernel_magics.fanout import ChildContext
from kernel_magics.runtime import Outcome, execute_block
from kernel_magics.views import make_view
from pipelines.assembly.analysis import analyze
from pipelines.assembly.header import BlockHeader, parse_header
from pipelines.errors import HeaderError
from pipelines.rundir.fanout import MAP_CONTEXT_KEY
from pipelines.rundir.plan import RUN_CONTEXT_NAME


@magics_class
class BlockMagics(Magics):
    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self._context: BlockContext | None = None
        run_context = shell.user_ns.get(RUN_CONTEXT_NAME)
        if isinstance(run_context, dict) and MAP_CONTEXT_KEY in run_context:
            self._context = ChildContext(run_context, shell.user_ns)
        elif isinstance(run_context, dict):
            self._context = HeadlessContext(run_context, shell.user_ns)

    @property
    def headless(self) -> bool:
        return isinstance(self._context, HeadlessContext)

    def context(self) -> BlockContext:
        if self._context is None:
            self._context = InteractiveContext(Path.cwd())
        elif isinstance(self._context, InteractiveContext):
            self._context.relocate()
        return self._context

    @cell_magic
    def block(self, line: str, cell: str) -> None:
        """Run this cell as a pipeline block: `%%block NAME [--upstream A B] [--retries N] ...`"""
        header = self._parse(line)
        if isinstance(self._context, ChildContext):
            header = self._context.child_header(header)  # one item of a mapped block
        try:
            analysis = analyze(cell)
        except SyntaxError:
            analysis = None
        if analysis is None:
            # Let Python report the syntax error the usual way, pointing into the cell.
            self.shell.run_cell(cell, store_history=False)
            return
        view = make_view(self.shell, header.name, headless=self.headless)
        outcome = execute_block(
            self.shell, header, analysis, cell, self.context(), on_state=view.update
        )
        view.finish(outcome)
        self._raise_or_show(outcome)

    def _parse(self, line: str) -> BlockHeader:
        try:
            return parse_header(line)
        except HeaderError as exc:
            raise UsageError(f"%%block {line}: {exc}") from None

    def _raise_or_show(self, outcome: Outcome) -> None:
        if outcome.error is None:
            return
        if self.headless:
            # The cell must complete so the notebook's independent blocks still run; the
            # traceback becomes the cell's error output, which papermill flags.
            error = outcome.error
            self.shell.showtraceback((type(error), error, user_traceback(error.__traceback__)))
        else:
            # Raised, so the cell fails and Run All stops here; shown as headless runs show it.
            show_user_frames(self.shell, outcome.error)
            raise outcome.error
