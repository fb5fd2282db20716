"""A run never modifies the user's source notebooks (every `run` in this suite checks it too;
this test puts notebooks with saved outputs and odd formatting through every kind of run)."""

from __future__ import annotations

import json

from pipelines.status import RunStatus
from tests.helpers.notebooks import nb
from tests.helpers.runs import source_hashes


def test_source_notebooks_are_byte_identical_after_runs(pipeline, run, tmp_path) -> None:
    flag = tmp_path / "flag"
    folder = pipeline(
        {
            "a.ipynb": nb("%%block one\nx = 1\nprint(x)", "scratch = 'not a block'"),
            "b.ipynb": nb(f"%%block two\ny = x + int(open({str(flag)!r}).read())"),
        }
    )
    # Hand-edit one notebook the way editors save them: outputs, counts, compact JSON.
    path = folder / "a.ipynb"
    data = json.loads(path.read_text())
    data["cells"][1]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["1\n"]}]
    data["cells"][1]["execution_count"] = 7
    path.write_text(json.dumps(data, separators=(",", ":")))
    before = source_hashes(folder)
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}

    failed = run(folder)
    flag.write_text("2")
    isolated = run(folder, isolate=True)
    resumed = run(folder, resume=failed.run_id)

    assert failed.status is RunStatus.FAILED
    assert isolated.status is RunStatus.SUCCESS
    assert resumed.status is RunStatus.SUCCESS
    assert source_hashes(folder) == before
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamps
    assert sorted(p.name for p in folder.iterdir()) == ["a.ipynb", "b.ipynb"]
