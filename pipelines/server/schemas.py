"""JSON Schemas of what the REST API takes and returns: the `components` of its OpenAPI
document (`routes.openapi_document`). They follow `pipelines.forms.json_forms`, whose keys are
stable and may grow, so objects stay open (new keys are no break). The server's tests check
every response against these, which is what keeps them true.
"""

from __future__ import annotations

from typing import Any

from pipelines.errors import ErrorKind
from pipelines.status import BlockStatus, RunStatus, Trigger

Schema = dict[str, Any]

TEXT: Schema = {"type": "string"}
NULLABLE_TEXT: Schema = {"type": ["string", "null"]}
TIME: Schema = {"type": ["string", "null"], "format": "date-time"}
SECONDS: Schema = {"type": ["number", "null"], "description": "seconds, when both ends are known"}
OBJECT: Schema = {"type": "object"}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(description: str, /, **properties: Schema) -> Schema:
    """An object whose listed properties are all present (some may be null); `description` is
    positional, so a property may be named so."""
    return {
        "type": "object",
        "description": description,
        "required": sorted(properties),
        "properties": properties,
    }


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def enum(values: Any) -> Schema:
    return {"type": "string", "enum": [str(value) for value in values]}


_PARAMS: Schema = {
    "type": "object",
    "description": "parameter name -> value; secret-named ones masked",
    "additionalProperties": {"type": ["string", "number", "boolean"]},
}

_RUN_FIELDS: dict[str, Schema] = {
    "run_id": TEXT,
    "pipeline": TEXT,
    "pipeline_path": TEXT,
    "status": enum(RunStatus),
    "trigger": enum(Trigger),
    "params": _PARAMS,
    "created_at": TIME,
    "started_at": TIME,
    "ended_at": TIME,
    "resumed_from": NULLABLE_TEXT,
    "scheduled_for": TIME,
    "attempt": {"type": "integer"},
    "error": NULLABLE_TEXT,
    "run_dir": TEXT,
    "duration": SECONDS,
}

_SCHEDULE_FIELDS: dict[str, Schema] = {
    "cron": NULLABLE_TEXT,
    "every": NULLABLE_TEXT,
    "timezone": TEXT,
    "catchup": enum(["none", "latest", "all"]),
    "max_active_runs": {"type": "integer"},
    "params": _PARAMS,
}

_SUMMARY_FIELDS: dict[str, Schema] = {
    "pipeline": TEXT,
    "folder": {"type": "string", "description": "absolute path on the server"},
    "path": {"type": "string", "description": "the folder as a contents path (server root)"},
    "ok": {"type": "boolean"},
    "errors": {"type": "integer"},
    "warnings": {"type": "integer"},
    "block_count": {"type": "integer"},
    "params": {
        **_PARAMS,
        "description": "the [params] defaults of pipeline.toml, secret-named ones masked; {} "
        "when pipeline.toml cannot be read",
    },
    "schedule": {"oneOf": [{"type": "null"}, obj("a pipeline's [schedule]", **_SCHEDULE_FIELDS)]},
    "last_run": {"oneOf": [{"type": "null"}, ref("Run")]},
}

