"""Two runs side by side: parameters, each block's code hash, status, duration and outputs (row
counts, columns added, removed or retyped, content hashes), and who started each with which
code. Plain functions over run records: `diff_runs` compares, `diff_json` is the stable JSON
form of `blockbook diff --format json` and the REST API.

Code hashes come from each run's audit (`pipelines.store.audit`), outputs from the manifests
its blocks recorded (`pipelines.rundir.artifacts.OutputManifest`); a run recorded before audits
existed, or a block that did not run, has None there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pipelines.rundir.state import seconds_between
from pipelines.store.records import BlockRunRecord, RunRecord

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Pair(Generic[T]):
    """A value in run A and in run B; None where that run has none."""

    a: T | None
    b: T | None

    @property
    def changed(self) -> bool:
        return self.a != self.b

    def to_json(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "changed": self.changed}


@dataclass(frozen=True, slots=True)
class Retyped:
    column: str
    a: str
    b: str


@dataclass(frozen=True, slots=True)
class SchemaChange:
    """How a frame's columns changed from A to B (both must be frames for any to show)."""

    added: tuple[tuple[str, str], ...] = ()
    """(column, dtype) in B only."""
    removed: tuple[tuple[str, str], ...] = ()
    """(column, dtype) in A only."""
    retyped: tuple[Retyped, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.retyped)

    def to_json(self) -> dict[str, Any]:
        return {
            "added": [{"column": c, "dtype": t} for c, t in self.added],
            "removed": [{"column": c, "dtype": t} for c, t in self.removed],
            "retyped": [{"column": r.column, "a": r.a, "b": r.b} for r in self.retyped],
            "changed": self.changed,
        }


@dataclass(frozen=True, slots=True)
class OutputDiff:
    name: str
    type: Pair[str]
    rows: Pair[int]
    sha256: Pair[str]
    schema: SchemaChange

    @property
    def changed(self) -> bool:
        return self.type.changed or self.rows.changed or self.sha256.changed

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type.to_json(),
            "rows": self.rows.to_json(),
            "sha256": self.sha256.to_json(),
            "schema": self.schema.to_json(),
            "changed": self.changed,
        }


@dataclass(frozen=True, slots=True)
class BlockDiff:
    block: str
    code: Pair[str]
    status: Pair[str]
    duration: Pair[float]
    reused_from: Pair[str]
    outputs: tuple[OutputDiff, ...]

    @property
    def changed(self) -> bool:
        """Code, status or outputs differ; durations always do, and don't count."""
        return self.code.changed or self.status.changed or any(o.changed for o in self.outputs)

    def to_json(self) -> dict[str, Any]:
        return {
            "block": self.block,
            "code": self.code.to_json(),
            "status": self.status.to_json(),
            "duration": self.duration.to_json(),
            "reused_from": self.reused_from.to_json(),
            "outputs": [output.to_json() for output in self.outputs],
            "changed": self.changed,
        }


@dataclass(frozen=True, slots=True)
class RunDiff:
    a: RunRecord
    b: RunRecord
    params: Mapping[str, Pair[Any]]
    notebooks: Mapping[str, Pair[str]]
    """Notebook path -> its code hash in each run's audit."""
    blocks: tuple[BlockDiff, ...]
    """Blocks of A in A's order, then those only B has."""

    @property
    def changed_params(self) -> dict[str, Pair[Any]]:
        return {name: pair for name, pair in self.params.items() if pair.changed}

    @property
    def schema_changes(self) -> list[tuple[str, OutputDiff]]:
        """(block, output) whose columns changed."""
        return [
            (block.block, output)
            for block in self.blocks
            for output in block.outputs
            if output.schema.changed
        ]


def diff_runs(a: RunRecord, b: RunRecord) -> RunDiff:
    """Compare run `a` with run `b` (usually of one pipeline, `a` the older)."""
    a_audit, b_audit = a.audit, b.audit
    a_notebooks = dict(a_audit.notebooks) if a_audit else {}
    b_notebooks = dict(b_audit.notebooks) if b_audit else {}
    a_code = dict(a_audit.blocks) if a_audit else {}
    b_code = dict(b_audit.blocks) if b_audit else {}
    names = _union(
        [block.block for block in a.blocks],
        [block.block for block in b.blocks],
        a_code,
        b_code,
    )
    return RunDiff(
        a=a,
        b=b,
        params=_pairs(a.params, b.params),
        notebooks=_pairs(a_notebooks, b_notebooks),
        blocks=tuple(
            _block_diff(name, a.block(name), b.block(name), a_code.get(name), b_code.get(name))
            for name in names
        ),
    )


