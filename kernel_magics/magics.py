"""The `%%block` cell magic. All state lives on the `BlockMagics` instance."""

from __future__ import annotations

import time
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, magics_class

from kernel_magics.execute import run_body
from kernel_magics.testing import TestOutcome, TestResult, run_test
from pipelines.analysis import analyze
from pipelines.errors import HeaderError
from pipelines.header import BlockHeader, parse_header


@magics_class
class BlockMagics(Magics):
    @cell_magic
    def block(self, line: str, cell: str) -> None:
        """Run this cell as a pipeline block: `%%block NAME [--upstream A B] [--retries N] ...`"""
        header = self._parse(line)
        if header.skip:
            print(f"block {header.name}: skipped (--skip)")
            return
        started = time.perf_counter()
        run_body(self.shell, cell)
        results = self._run_tests(header, cell)
        elapsed = time.perf_counter() - started
        print(_summary(header, results, elapsed))
        failed = [r for r in results if r.outcome is TestOutcome.FAILED]
        if failed:
            raise BlockTestFailure(header.name, failed)

    def _parse(self, line: str) -> BlockHeader:
        try:
            return parse_header(line)
        except HeaderError as exc:
            raise UsageError(f"%%block {line}: {exc}") from None

    def _run_tests(self, header: BlockHeader, body: str) -> list[TestResult]:
        names = analyze(body).tests
        namespace: dict[str, Any] = self.shell.user_ns
        warn_only = header.tests == "warn"
        return [run_test(name, namespace[name], namespace, warn_only=warn_only) for name in names]


class BlockTestFailure(AssertionError):
    """A block's `@test` checks failed; the message lists each failure."""

    def __init__(self, block: str, failed: list[TestResult]) -> None:
        lines = [f"{len(failed)} test(s) of block `{block}` failed:"]
        lines += [f"  {result.name}: {result.message}" for result in failed]
        super().__init__("\n".join(lines))
        self.block = block
        self.failed = failed


def _summary(header: BlockHeader, results: list[TestResult], elapsed: float) -> str:
    counts = {outcome: sum(r.outcome is outcome for r in results) for outcome in TestOutcome}
    tests = ", ".join(f"{count} {outcome}" for outcome, count in counts.items() if count)
    text = f"block {header.name}: ran in {elapsed:.2f}s"
    if tests:
        text += f"; tests: {tests}"
    for result in results:
        if result.outcome is not TestOutcome.PASSED:
            text += f"\n  {result.outcome} {result.name}: {result.message}"
    return text
