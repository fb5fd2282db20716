"""The `%pipeline` line magic: the pipeline of this notebook's folder, from inside a notebook.

    %pipeline graph                 the graph (Mermaid), this notebook's blocks and last statuses
    %pipeline run [-p k=v ...]      start a headless run in the background and watch it
    %pipeline wait [RUN_ID]         block until a run started here ends
    %pipeline status [RUN_ID]       a run's blocks (default: the pipeline's latest run)
    %pipeline runs                  recent runs
    %pipeline load BLOCK [--run ID] put a block's stored outputs into the namespace

`-P/--pipeline NAME_OR_FOLDER` picks another pipeline of the project.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import logging
import os
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class

from kernel_magics.runview import RunView
from kernel_magics.views import has_frontend
from pipelines.rundir.state import seconds_text

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from pipelines.api import Project
    from pipelines.assembly.pipeline import Pipeline

SUBCOMMANDS = ("graph", "run", "wait", "status", "runs", "load")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"%pipeline: {message}\n{__doc__}")


def _parser() -> _Parser:
    parser = _Parser(prog="%pipeline", add_help=False)
    parser.add_argument("-P", "--pipeline", default=None)
    parser.add_argument("command", type=_subcommand, metavar="{" + ",".join(SUBCOMMANDS) + "}")
    parser.add_argument("target", nargs="?", default=None)
    parser.add_argument("-p", "--param", action="append", default=[])
    parser.add_argument("--run", default=None)
    return parser


def _subcommand(text: str) -> str:
    """A subcommand, or an error that names the closest one, as header options do."""
    if text in SUBCOMMANDS:
        return text
    guess = difflib.get_close_matches(text, SUBCOMMANDS, n=1)
    suggestion = f"; did you mean `{guess[0]}`?" if guess else ""
    raise argparse.ArgumentTypeError(
        f"invalid choice: {text!r} (choose from {', '.join(SUBCOMMANDS)}){suggestion}"
    )


@magics_class
class PipelineMagics(Magics):
    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self.views: dict[str, RunView] = {}
        self.last_run_id: str | None = None
        self.projects: dict[Path, Project] = {}
        """One `Project` per project root this kernel has looked at: its store and assembled
        pipelines are kept between magics."""
        self._parser = _parser()

    @line_magic
    def pipeline(self, line: str) -> None:
        """Look at and run this notebook's pipeline; `%pipeline?` lists the subcommands."""
        args = self._parser.parse_args(shlex.split(line))
        folder = self._folder(args.pipeline)
        command = getattr(self, f"_{args.command}")
        with _usage_errors():
            command(self._project(folder), folder, args)

    # ---- subcommands -------------------------------------------------------------------

    def _graph(self, project: Project, folder: Path, args: argparse.Namespace) -> None:
        from IPython.display import display

        from pipelines.errors import BlockbookError
        from pipelines.forms.diagrams import to_mermaid, to_text
        from pipelines.forms.json_forms import stale_blocks

        pipeline = _valid(project, folder)
        try:
            detail = project.pipeline(folder)
        except BlockbookError:
            detail = None  # no store to ask: the graph still shows
        last = detail.last_blocks if detail is not None else {}
        last_run = detail.last_run if detail is not None else None
        stale = stale_blocks(pipeline, last_run) if last_run is not None else []
        statuses = {name: str(block.status) for name, block in last.items()}
        mermaid = to_mermaid(
            pipeline,
            statuses=statuses,
            highlight_notebook=self._this_notebook(folder),
            stale=stale,
        )
        text = to_text(pipeline)
        if statuses:
            text += "\nlast run: " + ", ".join(f"{k}={v}" for k, v in statuses.items())
        if stale:
            text += "\nchanged since that run (the next run runs them): " + ", ".join(stale)
        display({"text/vnd.mermaid": mermaid, "text/plain": text}, raw=True)

    def _run(self, project: Project, folder: Path, args: argparse.Namespace) -> None:
        from pipelines.params import parse_assignments

        pipeline = _valid(project, folder)
        params = parse_assignments(args.param)
        run_id = self._start_on_server(project, pipeline, params) or project.start(
            # Detached: interrupting or restarting this kernel must not stop the run.
            folder,
            params,
            detached=True,
        )
        view = RunView(run_id, list(pipeline.order), widgets=has_frontend(self.shell))
        self.views[run_id] = view
        self.last_run_id = run_id
        view.watch(lambda: project.store.get_run(run_id), project.runner_process(run_id))
        if not has_frontend(self.shell):
            sys.stdout.write(f"started run {run_id}; `%pipeline wait` shows it when it ends\n")

    def _start_on_server(
        self, project: Project, pipeline: Pipeline, params: dict[str, Any]
    ) -> str | None:
        """Hand the run to the Jupyter server this kernel belongs to, which runs it on its
        warm kernels; None when there is no such server (the kernel starts a runner process)."""
        from kernel_magics.server_link import ServerRefused, server_of
        from pipelines.params import json_params

        server = server_of(project.root)
        if server is None:
            return None
        where = pipeline.folder.relative_to(project.root).as_posix()
        try:
            return server.start_run(where, json_params(params))
        except ServerRefused as exc:
            raise UsageError(str(exc)) from None
        except OSError as exc:
            # The server is going away: the run still starts, the slow way.
            log.warning("the Jupyter server did not take the run (%s)", exc)
            return None

    def _wait(self, project: Project, folder: Path, args: argparse.Namespace) -> None:
        run_id = args.target or self.last_run_id
        if run_id is None or run_id not in self.views:
            raise UsageError("%pipeline wait: no run started from this kernel; use %pipeline run")
        view = self.views[run_id]
        view.finished.wait()
        process = project.runner_process(run_id)
        if process is not None:
            process.wait()
        if view.record is None or not view.record.status.is_terminal:
            # The runner process ended before the run did: what it printed says why.
            log = project.launch_log(run_id)
            raise UsageError(f"run {run_id} did not start:\n{log.read_text(errors='replace')}")
        view.print_text()

    def _status(self, project: Project, folder: Path, args: argparse.Namespace) -> None:
        if args.target:
            record = project.store.get_run(args.target)
        else:
            latest = project.runs(_valid(project, folder).name, limit=1)
            record = latest[0] if latest else None
        if record is None:
            sys.stdout.write("no runs yet: `%pipeline run` starts one\n")
            return
        order = [block.block for block in record.blocks]
        view = RunView(record.run_id, order, widgets=has_frontend(self.shell))
        view.show(record)
        if not record.status.is_terminal:
            self.views[record.run_id] = view
            run_id = record.run_id
            view.watch(lambda: project.store.get_run(run_id))
        elif not has_frontend(self.shell):
            view.print_text()

    def _runs(self, project: Project, folder: Path, args: argparse.Namespace) -> None:
        from IPython.display import display

        records = project.runs(_valid(project, folder).name, limit=20)
        if not records:
            sys.stdout.write("no runs yet: `%pipeline run` starts one\n")
            return
        rows = [
            (
                r.run_id,
                str(r.status),
                str(r.trigger),
                _when(r.started_at),
                seconds_text(r.started_at, r.ended_at),
            )
            for r in records
        ]
        header = ("run", "status", "trigger", "started", "seconds")
        html_rows = "".join(
            "<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows
        )
        html_table = (
            "<table><tr>" + "".join(f"<th>{h}</th>" for h in header) + f"</tr>{html_rows}</table>"
        )
        text = "\n".join("  ".join(row) for row in [header, *rows])
        display({"text/html": html_table, "text/plain": text}, raw=True)

    def _load(self, project: Project, folder: Path, args: argparse.Namespace) -> None:
        block = args.target
        if block is None:
            raise UsageError("%pipeline load BLOCK [--run RUN_ID]")
        pipeline = _valid(project, folder)
        if block not in pipeline.blocks:
            known = ", ".join(pipeline.order) or "none"
            raise UsageError(f"no block `{block}` in pipeline {pipeline.name}; blocks: {known}")
        if args.run:
            record = project.store.get_run(args.run)
        else:
            record = project.last_success(pipeline.name, block)
        if record is None:
            where = f"run {args.run}" if args.run else "any successful run"
            raise UsageError(f"block `{block}` has no stored outputs in {where}")
        values = project.outputs(record.run_id, block)
        if not values:
            raise UsageError(
                f"run {record.run_id} stored no outputs of `{block}` (only outputs other blocks "
                "read are stored; add `--out NAME` to its header to keep others)"
            )
        self.shell.user_ns.update(values)
        sys.stdout.write(f"loaded {', '.join(values)} from {block} (run {record.run_id})\n")

    # ---- helpers -----------------------------------------------------------------------

    def _folder(self, name: str | None) -> Path:
        if name is None:
            return Path.cwd()
        with _usage_errors():
            return self._project(Path.cwd()).resolve(name).folder

    def _project(self, folder: Path) -> Project:
        from pipelines.api import Project
        from pipelines.assembly.project import find_root

        root = find_root(folder)
        if root not in self.projects:
            self.projects[root] = Project(root)
        return self.projects[root]

    def _this_notebook(self, folder: Path) -> str | None:
        """This notebook's file name, where the frontend told the kernel (JupyterLab does)."""
        session = self.shell.user_ns.get("__session__") or os.environ.get("JPY_SESSION_NAME")
        if not session:
            return None
        path = Path(str(session))
        return path.name if path.suffix == ".ipynb" else None


def _valid(project: Project, folder: Path) -> Pipeline:
    pipeline = project.assemble(folder)
    if not pipeline.ok:
        problems = "\n".join(problem.format() for problem in pipeline.errors)
        raise UsageError(f"pipeline {pipeline.name} is not valid:\n{problems}")
    return pipeline


@contextlib.contextmanager
def _usage_errors() -> Iterator[None]:
    """Blockbook errors become IPython usage errors: a message, not a traceback."""
    from pipelines.errors import BlockbookError

    try:
        yield
    except BlockbookError as exc:
        raise UsageError(str(exc)) from None


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""
