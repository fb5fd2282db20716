"""Schema drift: how a block's stored DataFrames differ from what they were (or should be).

A baseline is, per output, the columns (name, dtype) and the row bounds the output is held to:
taken from the block's last successful run, or from a pinned contract (`--schema-file`, written
by `blockbook schema pin`). `compare` is a pure function of a baseline and the manifests a block
just stored (`pipelines.rundir.artifacts.OutputManifest.to_json`); kernels import this module, so
it stays free of heavy imports.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipelines.errors import BlockbookError, InvalidInputError

ROW_FACTOR = 2.0
"""Rows may halve or double against the last run's count before it is drift: daily loads
vary, but a frame half as long (or twice as long) as yesterday's is worth a look."""
CONTRACT_VERSION = 1


class DriftKind(enum.StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    RENAMED = "renamed"
    """One column gone and one new of the same dtype: most likely the same column renamed."""
    RETYPED = "retyped"
    ROWS = "rows"
    """The row count is outside the bounds."""
    MISSING = "missing"
    """A frame the pinned contract has was not stored as a DataFrame."""


@dataclass(frozen=True, slots=True)
class Drift:
    """One difference between a stored frame and its baseline."""

    output: str
    kind: DriftKind
    column: str | None = None
    """The column concerned (for `renamed`, its new name); None for `rows`."""
    before: str | None = None
    """The baseline's dtype (`added`: None), old name (`renamed`) or row bounds (`rows`)."""
    after: str | None = None
    """The dtype now (`removed`: None), new name (`renamed`) or row count (`rows`)."""
    baseline: str = ""
    """What it was compared with: `run R` or `schema file PATH`."""

    @property
    def message(self) -> str:
        """One readable line."""
        where = f"`{self.output}`"
        match self.kind:
            case DriftKind.ADDED:
                return f"{where}: column `{self.column}` added ({self.after})"
            case DriftKind.REMOVED:
                return f"{where}: column `{self.column}` removed (was {self.before})"
            case DriftKind.RENAMED:
                return f"{where}: column `{self.before}` renamed to `{self.after}`?"
            case DriftKind.RETYPED:
                return f"{where}: column `{self.column}` changed type {self.before} -> {self.after}"
            case DriftKind.ROWS:
                return f"{where}: {self.after} rows, expected {self.before}"
            case DriftKind.MISSING:
                return f"{where}: not stored as a DataFrame, which the schema file expects"
        raise AssertionError(self.kind)  # pragma: no cover (every kind is matched)

    def to_json(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "kind": str(self.kind),
            "column": self.column,
            "before": self.before,
            "after": self.after,
            "baseline": self.baseline,
            "message": self.message,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Drift:
        return cls(
            output=data["output"],
            kind=DriftKind(data["kind"]),
            column=data.get("column"),
            before=data.get("before"),
            after=data.get("after"),
            baseline=data.get("baseline", ""),
        )


@dataclass(frozen=True, slots=True)
class OutputSchema:
    """What one stored frame is held to."""

    columns: tuple[tuple[str, str], ...]
    min_rows: int | None = None
    max_rows: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "columns": [list(column) for column in self.columns],
            "min_rows": self.min_rows,
            "max_rows": self.max_rows,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OutputSchema:
        return cls(
            columns=tuple((str(name), str(dtype)) for name, dtype in data["columns"]),
            min_rows=data.get("min_rows"),
            max_rows=data.get("max_rows"),
        )

    @classmethod
    def of_manifest(cls, manifest: Mapping[str, Any]) -> OutputSchema | None:
        """The schema a stored frame sets for later runs: its columns, and rows within
        `ROW_FACTOR` of its count. None for outputs that are not frames."""
        columns = manifest.get("columns")
        if columns is None:
            return None
        rows = manifest.get("rows")
        low, high = row_bounds(rows) if isinstance(rows, int) else (None, None)
        return cls(tuple((str(n), str(t)) for n, t in columns), low, high)


def row_bounds(rows: int, factor: float = ROW_FACTOR) -> tuple[int, int]:
    """The row counts within `factor` of `rows`, either way."""
    return math.ceil(rows / factor), math.floor(rows * factor)


@dataclass(frozen=True, slots=True)
class Baseline:
    """What a block's frames are compared with, and where that came from."""

    source: str
    """For people: `run R` or `schema file PATH`."""
    outputs: Mapping[str, OutputSchema]
    fail: bool = False
    """`--schema fail`: drift fails the block instead of warning."""
    pinned: bool = False
    """A contract (`--schema-file`): each of its outputs must be stored, as a frame."""

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "fail": self.fail,
            "pinned": self.pinned,
            "outputs": {name: schema.to_json() for name, schema in self.outputs.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Baseline:
        return cls(
            source=data["source"],
            fail=bool(data.get("fail", False)),
            pinned=bool(data.get("pinned", False)),
            outputs={n: OutputSchema.from_json(s) for n, s in data["outputs"].items()},
        )


class SchemaDrift(BlockbookError):
    """`--schema fail`: a stored frame is not what its baseline says."""

    def __init__(self, block: str, source: str, drifts: tuple[Drift, ...]) -> None:
        super().__init__(
            f"schema drift in block `{block}` against {source}: "
            + "; ".join(drift.message for drift in drifts),
            hint=(
                "fix the block's output, or accept the change: pin a new schema "
                f"(`blockbook schema pin RUN {block}`) or use `--schema warn`"
            ),
        )
        self.block = block
        self.source = source
        self.drifts = drifts

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.block, self.source, self.drifts))


class SchemaFileError(InvalidInputError):
    """A `--schema-file` that is missing or not a schema contract."""


def compare(baseline: Baseline, manifests: Iterable[Mapping[str, Any]]) -> tuple[Drift, ...]:
    """Every difference between the frames just stored (their manifests) and the baseline.
    Against a last run, outputs on one side only, or not frames on either, are not compared:
    which outputs are stored depends on who reads them, not on the data. A pinned contract's
    outputs must all be there."""
    drifts: list[Drift] = []
    manifests = list(manifests)
    if baseline.pinned:
        frames = {str(m["name"]) for m in manifests if m.get("columns") is not None}
        drifts += [
            Drift(name, DriftKind.MISSING) for name in baseline.outputs if name not in frames
        ]
    for manifest in manifests:
        name = str(manifest["name"])
        expected = baseline.outputs.get(name)
        columns = manifest.get("columns")
        if expected is None or columns is None:
            continue
        now = tuple((str(n), str(t)) for n, t in columns)
        drifts += column_drift(name, expected.columns, now)
        rows = manifest.get("rows")
        if isinstance(rows, int):
            drifts += row_drift(name, expected, rows)
    return tuple(replace(drift, baseline=baseline.source) for drift in drifts)


def column_drift(
    output: str, before: tuple[tuple[str, str], ...], after: tuple[tuple[str, str], ...]
) -> list[Drift]:
    """Added, removed, renamed-looking and retyped columns, in the order the frames list them."""
    old, new = dict(before), dict(after)
    drifts = [
        Drift(output, DriftKind.RETYPED, name, old[name], dtype)
        for name, dtype in after
        if name in old and old[name] != dtype
    ]
    removed = [name for name, _ in before if name not in new]
    added = [name for name, _ in after if name not in old]
    # One removed and one added column of a dtype (and no other candidate): a rename, most
    # likely. Two of each would be guesswork, so those stay added and removed.
    for dtype in dict.fromkeys(old[name] for name in removed):
        gone = [name for name in removed if old[name] == dtype]
        came = [name for name in added if new[name] == dtype]
        if len(gone) == 1 and len(came) == 1:
            drifts.append(Drift(output, DriftKind.RENAMED, came[0], gone[0], came[0]))
            removed.remove(gone[0])
            added.remove(came[0])
    drifts += [Drift(output, DriftKind.REMOVED, name, old[name], None) for name in removed]
    drifts += [Drift(output, DriftKind.ADDED, name, None, new[name]) for name in added]
    return drifts


def row_drift(output: str, expected: OutputSchema, rows: int) -> list[Drift]:
    low, high = expected.min_rows, expected.max_rows
    if (low is None or rows >= low) and (high is None or rows <= high):
        return []
    if low is not None and high is not None:
        bounds = f"{low}..{high}" if low != high else str(low)
    else:
        bounds = f">= {low}" if low is not None else f"<= {high}"
    return [Drift(output, DriftKind.ROWS, None, bounds, str(rows))]


# ---- pinned contracts (`--schema-file`) -------------------------------------------------------


def contract(block: str, run_id: str, outputs: Mapping[str, OutputSchema]) -> dict[str, Any]:
    """The JSON a pinned schema file holds: people may edit the bounds or the columns, so
    columns are an object (`{"km": "int64"}`: one line each in the file), in the frame's order."""
    return {
        "blockbook_schema": CONTRACT_VERSION,
        "block": block,
        "pinned_from": run_id,
        "outputs": {
            name: {
                "columns": dict(schema.columns),
                "min_rows": schema.min_rows,
                "max_rows": schema.max_rows,
            }
            for name, schema in sorted(outputs.items())
        },
    }


def contract_text(data: Mapping[str, Any]) -> bytes:
    """A contract as its file holds it: indented, keys in their order (columns as in the frame)."""
    return (json.dumps(data, indent=2) + "\n").encode()


def read_contract(path: Path, block: str) -> dict[str, OutputSchema]:
    """The outputs of the schema file at `path` that `block`'s header names; SchemaFileError
    naming the block and the file when it is missing or not a contract."""
    where = f"--schema-file of block `{block}`"
    pin = f"write it with `blockbook schema pin RUN {block} -o {path}`"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SchemaFileError(f"{where}: no file {path}", hint=pin) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SchemaFileError(f"{where}: cannot read {path}: {exc}", hint=pin) from None
    except json.JSONDecodeError as exc:
        raise SchemaFileError(
            f"{where}: {path} is not JSON (line {exc.lineno}: {exc.msg})", hint=pin
        ) from None
    try:
        outputs = data["outputs"]
        if not isinstance(outputs, dict) or not outputs:
            raise TypeError("`outputs` must map output names to schemas")
        parsed = {str(name): _output_schema(schema) for name, schema in outputs.items()}
    except (KeyError, TypeError, ValueError) as exc:
        detail = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        raise SchemaFileError(
            f"{where}: {path} is not a schema contract ({detail})",
            hint=f'{pin}, or fix it: {{"outputs": {{NAME: {{"columns": {{COLUMN: DTYPE, '
            '...}, "min_rows": N, "max_rows": N}}}',
        ) from None
    return parsed


def _output_schema(data: Any) -> OutputSchema:
    if not isinstance(data, dict):
        raise TypeError("each output's schema must be an object")
    columns = data["columns"]
    if isinstance(columns, dict):
        columns = list(columns.items())
    if not isinstance(columns, list) or not all(
        isinstance(c, list | tuple) and len(c) == 2 and all(isinstance(p, str) for p in c)
        for c in columns
    ):
        raise TypeError('`columns` must map column names to dtypes ({"km": "int64", ...})')
    bounds = [data.get("min_rows"), data.get("max_rows")]
    if not all(b is None or (isinstance(b, int) and b >= 0) for b in bounds):
        raise TypeError("`min_rows` and `max_rows` must be whole numbers >= 0, or null")
    return OutputSchema(tuple((n, t) for n, t in columns), bounds[0], bounds[1])
