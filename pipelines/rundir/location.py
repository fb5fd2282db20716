"""Where a run folder lives: on this machine's disk (the default), or in object storage through
fsspec (`[artifacts] url = "s3://bucket/prefix"`, gs://, abfs://, ...), so Dask workers need no
shared filesystem.

A run folder is a `RunFolder`: a `pathlib.Path`, or a `RemoteFolder`, which offers the few
`Path` operations the run folder's readers and writers use (`/`, `read_text`, `write_bytes`,
`exists`, `glob`, `open`, ...) over an fsspec filesystem. Code that needs what only a local disk
gives (temporary files renamed into place, memory-mapped reads, hard links) asks
`isinstance(folder, RemoteFolder)` and keeps its local path as it was: local runs do not pay for
the remote case. A `file://` URL is a local path (an NFS mount), never fsspec.

Object stores make a single PUT visible whole or not at all, so a remote write needs no
temporary name: `write_bytes` is atomic there as a rename is on disk.

fsspec (and s3fs, gcsfs, adlfs) are imported only when a folder is remote: kernels of local
runs never load them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlparse

STORAGE_ENV = "BLOCKBOOK_ARTIFACTS"
"""How a kernel learns the fsspec options of a remote run folder: `{"url": ..., "options":
{...}}` as JSON, in its environment (never in a notebook or the plan: options may hold keys)."""
RUNS_PREFIX = "runs"
"""Run folders under an artifacts URL: URL/runs/RUN_ID/, as under .blockbook/ locally."""


@dataclass(frozen=True, slots=True)
class Storage:
    """An object-storage root for run folders and the fsspec options to reach it."""

    url: str
    """`s3://bucket/prefix`, without a trailing slash."""
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)
    """fsspec/s3fs keyword arguments (`endpoint_url`, `key`, `secret`, `client_kwargs`, ...),
    `${ENV}` references already expanded."""

    def run_folder(self, run_id: str) -> RunFolder:
        """`URL/runs/RUN_ID`: a RemoteFolder, or a Path for a `file://` URL."""
        return run_folder_at(f"{self.url}/{RUNS_PREFIX}/{run_id}", self)

    def to_env(self) -> str:
        return json.dumps({"url": self.url, "options": dict(self.options)})

    @classmethod
    def from_env(cls, text: str) -> Storage:
        data = json.loads(text)
        return cls(str(data["url"]).rstrip("/"), dict(data.get("options") or {}))


def is_remote_url(text: str) -> bool:
    """A URL fsspec must reach (`s3://...`); `file://` and plain paths are this machine's."""
    scheme = urlparse(text).scheme if "://" in text else ""
    return bool(scheme) and scheme != "file"


def local_path_of(url: str) -> Path:
    """The path a `file://` URL names (`file:///shared/nfs` -> /shared/nfs)."""
    parsed = urlparse(url)
    return Path(unquote(parsed.netloc + parsed.path) if parsed.netloc else unquote(parsed.path))


def run_folder_at(text: str | Path, storage: Storage | None = None) -> RunFolder:
    """The run folder a plan or a run record names: a Path, or a RemoteFolder for a URL. The
    fsspec options come from `storage`, else from the kernel's environment (`STORAGE_ENV`) when
    its URL is the same root, else none (the standard variables then apply: AWS_ENDPOINT_URL,
    AWS_ACCESS_KEY_ID, GOOGLE_APPLICATION_CREDENTIALS, ...)."""
    text = str(text)
    if not is_remote_url(text):
        return local_path_of(text) if text.startswith("file://") else Path(text)
    if storage is None or not _under(text, storage.url):
        storage = _storage_for(text)
    return RemoteFolder(text.rstrip("/"), storage)


def _under(url: str, root: str) -> bool:
    return url == root or url.startswith(root.rstrip("/") + "/")


_KNOWN: list[Storage] = []
"""Storages this process opened from configuration (the runner's), newest first."""


def remember(storage: Storage) -> None:
    """Let `run_folder_at` find `storage`'s options for the URLs under it in this process (the
    runner, which reads them from blockbook.toml; kernels read them from `STORAGE_ENV`)."""
    if storage not in _KNOWN:
        _KNOWN.insert(0, storage)


