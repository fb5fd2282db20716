"""The in-kernel side of Blockbook: `%load_ext kernel_magics` registers `%%block`, `%pipeline`,
`%block_new` and `@test`; block code can raise `NotRetried` to stop its retries."""

from __future__ import annotations

from typing import Any

from kernel_magics.retries import NotRetried
from kernel_magics.testing import test

__all__ = ["NotRetried", "load_ipython_extension", "test", "unload_ipython_extension"]


def load_ipython_extension(shell: Any) -> None:
    from kernel_magics.magics import BlockMagics
    from kernel_magics.pipeline_magics import PipelineMagics
    from kernel_magics.templates import TemplateMagics

    shell.register_magics(BlockMagics(shell))
    shell.register_magics(PipelineMagics(shell))
    shell.register_magics(TemplateMagics(shell))
    shell.user_ns["test"] = test


def unload_ipython_extension(shell: Any) -> None:
    if shell.user_ns.get("test") is test:
        del shell.user_ns["test"]
