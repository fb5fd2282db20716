"""A whole run recorded in a PostgreSQL run store (a schema of the test's own)."""

from __future__ import annotations

from pipelines.assembly.pipeline import assemble
from pipelines.runs.runner import Runner, RunOptions
from pipelines.status import BlockStatus, RunStatus, Trigger
from pipelines.store.run_store import RunStore
from tests.helpers.notebooks import nb
from tests.helpers.runs import assert_no_kernels, statuses


def test_run_recorded_in_postgresql(project, pipeline, pg_url, tmp_path) -> None:
    counter = tmp_path / "count"
    folder = pipeline(
        {
            "a.ipynb": nb(
                "%%block make\nimport pandas as pd\nframe = pd.DataFrame({'a': [1, 2]})",
                f"%%block flaky --retries 1 --retry-delay 0\nimport pathlib\n"
                f"_p = pathlib.Path({str(counter)!r})\n"
                "if not _p.exists():\n    _p.touch()\n    raise OSError('once')\nok = True",
            ),
            "b.ipynb": nb(
                "%%block use\nsize = len(frame)\n\n@test\ndef two_rows(size):\n    assert size == 2"
            ),
        },
        pipeline_toml="[params]\nlimit = 5\n",
    )
    with RunStore(pg_url) as store:
        assert store.masked_url.startswith("postgresql+psycopg://")
        result = Runner(project, store).run(
            assemble(folder), RunOptions(params={"day": "2024-05-06"}, trigger=Trigger.API)
        )
        record = store.get_run(result.run_id)
        listed = store.list_runs("pipe")
        last = store.last_success("pipe", "use")
    assert_no_kernels(project)

    assert result.status is RunStatus.SUCCESS, statuses(result)
    assert record.run_id == result.run_id
    assert record.status is RunStatus.SUCCESS
    assert record.trigger is Trigger.API
    assert record.pipeline == "pipe"
    assert record.run_dir == str(result.run_dir)
    assert record.params == {"limit": 5, "day": "2024-05-06"}
    assert record.started_at <= record.ended_at
    assert [b.block for b in record.blocks] == ["make", "flaky", "use"]
    assert all(b.status is BlockStatus.SUCCESS for b in record.blocks)
    assert record.block("flaky").attempts == 2
    assert [a.status for a in record.block("flaky").attempt_records] == [
        BlockStatus.FAILED,
        BlockStatus.SUCCESS,
    ]
    outputs = record.block("make").attempt_records[-1].outputs
    assert [(o["name"], o["format"], o["rows"]) for o in outputs] == [("frame", "parquet", 2)]
    assert record.block("use").attempt_records[-1].tests == [
        {"name": "two_rows", "outcome": "passed", "message": ""}
    ]
    assert [r.run_id for r in listed] == [result.run_id]
    assert last is not None
    assert last.run_id == result.run_id
