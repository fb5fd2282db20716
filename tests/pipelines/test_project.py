"""The project: finding its root, listing its pipelines, resolving a PIPELINE argument."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.assembly.project import (
    PipelineRef,
    find_root,
    list_pipelines,
    notebook_files,
    resolve_pipeline,
)
from pipelines.errors import ProjectError
from tests.helpers.notebooks import Markdown, make_pipeline, write_notebook

BLOCK = ["%%block step\nx = 1"]


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    """A folder whose ancestors hold no blockbook.toml or .git, so find_root's fallback shows."""
    ancestors = [tmp_path, *tmp_path.parents]
    if any((a / "blockbook.toml").is_file() or (a / ".git").exists() for a in ancestors):
        pytest.skip("the temporary folder lies inside a project; find_root can't be isolated")
    return tmp_path


# ---- find_root -------------------------------------------------------------------------------


def test_find_root_prefers_blockbook_toml_over_nearer_git(bare: Path) -> None:
    (bare / "blockbook.toml").write_text("")
    (bare / "repo" / ".git").mkdir(parents=True)
    start = bare / "repo" / "pipelines" / "taxi"
    start.mkdir(parents=True)
    assert find_root(start) == bare


def test_find_root_nearest_blockbook_toml(bare: Path) -> None:
    (bare / "blockbook.toml").write_text("")
    (bare / "inner").mkdir()
    (bare / "inner" / "blockbook.toml").write_text("")
    assert find_root(bare / "inner") == bare / "inner"


@pytest.mark.parametrize("git_kind", ["dir", "file"], ids=["git-dir", "git-worktree-file"])
def test_find_root_falls_back_to_git(bare: Path, git_kind: str) -> None:
    repo = bare / "repo"
    repo.mkdir()
    if git_kind == "dir":
        (repo / ".git").mkdir()
    else:
        (repo / ".git").write_text("gitdir: /elsewhere\n")
    (repo / "a" / "b").mkdir(parents=True)
    assert find_root(repo / "a" / "b") == repo


def test_find_root_blockbook_toml_must_be_a_file(bare: Path) -> None:
    (bare / "blockbook.toml").mkdir()
    (bare / "sub").mkdir()
    assert find_root(bare / "sub") == bare / "sub"


def test_find_root_falls_back_to_start(bare: Path) -> None:
    (bare / "plain").mkdir()
    assert find_root(bare / "plain") == bare / "plain"


def test_find_root_defaults_to_cwd(bare: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (bare / "blockbook.toml").write_text("")
    (bare / "work").mkdir()
    monkeypatch.chdir(bare / "work")
    assert find_root() == bare
    assert find_root(Path("..") / "work") == bare, "relative starts are resolved"


# ---- list_pipelines --------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    make_pipeline(root, {"load.ipynb": BLOCK, "notes.ipynb": ["1 + 1"]}, name="taxi")
    make_pipeline(root / "nested" / "deeper", {"a.ipynb": BLOCK}, name="weather")
    make_pipeline(root, {}, pipeline_toml='description = "empty"\n', name="configured")
    make_pipeline(
        root, {"scratch.ipynb": ["x = 1", Markdown("%%block looks_like_a_block")]}, name="scratch"
    )
    make_pipeline(root, {"a.ipynb": ["# %%block commented\nx = 1"]}, name="commented")
    make_pipeline(root / ".blockbook" / "runs" / "r1", {"a.ipynb": BLOCK}, name="run_copy")
    make_pipeline(root / "taxi", {"load-checkpoint.ipynb": BLOCK}, name=".ipynb_checkpoints")
    make_pipeline(root, {"a.ipynb": BLOCK}, name=".hidden")
    make_pipeline(root / "node_modules", {"a.ipynb": BLOCK}, name="pkg")
    make_pipeline(root / "__pycache__", {"a.ipynb": BLOCK}, name="cached")
    venv = make_pipeline(root, {"a.ipynb": BLOCK}, name="env")
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    return root


def test_list_pipelines(project: Path) -> None:
    assert list_pipelines(project) == [
        PipelineRef("configured", project / "configured"),
        PipelineRef("weather", project / "nested" / "deeper" / "weather"),
        PipelineRef("taxi", project / "taxi"),
    ]


def test_list_pipelines_root_itself(tmp_path: Path) -> None:
    write_notebook(tmp_path / "a.ipynb", BLOCK)
    assert list_pipelines(tmp_path) == [PipelineRef(tmp_path.name, tmp_path)]


def test_list_pipelines_lists_broken_notebook_mentioning_blocks(tmp_path: Path) -> None:
    """So that `validate` can report it, rather than the pipeline silently disappearing."""
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "a.ipynb").write_text('{"cells": [{"source": "%%block a\n', encoding="utf-8")
    assert list_pipelines(tmp_path) == [PipelineRef("broken", folder)]


