"""The artifact store on its own: streamed writes whose manifest matches the file on disk,
round trips, the pickle fallback, and no temporary file left by a write that failed."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from pipelines.rundir.artifacts import ArtifactStore, UnstorableOutput


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stored_files(store: ArtifactStore, block: str) -> list[str]:
    return sorted(path.name for path in store.folder(block).iterdir())


def test_a_frame_round_trips_and_its_manifest_describes_the_file(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    frame = pd.DataFrame(
        {
            "x": np.arange(50_000, dtype="float64"),
            "city": ["Oslo", "Lima"] * 25_000,
            "riders": pd.array([1, None] * 25_000, dtype="Int64"),
        }
    )

    manifest = store.save("produce", "trips", frame, ["consume"])

    data = store.folder("produce") / "trips.parquet"
    assert manifest.format == "parquet"
    assert manifest.bytes == data.stat().st_size
    assert manifest.sha256 == sha256_of(data)
    assert manifest.rows == 50_000
    assert store.manifest("produce", "trips") == manifest
    assert_frame_equal(store.load("produce", "trips"), frame)
    assert stored_files(store, "produce") == ["trips.json", "trips.parquet"]


def test_a_value_is_pickled_by_stream_and_its_hash_matches(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    value = {"blob": b"x" * 3_000_000, "tags": {"a", "b"}, "limits": (1, 2.5)}

    manifest = store.save("produce", "settings", value)

    data = store.folder("produce") / "settings.pickle"
    assert manifest.format == "pickle"
    assert manifest.bytes == data.stat().st_size
    assert manifest.sha256 == sha256_of(data)
    assert store.load("produce", "settings") == value


def test_a_frame_parquet_refuses_is_pickled_without_leftovers(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    mixed = pd.DataFrame({"value": [1, "a", 2.5]})

    manifest = store.save("produce", "mixed", mixed)

    assert manifest.format == "pickle"
    assert manifest.sha256 == sha256_of(store.folder("produce") / "mixed.pickle")
    assert_frame_equal(store.load("produce", "mixed"), mixed)
    assert stored_files(store, "produce") == ["mixed.json", "mixed.pickle"]


def test_an_unpicklable_value_fails_and_leaves_no_file(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)

    with pytest.raises(UnstorableOutput, match="`reader` reads"):
        store.save("produce", "handle", lambda: 1, ["reader"])

    assert stored_files(store, "produce") == []
    assert store.names("produce") == []


def test_a_write_that_fails_halfway_leaves_no_file_and_no_thread(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    threads = threading.active_count()

    with pytest.raises(UnstorableOutput):
        # Megabytes are written (and hashed) before pickle reaches the function.
        store.save("produce", "half", [b"x" * 3_000_000, lambda: 1], ["reader"])

    assert stored_files(store, "produce") == []
    assert threading.active_count() == threads


def test_saving_again_replaces_the_data_and_the_manifest(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    store.save("produce", "n", pd.DataFrame({"a": [1, 2, 3]}))

    manifest = store.save("produce", "n", pd.DataFrame({"a": [4]}))

    assert manifest.rows == 1
    assert manifest.sha256 == sha256_of(store.folder("produce") / "n.parquet")
    assert store.load("produce", "n")["a"].tolist() == [4]


def test_linked_outputs_keep_their_hashes(tmp_path: Path) -> None:
    earlier = ArtifactStore(tmp_path / "earlier")
    manifest = earlier.save("produce", "trips", pd.DataFrame({"km": [1.5, 2.0]}))
    resumed = ArtifactStore(tmp_path / "resumed")

    resumed.link_block(earlier, "produce")

    assert resumed.manifest("produce", "trips") == manifest
    assert sha256_of(resumed.folder("produce") / "trips.parquet") == manifest.sha256
    assert_frame_equal(resumed.load("produce", "trips"), pd.DataFrame({"km": [1.5, 2.0]}))


def test_outputs_copied_where_they_cannot_be_linked_keep_their_hashes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    earlier = ArtifactStore(tmp_path / "earlier")
    manifest = earlier.save("produce", "settings", {"unit": "km"})
    resumed = ArtifactStore(tmp_path / "resumed")

    def no_links(source: object, destination: object) -> None:
        raise OSError("cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    resumed.link_block(earlier, "produce")

    assert resumed.manifest("produce", "settings") == manifest
    assert sha256_of(resumed.folder("produce") / "settings.pickle") == manifest.sha256
    assert stored_files(resumed, "produce") == ["settings.json", "settings.pickle"]