SCHEMAS: dict[str, Schema] = {
    "Error": obj(
        "what went wrong and how to fix it",
        message=TEXT,
        hint=TEXT,
        kind=enum(ErrorKind),
    ),
    "Problem": obj(
        "a problem found assembling a pipeline (cell is 1-based)",
        kind=TEXT,
        severity=enum(["error", "warning"]),
        message=TEXT,
        hint=TEXT,
        notebook=TEXT,
        cell={"type": ["integer", "null"]},
        cell_id=NULLABLE_TEXT,
        line={"type": ["integer", "null"]},
    ),
    "Problems": obj(
        "a pipeline's problems",
        pipeline=TEXT,
        ok={"type": "boolean"},
        problems=array(ref("Problem")),
    ),
    "PipelineSummary": obj("a pipeline and its newest run", **_SUMMARY_FIELDS),
    "PipelineList": obj(
        "the pipelines under the server root", pipelines=array(ref("PipelineSummary"))
    ),
    "GraphBlock": obj(
        "a block of the graph (graph_json)",
        name=TEXT,
        notebook=TEXT,
        cell={"type": "integer"},
        cell_id=NULLABLE_TEXT,
        kind=TEXT,
        upstream=array(TEXT),
        outputs=array(TEXT),
        inputs=array(TEXT),
        sources={"type": "object", "additionalProperties": TEXT},
        stored_outputs=array(TEXT),
        tests=array(TEXT),
        map={
            **NULLABLE_TEXT,
            "description": "a mapped block (`--map NAME`): the upstream output whose items "
            "it runs once each for; null for other blocks",
        },
    ),
    "Pipeline": obj(
        "a pipeline's graph with how each block went in its newest run (last_blocks)",
        **_SUMMARY_FIELDS,
        blocks=array(ref("GraphBlock")),
        order=array(TEXT),
        problems=array(ref("Problem")),
        last_blocks={"type": "object", "additionalProperties": ref("RunBlock")},
        stale={
            **array(TEXT),
            "description": "blocks whose code changed since the newest run (it recorded "
            "their code's hash): a run would run them again",
        },
        map_counts={
            "type": "object",
            "additionalProperties": {"type": "integer"},
            "description": "mapped block -> how many children (`per_day[0]`, ...) the newest "
            "run gave it",
        },
    ),
    "RunRequest": {
        "type": "object",
        "description": "what to run; every field may be left out",
        "additionalProperties": False,
        "properties": {
            "params": {
                **_PARAMS,
                "description": "parameter overrides; text is typed as `-p` types it "
                '("2024-01-31" is a date)',
            },
            "only": {**array(TEXT), "description": "run only these blocks (and reuse the rest)"},
            "resume": {
                **NULLABLE_TEXT,
                "description": "a run id to resume: its succeeded blocks are reused",
            },
            "force": {
                "oneOf": [{"type": "boolean"}, array(TEXT)],
                "description": "true: run every block, also those a manual run would reuse "
                "because nothing they depend on changed (`blockbook run --force`); a list of "
                "block names: run those again (`blockbook run --force BLOCK`)",
            },
        },
    },
    "LatestBlock": obj(
        "how a block went the last time it was executed: in a run, or by hand in a notebook",
        status=enum(BlockStatus),
        duration=SECONDS,
        started_at=TIME,
        ended_at=TIME,
        error=NULLABLE_TEXT,
        source=enum(["run", "interactive"]),
        run_id={**NULLABLE_TEXT, "description": "the run; null when run by hand (interactive)"},
    ),
    "LatestBlocks": obj(
        "each block's latest status, for a badge on its cell",
        pipeline=TEXT,
        blocks={
            "type": "object",
            "description": "block name -> its latest status; blocks never executed are absent",
            "additionalProperties": ref("LatestBlock"),
        },
        stale={
            **array(TEXT),
            "description": "blocks whose saved code changed since the newest run: a run would "
            "run them again",
        },
    ),
    "RunStarted": obj("the run just recorded and launched", run_id=TEXT),
    "Run": obj("a run (run_json)", **_RUN_FIELDS),
    "RunBlock": obj(
        "a block in a run",
        name=TEXT,
        status=enum(BlockStatus),
        attempts={"type": "integer"},
        error=NULLABLE_TEXT,
        notebook={"type": "string", "description": "the executed notebook, absolute"},
        started_at=TIME,
        ended_at=TIME,
        duration=SECONDS,
        reused_from=NULLABLE_TEXT,
        cache_note={
            **TEXT,
            "description": "why the block ran (what changed) or was cached; empty if unknown",
        },
        tests=array(OBJECT),
        outputs=array(OBJECT),
        schema_drift={
            **array(ref("SchemaDrift")),
            "description": "how its stored frames differ from their baseline (`--schema`)",
        },
        child_of={
            **NULLABLE_TEXT,
            "description": "a fan-out child (`per_day[3]`): the mapped block it ran an item "
            "of; null for other blocks",
        },
        item_index={
            "type": ["integer", "null"],
            "description": "a fan-out child: its item's position, from 0; null for others",
        },
    ),
    "SchemaDrift": obj(
        "one difference between a stored DataFrame and its baseline (last success or pinned)",
        output=TEXT,
        kind=enum(["added", "removed", "renamed", "retyped", "rows", "missing"]),
        column={**NULLABLE_TEXT, "description": "the column (renamed: its new name); null: rows"},
        before={**NULLABLE_TEXT, "description": "dtype, old name, or the expected row bounds"},
        after={**NULLABLE_TEXT, "description": "dtype, new name, or the row count"},
        baseline={**TEXT, "description": "what it was compared with: `run R`, `schema file P`"},
        message={**TEXT, "description": "one readable line"},
    ),
    "RunWithBlocks": obj("a run with its blocks", **_RUN_FIELDS, blocks=array(ref("RunBlock"))),
    "RunPage": obj(
        "runs newest first; pass next_before as `before` for the next page",
        runs=array(ref("Run")),
        next_before={**NULLABLE_TEXT, "description": "null on the last page"},
    ),
    "NotebookLocation": obj(
        "where the frontend opens a block's executed notebook",
        path={"type": "string", "description": "a contents path in the BlockbookRuns drive"},
        cell_index={"type": "integer", "description": "0-based index of the block's cell"},
        run_id=TEXT,
        block=TEXT,
    ),
    "NotebookContents": obj(
        "a read-only Jupyter contents model of an executed notebook",
        name=TEXT,
        path={"type": "string", "description": "RUN_ID/NAME.ipynb within the drive"},
        type=enum(["notebook"]),
        format=enum(["json"]),
        mimetype={"type": "null"},
        writable={"const": False},
        created=TIME,
        last_modified=TIME,
        size={"type": "integer"},
        content=OBJECT,
        hash={"type": "null"},
        hash_algorithm={"type": "null"},
    ),
    "DebugNotebook": obj(
        "the debug notebook of a block, at a visible path",
        path={"type": "string", "description": "a contents path relative to the server root"},
        created={"type": "boolean", "description": "false when it existed and was left as it is"},
        run_id=TEXT,
        block=TEXT,
    ),
    "Schedule": obj(
        "a pipeline's [schedule] and its next fire time",
        pipeline=TEXT,
        path={"type": "string", "description": "the pipeline folder as a contents path"},
        **_SCHEDULE_FIELDS,
        next_fire=TIME,
        last_fired=TIME,
    ),
    "ScheduleList": obj("every valid schedule under the root", schedules=array(ref("Schedule"))),
    "Template": obj(
        "a block template of %block_new",
        key={"type": "string", "description": "`KIND SOURCE`, unique: `loader csv`"},
        kind={"type": "string", "description": "the block kind (--kind): loader, exporter, ..."},
        source={"type": "string", "description": "what it reads or writes: csv, sql, ..."},
        description=TEXT,
        default_name={"type": "string", "description": "the block name `text` has"},
        parameters={
            **array(TEXT),
            "description": "the names the body reads and the user sets (a plain cell, an "
            "upstream block or [params])",
        },
        text={"type": "string", "description": "the whole cell to insert: header, body, @test"},
    ),
    "TemplateList": obj("every block template", templates=array(ref("Template"))),
    "OpenAPI": {"type": "object", "description": "this document"},
    "DiffPair": obj(
        "a value in run A and in run B; null where that run has none",
        a={},
        b={},
        changed={"type": "boolean"},
    ),
    "RunAudit": obj(
        "who started a run, with which code and Blockbook",
        started_by=obj("who started it", user=TEXT, host=TEXT, trigger=enum(Trigger)),
        blockbook_version=TEXT,
        notebooks={
            "type": "object",
            "description": "notebook path (relative to the pipeline folder) -> sha256 of its "
            "code cells, normalised",
            "additionalProperties": TEXT,
        },
        blocks={
            "type": "object",
            "description": "block -> sha256 of its cell, header included, normalised",
            "additionalProperties": TEXT,
        },
    ),
    "DiffRun": obj(
        "one side of a diff",
        run_id=TEXT,
        pipeline=TEXT,
        status=enum(RunStatus),
        trigger=enum(Trigger),
        created_at=TIME,
        duration=SECONDS,
        audit={"oneOf": [{"type": "null"}, ref("RunAudit")]},
    ),
    "OutputDiff": obj(
        "a stored output of a block in both runs, from their manifests",
        name=TEXT,
        type=ref("DiffPair"),
        rows={**ref("DiffPair"), "description": "row counts of frames"},
        sha256=ref("DiffPair"),
        schema=obj(
            "columns of a frame added, removed or retyped from A to B",
            added=array(obj("a column", column=TEXT, dtype=TEXT)),
            removed=array(obj("a column", column=TEXT, dtype=TEXT)),
            retyped=array(obj("a column whose dtype changed", column=TEXT, a=TEXT, b=TEXT)),
            changed={"type": "boolean"},
        ),
        changed={"type": "boolean"},
    ),
    "BlockDiff": obj(
        "a block in both runs; `changed` when its code, status or outputs differ",
        block=TEXT,
        code={**ref("DiffPair"), "description": "code hashes, from each run's audit"},
        status=ref("DiffPair"),
        duration={**ref("DiffPair"), "description": "seconds"},
        reused_from=ref("DiffPair"),
        outputs=array(ref("OutputDiff")),
        changed={"type": "boolean"},
    ),
    "RunDiff": obj(
        "run A and run B side by side",
        a=ref("DiffRun"),
        b=ref("DiffRun"),
        params={"type": "object", "additionalProperties": ref("DiffPair")},
        notebooks={
            "type": "object",
            "description": "notebook path -> its code hash in each run's audit",
            "additionalProperties": ref("DiffPair"),
        },
        blocks=array(ref("BlockDiff")),
        changed=obj(
            "what differs, by name",
            params=array(TEXT),
            notebooks=array(TEXT),
            blocks=array(TEXT),
        ),
    ),
}
