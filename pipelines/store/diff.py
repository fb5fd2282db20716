"""Two runs side by side: parameters, each block's code hash, status, duration and outputs (row
counts, columns added, removed or retyped, content hashes), and who started each with which
code. Plain functions over run records: `diff_runs` compares, `diff_json` is the stable JSON
form of `blockbook diff --format json` and the REST API.

Code hashes come from each run's audit (`pipelines.store.audit`), outputs from the manifests
its blocks recorded (`pipelines.rundir.artifacts.OutputManifest`), or for a block the run did
not execute (reused by `--resume` or `--only`, cached) from the manifests linked into its run
folder (`stored_outputs`); a run recorded before audits existed has None for code hashes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from pipelines.rundir.artifacts import ArtifactStore
from pipelines.rundir.state import seconds_between
from pipelines.store.records import BlockRunRecord, RunRecord

T = TypeVar("T")
StoredOutputs = Mapping[str, Sequence[Mapping[str, Any]]]
"""Block -> the manifests of its outputs found in a run folder."""


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


def diff_runs(
    a: RunRecord,
    b: RunRecord,
    a_stored: StoredOutputs | None = None,
    b_stored: StoredOutputs | None = None,
) -> RunDiff:
    """Compare run `a` with run `b` (usually of one pipeline, `a` the older). A block whose
    record holds no outputs takes them from `a_stored` / `b_stored` (`stored_outputs`)."""
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
            _block_diff(
                name,
                (a.block(name), _outputs(a.block(name), a_stored or {})),
                (b.block(name), _outputs(b.block(name), b_stored or {})),
                Pair(a_code.get(name), b_code.get(name)),
            )
            for name in names
        ),
    )


def stored_outputs(record: RunRecord) -> dict[str, list[dict[str, Any]]]:
    """The manifests in the run's folder of the blocks whose record holds no outputs: those the
    run did not execute, whose outputs were linked there from the run that did."""
    if not record.run_dir:
        return {}  # queued: no folder yet
    artifacts = ArtifactStore(Path(record.run_dir))
    found: dict[str, list[dict[str, Any]]] = {}
    for block in record.blocks:
        if _recorded_outputs(block):
            continue
        manifests = [artifacts.manifest(block.block, name) for name in artifacts.names(block.block)]
        found[block.block] = [m.to_json() for m in manifests if m is not None]
    return found


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


_Side = tuple[BlockRunRecord | None, Mapping[str, Mapping[str, Any]]]
"""A block's record in one run (None when the run lacks it) and its outputs by name."""


def _block_diff(name: str, a_side: _Side, b_side: _Side, code: Pair[str]) -> BlockDiff:
    (a, a_outputs), (b, b_outputs) = a_side, b_side
    return BlockDiff(
        block=name,
        code=code,
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


def _outputs(block: BlockRunRecord | None, stored: StoredOutputs) -> dict[str, Mapping[str, Any]]:
    """Output name -> its manifest: as the block's last attempt recorded it, else as found in
    the run folder."""
    if block is None:
        return {}
    manifests = _recorded_outputs(block) or stored.get(block.block, ())
    return {str(m["name"]): m for m in manifests if "name" in m}


def _recorded_outputs(block: BlockRunRecord) -> list[dict[str, Any]]:
    return block.attempt_records[-1].outputs if block.attempt_records else []


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
