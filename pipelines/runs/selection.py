"""Which blocks a run runs: checks of `--only` and `--resume` that need no kernel, shared by the
runner and by `Project.start` (which refuses a bad request before it records a run)."""

from __future__ import annotations

from collections.abc import Sequence

from pipelines.assembly.pipeline import Pipeline
from pipelines.errors import InvalidInputError


class RunError(InvalidInputError):
    """A run that cannot start: an invalid pipeline, a bad option, an unknown run to resume."""


def check_runnable(pipeline: Pipeline) -> None:
    if not pipeline.ok:
        problems = "\n".join(p.format() for p in pipeline.errors)
        raise RunError(
            f"pipeline `{pipeline.name}` is not valid:\n{problems}",
            hint=f"fix the errors above; `blockbook validate {pipeline.folder}` lists them",
        )
    if not pipeline.order:
        raise RunError(f"pipeline `{pipeline.name}` has no blocks", hint="add %%block cells")


def check_only(pipeline: Pipeline, only: Sequence[str]) -> None:
    unknown = [name for name in only if name not in pipeline.blocks]
    if unknown:
        raise RunError(
            f"--only names unknown block(s): {', '.join(unknown)}",
            hint=f"blocks of `{pipeline.name}`: {', '.join(pipeline.order)}",
        )


def check_forced(pipeline: Pipeline, forced: Sequence[str]) -> None:
    unknown = sorted(set(forced) - set(pipeline.blocks))
    if unknown:
        raise RunError(
            f"--force names unknown block(s): {', '.join(unknown)}",
            hint=f"blocks of `{pipeline.name}`: {', '.join(pipeline.order)}",
        )