@pytest.mark.parametrize(
    ("content", "listed"),
    [
        pytest.param(b"\xff\xfe%%block a", False, id="not-utf8"),
        pytest.param(b'{"cells": "%%block a"}', True, id="cells-a-string"),
        pytest.param(b'{"cells": ["%%block a"]}', False, id="cells-not-objects"),
        pytest.param(b'["%%block a"]', True, id="json-array"),
        pytest.param(b"[" * 100_000 + b'"%%block a"', True, id="deeply-nested"),
        pytest.param(
            b'{"cells": [{"cell_type": "markdown", "source": "%%block a"}]}',
            False,
            id="markdown-only",
        ),
    ],
)
def test_list_pipelines_survives_junk(tmp_path: Path, content: bytes, listed: bool) -> None:
    folder = tmp_path / "junk"
    folder.mkdir()
    (folder / "a.ipynb").write_bytes(content)
    assert list_pipelines(tmp_path) == ([PipelineRef("junk", folder)] if listed else [])


def test_notebook_files_sorted_and_direct_children_only(tmp_path: Path) -> None:
    for name in ["b.ipynb", "a.ipynb", "sub/c.ipynb"]:
        write_notebook(tmp_path / name, BLOCK)
    (tmp_path / "folder.ipynb").mkdir()
    (tmp_path / "notes.txt").write_text("")
    assert notebook_files(tmp_path) == [tmp_path / "a.ipynb", tmp_path / "b.ipynb"]


# ---- resolve_pipeline ------------------------------------------------------------------------


def test_resolve_by_path(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_pipeline(str(project / "taxi"), project) == PipelineRef("taxi", project / "taxi")
    monkeypatch.chdir(project / "nested")
    assert resolve_pipeline("deeper/weather", project) == PipelineRef(
        "weather", project / "nested" / "deeper" / "weather"
    )


def test_resolve_any_folder_path_even_outside_the_project(tmp_path: Path, project: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert resolve_pipeline(str(elsewhere), project) == PipelineRef("elsewhere", elsewhere)


def test_resolve_by_name(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project.parent)  # so `weather` is not also a path from here
    assert resolve_pipeline("weather", project) == PipelineRef(
        "weather", project / "nested" / "deeper" / "weather"
    )


def test_resolve_unknown_name_did_you_mean(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project.parent)
    with pytest.raises(ProjectError) as caught:
        resolve_pipeline("taxii", project)
    assert caught.value.message == f"no pipeline folder or pipeline named `taxii` under {project}"
    assert caught.value.hint.startswith("did you mean `taxi`? ")
    assert "pipelines here: configured, weather, taxi" in caught.value.hint


def test_resolve_unknown_name_without_guess(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ProjectError) as caught:
        resolve_pipeline("zzz", tmp_path)
    assert "did you mean" not in caught.value.hint
    assert "none found" in caught.value.hint


def test_resolve_ambiguous_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_pipeline(tmp_path / "one", {"a.ipynb": BLOCK}, name="etl")
    make_pipeline(tmp_path / "two", {"a.ipynb": BLOCK}, name="etl")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ProjectError) as caught:
        resolve_pipeline("etl", tmp_path)
    assert "several pipelines are named `etl`: one/etl, two/etl" in caught.value.message
    assert "folder path" in caught.value.hint
