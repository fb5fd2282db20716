"""Where a run's folder goes: `[artifacts]` of blockbook.toml, read when a run starts.

Without `[artifacts]` a run folder is `.blockbook/runs/RUN_ID/` on this machine; with
`url = "s3://bucket/prefix"` it is `s3://bucket/prefix/runs/RUN_ID/`, read and written through
fsspec by the runner, the Dask tasks and the kernels alike (`pipelines.rundir.location`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.assembly.config import PROJECT_FILE, load_project_config
from pipelines.envrefs import expand
from pipelines.errors import InvalidInputError
from pipelines.rundir.layout import run_dir as local_run_folder
from pipelines.rundir.location import RunFolder, Storage, is_remote_url, remember


def project_storage(root: Path) -> Storage | None:
    """The storage `[artifacts]` names, its options' `${ENV}` references expanded; None when
    run folders stay under `.blockbook/`. Remembered in this process, so the run folders under
    it open with its options wherever the runner names them by URL."""
    config, problems = load_project_config(root)
    errors = [problem for problem in problems if problem.is_error]
    if errors:
        raise InvalidInputError(
            f"{PROJECT_FILE} is not valid:\n" + "\n".join(p.format() for p in errors),
            f"fix {PROJECT_FILE}",
        )
    url = config.artifacts.url
    if url is None:
        return None
    options = {
        key: _expanded(value, f"{PROJECT_FILE} [artifacts.options] `{key}`")
        for key, value in config.artifacts.options.items()
    }
    storage = Storage(url, options)
    if is_remote_url(url):
        remember(storage)
    return storage


def run_folder_for(root: Path, run_id: str) -> RunFolder:
    """A new run's folder: in the configured storage, else under the project's `.blockbook/`."""
    storage = project_storage(root)
    return local_run_folder(root, run_id) if storage is None else storage.run_folder(run_id)


def _expanded(value: Any, what: str) -> Any:
    if isinstance(value, str):
        return expand(
            value,
            what=what,
            error=InvalidInputError,
            where="in the shell that runs blockbook (or the scheduler)",
        )
    if isinstance(value, dict):
        return {key: _expanded(item, f"{what}.{key}") for key, item in value.items()}
    if isinstance(value, list):
        return [_expanded(item, what) for item in value]
    return value
