"""Block outputs on disk: DataFrames as Parquet, everything else pickled, manifest last.

Layout under an artifact root (a run's folder, or the interactive `dev` area):

    ROOT/artifacts/BLOCK/NAME.parquet | NAME.pickle
    ROOT/artifacts/BLOCK/NAME.json          <- manifest, written after the data

A reader trusts only outputs whose manifest exists, so a crash mid-write leaves nothing half
visible. Both files are written to a temporary name and renamed into place; the temporary files a
killed writer leaves behind (`.NAME.XXXX.tmp`, possibly gigabytes) are removed by
`remove_leftover_writes` once nothing can still be writing them.

Data is streamed: a frame is written as Parquet straight into its temporary file (hashed as the
bytes go by) and read back by path, memory-mapped, so no whole file is ever held in memory.

In object storage (`pipelines.rundir.location.RemoteFolder`) the data object is streamed to the
store through fsspec (hashed on the way) and appears only when its upload completes; an upload
cut short is discarded, never committed. The manifest is put last, as on disk.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines.errors import BlockbookError
from pipelines.rundir.location import RemoteFolder, RunFolder
from pipelines.rundir.state import TEMPORARY_SUFFIX, write_json_atomic

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

    def __init__(self, root: RunFolder) -> None:
        self.root = root

    def folder(self, block: str) -> RunFolder:
        return self.root / ARTIFACT_DIR / block

    def save(
        self, block: str, name: str, value: Any, readers: Sequence[str] = ()
    ) -> OutputManifest:
        folder = self.folder(block)
        folder.mkdir(parents=True, exist_ok=True)
        rows: int | None = None
        columns: tuple[tuple[str, str], ...] | None = None
        written: tuple[int, str] | None = None
        fmt = PICKLE
        if _is_frame(value):
            rows = len(value)
            columns = tuple((str(c), str(t)) for c, t in value.dtypes.items())
            try:
                written = _write(folder / f"{name}.{PARQUET}", _parquet_writer(value))
                fmt = PARQUET
            except Exception as exc:
                # e.g. mixed-type object columns: pickling keeps the frame exactly as it was.
                logger.info("storing %s.%s with pickle: Parquet refused it (%s)", block, name, exc)
        if written is None:
            written = _write(
                folder / f"{name}.{PICKLE}", _pickle_writer(block, name, value, readers)
            )
        size, digest = written
        manifest = OutputManifest(
            block=block,
            name=name,
            format=fmt,
            type=_type_name(value),
            bytes=size,
            sha256=digest,
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
        path = self.folder(block) / manifest.file_name
        if isinstance(path, RemoteFolder):
            return _load_remote(path, manifest)
        if manifest.format == PARQUET:
            import pandas as pd

            # By path and memory-mapped: pyarrow decodes straight from the page cache.
            return pd.read_parquet(path, engine="pyarrow", memory_map=True)
        with path.open("rb") as stream:
            return pickle.load(stream)

    def link_block(self, source: ArtifactStore, block: str) -> None:
        """Make `block`'s stored outputs from `source` available here (for resumed runs)."""
        origin = source.folder(block)
        if not origin.is_dir():
            return
        target = self.folder(block)
        if isinstance(origin, RemoteFolder) or isinstance(target, RemoteFolder):
            _copy_block(origin, target)
            return
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
                _write_atomic(destination, _copy_writer(file))


def remove_leftover_writes(folder: RunFolder) -> list[Path]:
    """Delete the temporary files of atomic writes cut short (kill -9, a dead kernel) anywhere
    under `folder`, a run folder; returns what was removed.

    Call it only when no process can still be writing there: the run ended, or its runner is
    known to be gone (a later run or a resume finds the run crashed)."""
    removed: list[Path] = []
    if isinstance(folder, RemoteFolder) or not folder.is_dir():
        # Nothing to remove in object storage: an upload cut short never became an object.
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


class _WriteOnlyStream:
    """What pyarrow and pickle ask of a file they write to, for the hashing writers below:
    forward-only, write-only, its position the bytes written so far."""

    size: int

    def tell(self) -> int:
        return self.size

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return False


class _HashingWriter(_WriteOnlyStream):
    """A binary file over a file descriptor that counts what is written and hashes it (sha256).

    Writes go to the descriptor in chunks of `_CHUNK`; a thread reads each chunk back (from the
    page cache) and hashes it, so hashing runs beside the Parquet encoding, on another core,
    instead of in between its writes, and nothing but one chunk is ever held in memory."""

    def __init__(self, descriptor: int) -> None:
        self._descriptor = descriptor
        self._pending = bytearray()
        self._hash = hashlib.sha256()
        self._written = 0  # bytes handed to the descriptor, which the hasher may read
        self._ended = False
        self._error: BaseException | None = None
        self._ready = threading.Condition()
        self._hasher = threading.Thread(target=self._hash_written, name="sha256", daemon=True)
        self._hasher.start()
        self.size = 0
        self.closed = False

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._pending += view
        self.size += view.nbytes
        if len(self._pending) >= _CHUNK:
            self._drain()
        return view.nbytes

    def flush(self) -> None:
        pass  # written on in chunks; `finish` writes the rest

    def close(self) -> None:
        # pyarrow closes the file it wrote to; the descriptor is closed by `_write_atomic`.
        self.closed = True

    def finish(self) -> str:
        """Write what is left and return the sha256 of everything written."""
        self._drain()
        self.stop()
        if self._error is not None:
            raise self._error
        return self._hash.hexdigest()

    def stop(self) -> None:
        """End the hashing thread (idempotent); call it before closing the descriptor."""
        with self._ready:
            self._ended = True
            self._ready.notify()
        self._hasher.join()

    def _drain(self) -> None:
        view = memoryview(self._pending)
        while view:
            view = view[os.write(self._descriptor, view) :]
        view.release()
        with self._ready:
            self._written += len(self._pending)
            self._ready.notify()
        self._pending = bytearray()

    def _hash_written(self) -> None:
        hashed = 0
        try:
            while True:
                with self._ready:
                    while hashed == self._written and not self._ended:
                        self._ready.wait()
                    written, ended = self._written, self._ended
                while hashed < written:
                    chunk = os.pread(self._descriptor, min(_CHUNK, written - hashed), hashed)
                    if not chunk:
                        raise OSError(f"could not read back byte {hashed} to hash it")
                    self._hash.update(chunk)
                    hashed += len(chunk)
                if ended:
                    return
        except BaseException as exc:  # handed to the writer, which raises it in `finish`
            self._error = exc