def diff_json(diff: RunDiff) -> dict[str, Any]:
    """The stable JSON form: keys may be added, never removed or renamed."""
    return {
        "a": _run_json(diff.a),
        "b": _run_json(diff.b),
        "params": {name: pair.to_json() for name, pair in diff.params.items()},
        "notebooks": {path: pair.to_json() for path, pair in diff.notebooks.items()},
        "blocks": [block.to_json() for block in diff.blocks],
        "changed": {
            "params": sorted(diff.changed_params),
            "notebooks": sorted(p for p, pair in diff.notebooks.items() if pair.changed),
            "blocks": [block.block for block in diff.blocks if block.changed],
        },
    }


def schema_change(
    a_columns: Iterable[Iterable[str]] | None, b_columns: Iterable[Iterable[str]] | None
) -> SchemaChange:
    """Columns added, removed and retyped between two manifests' `columns` ((name, dtype)
    pairs); nothing when either side is not a frame."""
    if a_columns is None or b_columns is None:
        return SchemaChange()
    a_types = dict(_column(entry) for entry in a_columns)
    b_types = dict(_column(entry) for entry in b_columns)
    return SchemaChange(
        added=tuple((c, t) for c, t in b_types.items() if c not in a_types),
        removed=tuple((c, t) for c, t in a_types.items() if c not in b_types),
        retyped=tuple(
            Retyped(c, a_types[c], t)
            for c, t in b_types.items()
            if c in a_types and a_types[c] != t
        ),
    )


def _block_diff(
    name: str,
    a: BlockRunRecord | None,
    b: BlockRunRecord | None,
    a_code: str | None,
    b_code: str | None,
) -> BlockDiff:
    a_outputs, b_outputs = _outputs(a), _outputs(b)
    return BlockDiff(
        block=name,
        code=Pair(a_code, b_code),
        status=Pair(_status(a), _status(b)),
        duration=Pair(_duration(a), _duration(b)),
        reused_from=Pair(a.reused_from if a else None, b.reused_from if b else None),
        outputs=tuple(
            _output_diff(output, a_outputs.get(output), b_outputs.get(output))
            for output in _union(a_outputs, b_outputs)
        ),
    )


def _output_diff(name: str, a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> OutputDiff:
    def field(manifest: Mapping[str, Any] | None, key: str) -> Any:
        return None if manifest is None else manifest.get(key)

    return OutputDiff(
        name=name,
        type=Pair(field(a, "type"), field(b, "type")),
        rows=Pair(field(a, "rows"), field(b, "rows")),
        sha256=Pair(field(a, "sha256"), field(b, "sha256")),
        schema=schema_change(field(a, "columns"), field(b, "columns")),
    )


def _outputs(block: BlockRunRecord | None) -> dict[str, Mapping[str, Any]]:
    """Output name -> the manifest the block's last attempt stored."""
    if block is None or not block.attempt_records:
        return {}
    return {str(m["name"]): m for m in block.attempt_records[-1].outputs if "name" in m}


def _status(block: BlockRunRecord | None) -> str | None:
    return None if block is None else str(block.status)


def _duration(block: BlockRunRecord | None) -> float | None:
    return None if block is None else seconds_between(block.started_at, block.ended_at)


def _pairs(a: Mapping[str, T], b: Mapping[str, T]) -> dict[str, Pair[T]]:
    return {name: Pair(a.get(name), b.get(name)) for name in sorted(a.keys() | b.keys())}


def _union(*groups: Iterable[str]) -> list[str]:
    """Names in first-seen order, each once."""
    return list(dict.fromkeys(name for group in groups for name in group))


def _column(entry: Iterable[str]) -> tuple[str, str]:
    column, dtype = entry
    return str(column), str(dtype)


def _run_json(record: RunRecord) -> dict[str, Any]:
    return {
        "run_id": record.run_id,
        "pipeline": record.pipeline,
        "status": str(record.status),
        "trigger": str(record.trigger),
        "created_at": record.created_at.isoformat(),
        "duration": seconds_between(record.started_at, record.ended_at),
        "audit": None if record.audit is None else record.audit.to_json(),
    }
