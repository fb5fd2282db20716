"""`blockbook list` at a repository root skips ignored and excluded folders (issue 11, item 12)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pipelines.assembly.config import load_project_config
from pipelines.assembly.project import list_pipelines
from tests.helpers.notebooks import make_pipeline, nb

CELLS = {"a.ipynb": nb("%%block a\nx = 1")}


def names(root: Path) -> list[str]:
    return [ref.folder.relative_to(root).as_posix() for ref in list_pipelines(root)]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    make_pipeline(root, CELLS, name="etl")
    make_pipeline(root / "tests" / "fixtures", CELLS, name="broken")
    make_pipeline(root / "build", CELLS, name="copied")
    make_pipeline(root / "archive", CELLS, name="old")
    return root


def test_exclude_globs_in_blockbook_toml(repo: Path) -> None:
    (repo / "blockbook.toml").write_text('exclude = ["tests/fixtures", "arch*"]\n')
    assert names(repo) == ["build/copied", "etl"]


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_gitignored_folders_are_skipped(repo: Path) -> None:
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / ".gitignore").write_text("build/\n/archive\n")
    assert names(repo) == ["etl", "tests/fixtures/broken"]


def test_without_git_the_root_gitignore_is_read_with_pathspec(repo: Path) -> None:
    pytest.importorskip("pathspec")
    (repo / ".gitignore").write_text("build/\n# comment\n/archive\n")
    assert names(repo) == ["etl", "tests/fixtures/broken"]


@pytest.mark.parametrize("pattern", ["/abs", "../up", ""])
def test_exclude_patterns_must_be_relative(tmp_path: Path, pattern: str) -> None:
    (tmp_path / "blockbook.toml").write_text(f'exclude = ["{pattern}"]\n')
    config, problems = load_project_config(tmp_path)
    assert config.exclude == ()
    assert [p.location.line for p in problems] == [1]
    assert "relative to the project root" in problems[0].message
