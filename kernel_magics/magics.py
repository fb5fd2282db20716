"""The `%%block` cell magic. All state lives on the `BlockMagics` instance."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, magics_class

from kernel_magics.contexts import BlockContext, HeadlessContext, InteractiveContext, Readiness
from kernel_magics.execute import user_traceback
from kernel_magics.runtime import Outcome, execute_block
from kernel_magics.testing import TestOutcome
from pipelines.analysis import analyze
from pipelines.errors import HeaderError
from pipelines.header import BlockHeader, parse_header
from pipelines.runplan import RUN_CONTEXT_NAME
from pipelines.status import BlockStatus


@magics_class
class BlockMagics(Magics):
    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self._context: BlockContext | None = None
        run_context = shell.user_ns.get(RUN_CONTEXT_NAME)
        if isinstance(run_context, dict):
            self._context = HeadlessContext(run_context, shell.user_ns)

    @property
    def headless(self) -> bool:
        return isinstance(self._context, HeadlessContext)

    def context(self) -> BlockContext:
        if self._context is None:
            self._context = InteractiveContext(Path.cwd())
        return self._context

    @cell_magic
    def block(self, line: str, cell: str) -> None:
        """Run this cell as a pipeline block: `%%block NAME [--upstream A B] [--retries N] ...`"""
        header = self._parse(line)
        try:
            analysis = analyze(cell)
        except SyntaxError:
            analysis = None
        if analysis is None:
            # Let Python report the syntax error the usual way, pointing into the cell.
            self.shell.run_cell(cell, store_history=False)
            return
        outcome = execute_block(self.shell, header, analysis, cell, self.context())
        self._report(header, outcome)

    def _parse(self, line: str) -> BlockHeader:
        try:
            return parse_header(line)
        except HeaderError as exc:
            raise UsageError(f"%%block {line}: {exc}") from None

    def _report(self, header: BlockHeader, outcome: Outcome) -> None:
        # The status line is the cell's own output, like any cell's printed text.
        sys.stdout.write(describe(outcome) + "\n")
        if outcome.error is None:
            return
        if self.headless:
            # The cell must complete so the notebook's independent blocks still run; the
            # traceback becomes the cell's error output, which papermill flags.
            error = outcome.error
            self.shell.showtraceback((type(error), error, user_traceback(error.__traceback__)))
        else:
            raise outcome.error


def describe(outcome: Outcome) -> str:
    state = outcome.state
    lines = [f"block {state.block}: {state.status}"]
    if state.started_at and state.ended_at and outcome.preparation.readiness is Readiness.PROCEED:
        lines[0] += f" in {(state.ended_at - state.started_at).total_seconds():.2f}s"
    if len(state.attempts) > 1:
        lines[0] += f" after {len(state.attempts)} attempts"
    if state.error and state.status is not BlockStatus.SUCCESS:
        lines.append(f"  {state.error}")
    for loaded in outcome.preparation.loaded:
        origin = f"{loaded['block']}, {loaded['run']}" if loaded["block"] else loaded["run"]
        lines.append(f"  loaded {loaded['name']} from {origin}")
    lines += [f"  note: {note}" for note in outcome.preparation.notes]
    final = state.attempts[-1] if state.attempts else None
    if final is not None:
        for manifest in final.outputs:
            shape = (
                f"{manifest['rows']} rows" if manifest.get("rows") is not None else manifest["type"]
            )
            lines.append(f"  stored {manifest['name']} ({shape}, {manifest['format']})")
    for test in outcome.tests:
        mark = {
            TestOutcome.PASSED: "passed",
            TestOutcome.FAILED: "FAILED",
            TestOutcome.WARNED: "warned",
        }
        text = f"  test {test.name}: {mark[test.outcome]}"
        lines.append(text + (f" - {test.message}" if test.message else ""))
    return "\n".join(lines)
