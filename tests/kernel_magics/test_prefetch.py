"""A kernel whose next block waits for another notebook imports what loading its inputs needs
(pandas, pyarrow) while it waits, without binding anything in the user's namespace; a module
that fails to import while prefetching is only logged, at debug level."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from kernel_magics.prefetch import FRAME_MODULES, modules_for, prefetch
from pipelines.rundir.artifacts import OutputManifest
from pipelines.status import RunStatus
from pipelines.store.run_store import DATABASE_URL_ENV, RunStore
from tests.helpers.notebooks import make_pipeline, nb
from tests.helpers.runs import RunHelper, load_output, statuses


def stored(format: str, type_name: str) -> OutputManifest:
    return OutputManifest("b", "x", format, type_name, 1, "0" * 64, "2026-01-01T00:00:00+00:00")


def test_what_each_input_needs() -> None:
    assert modules_for([]) == ()
    assert modules_for([None]) == FRAME_MODULES  # not stored yet: most likely a frame
    assert modules_for([stored("parquet", "pandas.core.frame.DataFrame")]) == FRAME_MODULES
    assert modules_for([stored("pickle", "int"), stored("pickle", "dict")]) == ()
    assert modules_for([stored("pickle", "numpy.ndarray")]) == ("numpy",)
    # A user's own module is never imported ahead: its import may do anything.
    assert modules_for([stored("pickle", "mylib.models.Model")]) == ()


def test_a_failed_prefetch_is_ignored_and_logged_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    missing = "blockbook_no_such_module_for_prefetch"
    with caplog.at_level(logging.DEBUG, logger="kernel_magics.prefetch"):
        imported = prefetch([missing, "json"])
    assert missing not in imported
    assert missing not in sys.modules
    [record] = [r for r in caplog.records if missing in r.getMessage()]
    assert record.levelno == logging.DEBUG


PRODUCE = """%%block produce --out count producer_had_pandas
import sys
import time
from pathlib import Path

from pipelines.rundir.state import read_state

producer_had_pandas = "pandas" in sys.modules
# Finish only once `consume`, in the other kernel, waits for this block (deadline: a loaded
# machine), so that kernel surely waits.
_deadline = time.monotonic() + 600
_runs = Path(project, ".blockbook", "runs")
while time.monotonic() < _deadline:
    _states = [read_state(d, "consume") for d in _runs.iterdir()]
    if any(s is not None and s.waiting_for for s in _states):
        break
    time.sleep(0.05)
count = 3
"""

SNAPSHOT = """%%block snapshot
_names_before = set(globals())
"""

CONSUME = """%%block consume --out report
import sys

report = {
    "prefetched": [m for m in ("pandas", "pyarrow.parquet") if m in sys.modules],
    "added": sorted(n for n in set(globals()) - _names_before if not n.startswith("_")),
    "count": count,
}
"""


def test_a_waiting_kernel_has_pandas_before_its_block_runs_and_no_new_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    (tmp_path / "blockbook.toml").write_text("", encoding="utf-8")
    folder = make_pipeline(
        tmp_path,
        {"a.ipynb": nb(PRODUCE), "b.ipynb": nb(SNAPSHOT, CONSUME)},
        f"[params]\nproject = {str(tmp_path)!r}\n",
    )
    with RunStore.open(tmp_path) as store:
        result = RunHelper(tmp_path, store)(folder)
    assert result.status is RunStatus.SUCCESS, statuses(result)
    # The producer's kernel never waited: kernel_magics alone does not import pandas.
    assert load_output(result, "produce", "producer_had_pandas") is False
    report = load_output(result, "consume", "report")
    # `count` is a pickled int, whose load imports nothing: pandas came from the prefetch.
    assert report["prefetched"] == ["pandas", "pyarrow.parquet"]
    assert report["added"] == ["count", "sys"]
    assert report["count"] == 3
