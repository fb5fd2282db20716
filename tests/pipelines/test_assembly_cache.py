"""The assembly cache: one assembled pipeline per folder, kept until a file of it changes."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from pipelines.assembly import cache as cache_module
from pipelines.assembly.cache import AssemblyCache
from pipelines.assembly.pipeline import Pipeline
from tests.helpers.notebooks import make_pipeline, write_notebook


def test_unchanged_files_give_the_same_pipeline(tmp_path: Path) -> None:
    folder = make_pipeline(tmp_path, {"a.ipynb": ["%%block load\ndf = 1"]})
    cache = AssemblyCache()
    first = cache.get(folder)
    assert tuple(first.blocks) == ("load",)
    assert cache.get(folder) is first
    assert cache.get(folder / ".." / folder.name) is first, "one entry per folder, however named"


def test_an_edited_notebook_is_assembled_again(tmp_path: Path) -> None:
    folder = make_pipeline(tmp_path, {"a.ipynb": ["%%block load\ndf = 1"]})
    cache = AssemblyCache()
    first = cache.get(folder)

    write_notebook(folder / "a.ipynb", ["%%block load\ndf = 1", "%%block use\nn = df + 1"])
    second = cache.get(folder)

    assert second is not first
    assert tuple(second.blocks) == ("load", "use")
    assert cache.get(folder) is second


def test_added_and_removed_files_count_as_changes(tmp_path: Path) -> None:
    folder = make_pipeline(tmp_path, {"a.ipynb": ["%%block load\ndf = 1"]})
    cache = AssemblyCache()
    first = cache.get(folder)

    (folder / "pipeline.toml").write_text("[params]\nlimit = 3\n", encoding="utf-8")
    with_params = cache.get(folder)
    assert with_params is not first
    assert with_params.config.params == {"limit": 3}

    write_notebook(folder / "b.ipynb", ["%%block more\nm = df"])
    with_b = cache.get(folder)
    assert set(with_b.blocks) == {"load", "more"}

    (folder / "b.ipynb").unlink()
    assert set(cache.get(folder).blocks) == {"load"}


def test_folders_are_kept_apart(tmp_path: Path) -> None:
    one = make_pipeline(tmp_path, {"a.ipynb": ["%%block load\ndf = 1"]}, name="one")
    two = make_pipeline(tmp_path, {"a.ipynb": ["%%block other\nx = 1"]}, name="two")
    cache = AssemblyCache()
    assert tuple(cache.get(one).blocks) == ("load",)
    assert tuple(cache.get(two).blocks) == ("other",)
    first = cache.get(one)
    write_notebook(two / "a.ipynb", ["%%block other\nx = 1", "%%block next\ny = x"])
    assert cache.get(one) is first, "a change in another folder keeps this one"
    assert tuple(cache.get(two).blocks) == ("other", "next")


def test_threads_asking_at_once_share_one_assembly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = make_pipeline(tmp_path, {"a.ipynb": ["%%block load\ndf = 1"]})
    assembled: list[Path] = []
    real_assemble = cache_module.assemble

    def slow_assemble(path: Path) -> Pipeline:
        assembled.append(path)
        time.sleep(0.05)  # long enough for every thread to ask while this one assembles
        return real_assemble(path)

    monkeypatch.setattr(cache_module, "assemble", slow_assemble)
    cache = AssemblyCache()
    start = threading.Barrier(8)
    results: list[Pipeline] = []

    def ask() -> None:
        start.wait()
        results.append(cache.get(folder))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(assembled) == 1
    assert len(results) == 8
    assert all(result is results[0] for result in results)
