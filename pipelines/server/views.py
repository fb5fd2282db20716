"""What each route answers, as plain functions of a `Project`: the handlers run them in a worker
thread and write what they return. Shapes come from `pipelines.forms.json_forms`; the server
adds only contents paths (relative to the server root), which only it knows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.api import Project
from pipelines.errors import InvalidInputError, NotFoundError
from pipelines.forms.json_forms import (
    latest_json,
    pipeline_json,
    run_json,
    schedule_json,
    stale_blocks,
    template_json,
)
from pipelines.server.inputs import RunRequest, RunsQuery
from pipelines.server.notebooks import (
    DEBUG_FOLDER,
    cell_log,
    check_masked,
    contents_model,
    drive_path,
)

# ---- pipelines ---------------------------------------------------------------------------


def pipelines(project: Project) -> dict[str, Any]:
    return {
        "pipelines": [
            {
                **pipeline_json(summary.pipeline, summary.last_run, with_graph=False),
                "path": contents_path(project, summary.ref.folder),
            }
            for summary in project.pipelines()
        ]
    }


def pipeline(project: Project, name: str) -> dict[str, Any]:
    detail = project.pipeline(pipeline_folder(project, name))
    return {
        **pipeline_json(detail.pipeline, detail.last_run, with_graph=True),
        "path": contents_path(project, detail.pipeline.folder),
    }


def problems(project: Project, name: str) -> dict[str, Any]:
    assembled = project.assemble(pipeline_folder(project, name))
    return {
        "pipeline": assembled.name,
        "ok": assembled.ok,
        "problems": [problem.to_json() for problem in assembled.problems],
    }


def latest(project: Project, name: str) -> dict[str, Any]:
    """Each block's latest status, and which blocks changed since the newest run (a cell's
    badge says so: the next run runs it again)."""
    folder = pipeline_folder(project, name)
    detail = project.pipeline(folder)
    last_run = detail.last_run
    return {
        **latest_json(project.latest(folder)),
        "stale": stale_blocks(detail.pipeline, last_run) if last_run is not None else [],
    }


def templates(project: Project) -> dict[str, Any]:
    return {"templates": [template_json(template) for template in project.templates()]}


def pipeline_folder(project: Project, name: str) -> Path:
    """The folder of the pipeline named `name`, or whose contents path (`path` in listings)
    it is: the way to one of several pipelines of the same name.

    Only pipelines listed under the root: `Project.resolve` also takes any folder path,
    relative to the server's working folder, and a URL must not reach outside the root.
    """
    refs = project.pipeline_refs()
    matches = [ref for ref in refs if contents_path(project, ref.folder) == name]
    matches = matches or [ref for ref in refs if ref.name == name]
    if len(matches) == 1:
        return matches[0].folder
    if Path(name).expanduser().is_dir():
        raise NotFoundError(
            f"no pipeline named `{name}` under {project.root}", hint="GET pipelines lists them"
        )
    # Not a folder, so `resolve` only looks the name up: it words not found (with a guess)
    # and ambiguous (with the folders).
    return project.resolve(name).folder


# ---- runs --------------------------------------------------------------------------------


def start(project: Project, name: str, request: RunRequest, user: str) -> dict[str, Any]:
    """Start a run for `user` (the server's name for who asked), who its audit records."""
    run_id = project.start(
        pipeline_folder(project, name),
        request.params,
        request.choices,
        # Without warm kernels, a run started from JupyterLab is the user's, as one from a
        # notebook is: it must not die when the server stops or restarts (the store's heartbeat
        # tells if it crashed). With them, it runs in the server (docs/server.md).
        detached=True,
        requested_by=user,
    )
    return {"run_id": run_id}


def runs(project: Project, query: RunsQuery) -> dict[str, Any]:
    """A page of runs, newest first; `next_before` continues it (null on the last page)."""
    before = _run_id(project, query.before) if query.before is not None else None
    # One more than asked for says whether another page follows.
    found = project.runs(query.pipeline, limit=query.limit + 1, status=query.status, before=before)
    page = found[: query.limit]
    return {
        "runs": [run_json(record, with_blocks=False) for record in page],
        "next_before": page[-1].run_id if len(found) > query.limit else None,
    }


def run(project: Project, run_id: str) -> dict[str, Any]:
    return run_json(project.run(run_id), with_blocks=True)


def cancel(project: Project, run_id: str, by: str) -> dict[str, Any]:
    return run_json(project.cancel(run_id, by), with_blocks=True)


def _run_id(project: Project, cursor: str) -> str:
    try:
        return project.run(cursor).run_id
    except NotFoundError:
        raise InvalidInputError(
            f"`before` names no run: `{cursor}`",
            hint="pass `next_before` of the page before, or a run id from GET runs",
        ) from None


# ---- blocks of a run ---------------------------------------------------------------------


def block_log(project: Project, run_id: str, block: str) -> str:
    record = project.run(run_id)
    check_masked(record.run_id, record.status, record.params)
    located = project.executed_notebook(record.run_id, block)
    return cell_log(located.path, located.cell_index)


def block_notebook(project: Project, run_id: str, block: str) -> dict[str, Any]:
    """Where the frontend opens the block's executed notebook, and the cell to scroll to."""
    record = project.run(run_id)
    check_masked(record.run_id, record.status, record.params)  # the drive would refuse it
    located = project.executed_notebook(record.run_id, block)
    if located.run_id != record.run_id:  # a reused block: the run that ran it, also masked
        origin = project.run(located.run_id)
        check_masked(origin.run_id, origin.status, origin.params)
    return {
        "path": drive_path(located.run_id, located.path),
        "cell_index": located.cell_index,
        "run_id": located.run_id,
        "block": block,
    }


def run_notebook(project: Project, run_id: str, notebook: str) -> dict[str, Any]:
    """An executed notebook of a run as a contents model, found by its file name among the
    run's own notebooks, so no path from the URL ever reaches the file system."""
    record = project.run(run_id)
    check_masked(record.run_id, record.status, record.params)
    paths = {Path(block["notebook"]) for block in run_json(record, with_blocks=True)["blocks"]}
    for path in paths:
        if path.name == notebook and path.is_file():
            return contents_model(path, f"{record.run_id}/{path.name}")
    known = ", ".join(sorted(path.name for path in paths if path.is_file())) or "none yet"
    raise NotFoundError(
        f"run `{record.run_id}` has no executed notebook `{notebook}`",
        hint=f"its executed notebooks: {known}",
    )


def debug_notebook(project: Project, run_id: str, block: str) -> dict[str, Any]:
    """Write the block's debug notebook at a visible path, once: asked again, the one already
    there is returned, since the user may have edited it."""
    record = project.run(run_id)
    if record.block(block) is None:
        known = ", ".join(b.block for b in record.blocks) or "none"
        raise NotFoundError(
            f"run `{record.run_id}` has no block `{block}`", hint=f"its blocks: {known}"
        )
    # Block names are identifiers and run ids come from the store: a safe file name.
    relative = f"{DEBUG_FOLDER}/{record.run_id}/{block}.ipynb"
    path = project.root / relative
    created = not path.exists()
    if created:
        project.debug_notebook(record.run_id, block, path)
    return {"path": relative, "created": created, "run_id": record.run_id, "block": block}


# ---- schedules ---------------------------------------------------------------------------


def schedules(project: Project) -> dict[str, Any]:
    return {
        "schedules": [
            {
                **schedule_json(info.pipeline, info.config, info.next_fire, info.last_fired),
                "path": contents_path(project, info.folder),
            }
            for info in project.schedules()
        ]
    }


def contents_path(project: Project, folder: Path) -> str:
    """A folder as Jupyter's contents API names it: relative to the server root ("" for it)."""
    relative = folder.resolve().relative_to(project.root).as_posix()
    return "" if relative == "." else relative
