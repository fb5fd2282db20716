"""The Python API: start runs from code (an Airflow task, a web hook, a test)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pipelines.assembly.pipeline import assemble
from pipelines.assembly.project import find_root, resolve_pipeline
from pipelines.errors import BlockbookError
from pipelines.params import ParamValue, json_params, masked, merge
from pipelines.status import Trigger
from pipelines.store.queue import QueuedRun, enqueue
from pipelines.store.run_store import RunId, RunStore, new_run_id


def trigger(
    pipeline: str | Path,
    params: Mapping[str, ParamValue] | None = None,
    *,
    root: Path | None = None,
    trigger: Trigger = Trigger.API,
) -> RunId:
    """Queue a run of `pipeline` (a folder, or a pipeline name under the project root) for the
    scheduler to start; returns its run id at once.

    Parameters named like secrets are not kept with a queued run (they would be stored):
    give such values to the pipeline through its environment instead.
    """
    root = root or find_root(Path(pipeline) if Path(pipeline).is_dir() else None)
    ref = resolve_pipeline(str(pipeline), root)
    assembled = assemble(ref.folder)
    if not assembled.ok:
        problems = "\n".join(p.format() for p in assembled.errors)
        raise BlockbookError(
            f"pipeline `{ref.name}` is not valid:\n{problems}",
            hint=f"`blockbook validate {ref.folder}` lists the problems",
        )
    run_id = new_run_id()
    values = masked(merge(assembled.config.params, dict(params or {})))
    with RunStore.open(root) as store:
        enqueue(
            store,
            QueuedRun(
                run_id=run_id,
                pipeline=ref.name,
                pipeline_path=str(ref.folder),
                trigger=trigger,
                params=json_params(values),
                run_dir="",
            ),
        )
    return run_id
