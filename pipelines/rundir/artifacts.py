"""Block outputs on disk: DataFrames as Parquet, everything else pickled, manifest last.

Layout under an artifact root (a run's folder, or the interactive `dev` area):

    ROOT/artifacts/BLOCK/NAME.parquet | NAME.pickle
    ROOT/artifacts/BLOCK/NAME.json          <- manifest, written after the data

A reader trusts only outputs whose manifest exists, so a crash mid-write leaves nothing half
visible. Both files are written to a temporary name and renamed into place; the temporary files a
killed writer leaves behind (`.NAME.XXXX.tmp`, possibly gigabytes) are removed by
`remove_leftover_writes` once nothing can still be writing them.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import pickle
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines.errors import BlockbookError
from pipelines.rundir.state import TEMPORARY_SUFFIX, write_bytes_atomic, write_json_atomic

logger = logging.getLogger(__name__)

ARTIFACT_DIR = "artifacts"
PARQUET = "parquet"
PICKLE = "pickle"


@dataclass(frozen=True, slots=True)
class OutputManifest:
    block: str
    name: str
    format: str
    type: str
    bytes: int
    sha256: str
    created_at: str
    rows: int | None = None
    columns: tuple[tuple[str, str], ...] | None = None
    """(column name, dtype) pairs for frames."""

    @property
    def file_name(self) -> str:
        return f"{self.name}.{self.format}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["columns"] = None if self.columns is None else [list(c) for c in self.columns]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OutputManifest:
        columns = data.get("columns")
        return cls(
            **{**data, "columns": None if columns is None else tuple(tuple(c) for c in columns)}
        )


class UnstorableOutput(BlockbookError):
    """A value another block reads cannot be written to disk."""

    def __init__(self, block: str, name: str, readers: Sequence[str], reason: str) -> None:
        readers_text = ", ".join(f"`{r}`" for r in readers) or "a later block"
        super().__init__(
            f"block `{block}` cannot store `{name}`, which {readers_text} reads: {reason}",
            hint=(
                f"turn `{name}` into a DataFrame or a picklable value, or rename it `_{name}` "
                f"and rebuild it in {readers_text}"
            ),
        )
        self.block = block
        self.name = name
        self.readers = tuple(readers)
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.block, self.name, self.readers, self.reason))


class ArtifactStore:
    """The stored outputs under one root (a run folder or the dev area)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def folder(self, block: str) -> Path:
        return self.root / ARTIFACT_DIR / block

    def save(
        self, block: str, name: str, value: Any, readers: Sequence[str] = ()
    ) -> OutputManifest:
        payload, fmt, rows, columns = _serialize(block, name, value, readers)
        folder = self.folder(block)
        write_bytes_atomic(folder / f"{name}.{fmt}", payload)
        manifest = OutputManifest(
            block=block,
            name=name,
            format=fmt,
            type=_type_name(value),
            bytes=len(payload),
            sha256=hashlib.sha256(payload).hexdigest(),
            created_at=datetime.now(UTC).isoformat(),
            rows=rows,
            columns=columns,
        )
        write_json_atomic(folder / f"{name}.json", manifest.to_json())
        return manifest

    def names(self, block: str) -> list[str]:
        """The outputs of `block` stored here (those with a manifest: complete), sorted."""
        return sorted(path.stem for path in self.folder(block).glob("*.json"))

    def manifest(self, block: str, name: str) -> OutputManifest | None:
        path = self.folder(block) / f"{name}.json"
        try:
            return OutputManifest.from_json(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None

    def load(self, block: str, name: str) -> Any:
        manifest = self.manifest(block, name)
        if manifest is None:
            raise BlockbookError(
                f"no stored output `{name}` of block `{block}` under {self.root}",
                hint=f"run block `{block}` first",
            )
        data = (self.folder(block) / manifest.file_name).read_bytes()
        if manifest.format == PARQUET:
            import pandas as pd

            return pd.read_parquet(io.BytesIO(data))
        return pickle.loads(data)

    def link_block(self, source: ArtifactStore, block: str) -> None:
        """Make `block`'s stored outputs from `source` available here (for resumed runs)."""
        origin = source.folder(block)
        if not origin.is_dir():
            return
        target = self.folder(block)
        target.mkdir(parents=True, exist_ok=True)
        # Data first, manifests last, so readers never see a manifest without its data.
        files = sorted(origin.iterdir(), key=lambda p: p.suffix == ".json")
        for file in files:
            destination = target / file.name
            if destination.exists():
                continue
            try:
                os.link(file, destination)
            except OSError:
                write_bytes_atomic(destination, file.read_bytes())


def remove_leftover_writes(folder: Path) -> list[Path]:
    """Delete the temporary files of atomic writes cut short (kill -9, a dead kernel) anywhere
    under `folder`, a run folder; returns what was removed.

    Call it only when no process can still be writing there: the run ended, or its runner is
    known to be gone (a later run or a resume finds the run crashed)."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for path in folder.rglob(f".*{TEMPORARY_SUFFIX}"):
        if not path.is_file():
            continue
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            continue  # its writer finished (renamed it) or another sweep got it first
        logger.info("removed %s (%d bytes), left by a write that was cut short", path, size)
        removed.append(path)
    return removed


def summarize(value: Any) -> dict[str, Any]:
    """A short description of a value that is not stored: its type and size."""
    summary: dict[str, Any] = {"type": _type_name(value)}
    shape = getattr(value, "shape", None)
    if isinstance(shape, tuple) and all(isinstance(n, int) for n in shape):
        summary["shape"] = list(shape)
    elif isinstance(value, list | tuple | dict | set | frozenset | str | bytes):
        summary["length"] = len(value)
    if _is_frame(value):
        summary["columns"] = [str(c) for c in list(value.columns)[:8]]
    return summary


def _serialize(
    block: str, name: str, value: Any, readers: Sequence[str]
) -> tuple[bytes, str, int | None, tuple[tuple[str, str], ...] | None]:
    if _is_frame(value):
        columns = tuple((str(c), str(t)) for c, t in value.dtypes.items())
        try:
            buffer = io.BytesIO()
            value.to_parquet(buffer, engine="pyarrow")
            return buffer.getvalue(), PARQUET, len(value), columns
        except Exception as exc:
            # e.g. mixed-type object columns: pickling keeps the frame exactly as it was.
            logger.info("storing %s.%s with pickle: Parquet refused it (%s)", block, name, exc)
        payload = _pickle(block, name, value, readers)
        return payload, PICKLE, len(value), columns
    return _pickle(block, name, value, readers), PICKLE, None, None


def _pickle(block: str, name: str, value: Any, readers: Sequence[str]) -> bytes:
    try:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        raise UnstorableOutput(block, name, readers, f"{type(exc).__name__}: {exc}") from exc


def _is_frame(value: Any) -> bool:
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(value, pandas.DataFrame)


def _type_name(value: Any) -> str:
    kind = type(value)
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"
