"""What flows between blocks: DataFrames as Parquet, other values pickled, unread values only
summarized, and values that cannot be stored failing their producer with a useful message."""

from __future__ import annotations

import hashlib

import pandas as pd
from pandas.testing import assert_frame_equal

from pipelines.status import BlockStatus, RunStatus
from tests.helpers.notebooks import nb
from tests.helpers.runs import load_output, manifest, statuses

PRODUCE = """%%block produce
import pandas as pd

trips = pd.DataFrame(
    {
        "city": ["Oslo", "Lima", "Pune", "Kyiv"],
        "km": [1.5, 2.25, 3.0, 4.75],
        "riders": pd.array([1, None, 3, 4], dtype="Int64"),
        "when": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]),
    }
)
settings = {"unit": "km", "limits": (1, 2.5), "tags": {"a", "b"}}
_scratch = 42
"""

CONSUME = """%%block consume
import pandas as pd

summary = trips.assign(km2=trips.km * 2)
described = {"rows": len(trips), "unit": settings["unit"], "limits": settings["limits"]}
assert isinstance(trips, pd.DataFrame) and str(trips.riders.dtype) == "Int64"
"""


def expected_trips() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "city": ["Oslo", "Lima", "Pune", "Kyiv"],
            "km": [1.5, 2.25, 3.0, 4.75],
            "riders": pd.array([1, None, 3, 4], dtype="Int64"),
            "when": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]),
        }
    )


def test_frame_and_value_cross_notebooks(pipeline, run, store) -> None:
    folder = pipeline(
        {
            "a.ipynb": nb(PRODUCE),
            "b.ipynb": nb(CONSUME, "%%block report\nn = len(summary)"),
        }
    )
    result = run(folder)

    assert result.status is RunStatus.SUCCESS, statuses(result)
    frame = manifest(result, "produce", "trips")
    data = (result.run_dir / "artifacts" / "produce" / "trips.parquet").read_bytes()
    assert frame["format"] == "parquet"
    assert frame["rows"] == 4
    assert [name for name, _ in frame["columns"]] == ["city", "km", "riders", "when"]
    assert dict(frame["columns"])["riders"] == "Int64"
    assert frame["sha256"] == hashlib.sha256(data).hexdigest()
    assert frame["bytes"] == len(data)
    assert_frame_equal(load_output(result, "produce", "trips"), expected_trips())

    value = manifest(result, "produce", "settings")
    assert value["format"] == "pickle"
    assert value["rows"] is None
    assert load_output(result, "produce", "settings") == {
        "unit": "km",
        "limits": (1, 2.5),
        "tags": {"a", "b"},
    }
    # The reader computed from what it loaded, and its own output flowed on (same notebook).
    assert_frame_equal(
        load_output(result, "consume", "summary"),
        expected_trips().assign(km2=expected_trips().km * 2),
    )
    assert not (result.run_dir / "artifacts" / "produce" / "_scratch.json").exists()
    # `described` and `n` are read by nobody: summarized, not stored.
    assert not (result.run_dir / "artifacts" / "consume" / "described.json").exists()
    consume = result.blocks["consume"]
    assert {
        "name": "trips",
        "block": "produce",
        "notebook": "a.ipynb",
        "source": "run",
        "run": result.run_id,
    } in consume.loaded
    assert {s["name"] for s in consume.attempts[-1].summaries} == {"described"}

    record = store.get_run(result.run_id)
    outputs = {o["name"]: o for o in record.block("produce").attempt_records[-1].outputs}
    assert outputs["trips"]["sha256"] == frame["sha256"]
    assert outputs["trips"]["rows"] == 4
    assert outputs["settings"]["format"] == "pickle"


def test_unstorable_output_that_is_read_fails_its_producer(pipeline, run) -> None:
    folder = pipeline(
        {
            "a.ipynb": nb(
                "%%block make_gen\ngen = (i * i for i in range(3))",
                "%%block make_lock\nimport threading\nlock = threading.Lock()\n"
                "squares = (i * i for i in range(3))\nsize = 3",
            ),
            "b.ipynb": nb("%%block use_gen\ntotal = sum(gen)", "%%block use_size\nn = size"),
        }
    )
    result = run(folder)

    assert result.status is RunStatus.FAILED
    producer = result.blocks["make_gen"]
    assert producer.status is BlockStatus.FAILED
    # The message names the value, its reader and the fix.
    assert "`gen`" in producer.error
    assert "use_gen" in producer.error
    assert "rename it `_gen`" in producer.error or "picklable" in producer.error
    assert len(producer.attempts) == 1
    assert result.blocks["use_gen"].status is BlockStatus.UPSTREAM_FAILED
    assert not (result.run_dir / "artifacts" / "make_gen" / "gen.json").exists()

    # The same kind of value, read by nobody: the block succeeds and the lock is summarized.
    locker = result.blocks["make_lock"]
    assert locker.status is BlockStatus.SUCCESS
    summaries = {s["name"]: s for s in locker.attempts[-1].summaries}
    assert "lock" in summaries
    assert "lock" in summaries["lock"]["type"]
    assert summaries["squares"] == {"name": "squares", "type": "generator"}
    assert not (result.run_dir / "artifacts" / "make_lock" / "lock.json").exists()
    stored = {p.name for p in (result.run_dir / "artifacts" / "make_lock").iterdir()}
    assert stored == {"size.json", "size.pickle"}
    assert load_output(result, "make_lock", "size") == 3
    assert result.blocks["use_size"].status is BlockStatus.SUCCESS
