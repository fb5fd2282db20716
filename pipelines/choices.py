"""What a person picks when starting a run: which blocks run, and which run again regardless.

One frozen value travels from every entry point (`blockbook run`, `%pipeline run`, the REST API)
through `Project.start` to the runner, whether the run goes to warm kernels in this process or
to a runner process of its own, whose command line it becomes (`arguments`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RunChoices:
    only: tuple[str, ...] = ()
    """Run only these blocks; the others' outputs come from earlier runs."""
    resume: str | None = None
    """Re-run only what did not succeed in this run."""
    isolate: bool = False
    """One kernel per block instead of one per notebook."""
    force: bool = False
    """Run every block, also those nothing changed for (`--force`)."""
    force_blocks: tuple[str, ...] = ()
    """Run these blocks even if nothing changed for them (`--force BLOCK`)."""

    def arguments(self) -> list[str]:
        """The same choices as `blockbook run` options, for a runner's command line."""
        words: list[str] = []
        for block in self.only:
            words += ["--only", block]
        if self.resume:
            words += ["--resume", self.resume]
        if self.isolate:
            words.append("--isolate")
        if self.force:
            words.append("--force")
        for block in self.force_blocks:
            # `--force=BLOCK`: a bare `--force BLOCK` before the pipeline would read as two
            # arguments, and click takes an option value only when it is attached.
            words.append(f"--force={block}")
        return words