_CHUNK = 1 << 20
_Writer = Callable[[Any], None]
"""Writes a value's bytes into a stream: a `_HashingWriter` locally, a `_HashingUpload` remote."""


def _write_atomic(path: Path, write: _Writer) -> tuple[int, str]:
    """Stream `write`'s bytes into a temporary file beside `path`, hashing them on the way,
    then rename it over `path`; returns (size, sha256). A failure removes the temporary file."""
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX
    )
    try:
        writer = _HashingWriter(descriptor)
        try:
            write(writer)
            digest = writer.finish()
        finally:
            writer.stop()
            os.close(descriptor)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return writer.size, digest


def _write(path: RunFolder, write: _Writer) -> tuple[int, str]:
    if isinstance(path, RemoteFolder):
        return _write_remote(path, write)
    return _write_atomic(path, write)


class _HashingUpload(_WriteOnlyStream):
    """A binary stream that hashes (sha256) and counts what goes through it to an fsspec file:
    the network is slower than hashing, so it is done in line, unlike `_HashingWriter`."""

    def __init__(self, target: Any) -> None:
        self._target = target
        self._hash = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._hash.update(view)
        self._target.write(view)
        self.size += view.nbytes
        return view.nbytes

    def flush(self) -> None:
        pass  # the fsspec file uploads its blocks as they fill; `close` commits the rest

    def close(self) -> None:
        self.closed = True  # pyarrow closes what it wrote to; the upload is committed apart

    def digest(self) -> str:
        return self._hash.hexdigest()


def _write_remote(path: RemoteFolder, write: _Writer) -> tuple[int, str]:
    """Stream `write`'s bytes to the object `path`, hashing them on the way; the object appears
    when the upload completes (`close`), and a failure discards the upload instead."""
    target: Any = path.open("wb")
    stream = _HashingUpload(target)
    try:
        write(stream)
    except BaseException:
        discard = getattr(target, "discard", None)
        if discard is not None:
            discard()  # nothing uploaded is committed (a multipart upload is aborted)
            target.closed = True  # else its finalizer would try to upload the discarded buffer
        else:  # a filesystem without discard: remove what its close would leave
            target.close()
            path.unlink(missing_ok=True)
        raise
    target.close()
    return stream.size, stream.digest()


def _load_remote(path: RemoteFolder, manifest: OutputManifest) -> Any:
    with path.open("rb") as stream:
        if manifest.format == PARQUET:
            import pandas as pd

            return pd.read_parquet(stream, engine="pyarrow")
        return pickle.load(stream)


def _copy_block(origin: RunFolder, target: RunFolder) -> None:
    """Copy a block's stored outputs between run folders where one is remote: data first,
    manifests last."""
    listed: list[RunFolder] = list(origin.iterdir())
    files = sorted(listed, key=lambda p: p.suffix == ".json")
    for file in files:
        if file.name.startswith("."):
            continue  # a local temporary file of a write in progress
        destination = target / file.name
        if destination.exists():
            continue
        if isinstance(file, RemoteFolder) and isinstance(destination, RemoteFolder):
            file.copy_to(destination)
        else:
            with file.open("rb") as data:
                _write(destination, _copy_writer_stream(data))


def _copy_writer_stream(data: Any) -> _Writer:
    def write(stream: _HashingWriter) -> None:
        shutil.copyfileobj(data, stream, _CHUNK)

    return write


def _parquet_writer(frame: Any) -> _Writer:
    def write(stream: _HashingWriter) -> None:
        frame.to_parquet(stream, engine="pyarrow")

    return write


def _pickle_writer(block: str, name: str, value: Any, readers: Sequence[str]) -> _Writer:
    def write(stream: _HashingWriter) -> None:
        try:
            pickle.dump(value, stream, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise UnstorableOutput(block, name, readers, f"{type(exc).__name__}: {exc}") from exc

    return write


def _copy_writer(source: Path) -> _Writer:
    def write(stream: _HashingWriter) -> None:
        with source.open("rb") as data:
            shutil.copyfileobj(data, stream, _CHUNK)

    return write


def _is_frame(value: Any) -> bool:
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(value, pandas.DataFrame)


def _type_name(value: Any) -> str:
    kind = type(value)
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"