def _storage_for(url: str) -> Storage:
    for known in _KNOWN:
        if _under(url, known.url):
            return known
    from_env = os.environ.get(STORAGE_ENV)
    if from_env:
        storage = Storage.from_env(from_env)
        if _under(url, storage.url):
            return storage
    parsed = urlparse(url)
    return Storage(f"{parsed.scheme}://{parsed.netloc}")


class RemoteFolder:
    """A file or folder in object storage, with the `Path` operations run folders use."""

    __slots__ = ("storage", "url")

    def __init__(self, url: str, storage: Storage) -> None:
        self.url = url
        self.storage = storage

    # ---- names --------------------------------------------------------------------------

    def __truediv__(self, part: str | Path) -> RemoteFolder:
        return RemoteFolder(f"{self.url}/{str(part).strip('/')}", self.storage)

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"RemoteFolder({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemoteFolder) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    def __reduce__(self) -> tuple[Any, ...]:
        return (RemoteFolder, (self.url, self.storage))

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def stem(self) -> str:
        return Path(self.name).stem

    @property
    def suffix(self) -> str:
        return Path(self.name).suffix

    @property
    def parent(self) -> RemoteFolder:
        return RemoteFolder(self.url.rsplit("/", 1)[0], self.storage)

    # ---- the filesystem -----------------------------------------------------------------

    @property
    def fs(self) -> Any:
        return _filesystem(self.storage, urlparse(self.url).scheme)

    @property
    def path(self) -> str:
        """The path fsspec knows it by (`bucket/prefix/...`)."""
        return str(self.fs._strip_protocol(self.url))

    def exists(self) -> bool:
        return bool(self.fs.exists(self.path))

    def is_file(self) -> bool:
        return bool(self.fs.isfile(self.path))

    def is_dir(self) -> bool:
        # Object stores have no folders: one exists while something is stored under it.
        return bool(self.fs.isdir(self.path))

    def mkdir(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to make: a prefix exists once an object is stored under it."""

    def read_bytes(self) -> bytes:
        data: bytes = self.fs.cat_file(self.path)
        return data

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> int:
        """One PUT: visible whole or not at all."""
        self.fs.pipe_file(self.path, data)
        return len(data)

    def write_text(self, text: str, encoding: str = "utf-8") -> int:
        return self.write_bytes(text.encode(encoding))

    def open(self, mode: str = "rb") -> IO[bytes]:
        stream: IO[bytes] = self.fs.open(self.path, mode)
        return stream

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            self.fs.rm_file(self.path)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def iterdir(self) -> Iterator[RemoteFolder]:
        for entry in self.fs.ls(self.path, detail=False, refresh=True):
            yield self / str(entry).rsplit("/", 1)[-1]

    def glob(self, pattern: str) -> Iterator[RemoteFolder]:
        for entry in sorted(self.fs.glob(f"{self.path}/{pattern}")):
            yield self / str(entry)[len(self.path) + 1 :]

    def stamps(self) -> dict[str, Any]:
        """Each object directly under this folder -> what changes when it is rewritten (its
        ETag, else its modification time and size): how the runner notices new block states."""
        try:
            entries = self.fs.ls(self.path, detail=True, refresh=True)
        except FileNotFoundError:
            return {}
        stamps: dict[str, Any] = {}
        for entry in entries:
            if entry.get("type") == "directory":
                continue
            name = str(entry["name"]).rsplit("/", 1)[-1]
            stamps[name] = (
                entry.get("ETag") or entry.get("etag") or entry.get("mtime"),
                entry.get("LastModified") or entry.get("last_modified"),
                entry.get("size"),
            )
        return stamps

    def copy_to(self, target: RemoteFolder) -> None:
        """Copy this object to `target` inside the store (no bytes through this machine)."""
        self.fs.copy(self.path, target.path)


RunFolder = Path | RemoteFolder


def _filesystem(storage: Storage, scheme: str) -> Any:
    """The fsspec filesystem for a storage root; fsspec keeps one instance per protocol and
    options. Directory listings are never cached: other machines write the run folder."""
    import fsspec

    options = {"use_listings_cache": False, **storage.options}
    return fsspec.filesystem(scheme, **options)


def download(source: RemoteFolder, target: Path) -> None:
    """Copy one remote object to a local file (written whole, then renamed into place)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.download")
    source.fs.get_file(source.path, str(temporary))
    os.replace(temporary, target)


def upload(source: Path, target: RemoteFolder) -> None:
    """Copy one local file to the store; the object appears once the whole file is there."""
    target.fs.put_file(str(source), target.path)
