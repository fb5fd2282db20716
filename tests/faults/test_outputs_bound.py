"""`--out NAME` promises the block binds NAME: a block that does not fails, saying so, instead
of succeeding and leaving its readers to fail with a misleading "run block first"."""

from __future__ import annotations

from pipelines.status import BlockStatus, RunStatus
from tests.helpers.notebooks import nb
from tests.helpers.runs import load_output, statuses


def test_an_out_name_the_block_never_binds_fails_the_block(pipeline, run) -> None:
    folder = pipeline(
        {
            "a.ipynb": nb("%%block a --out y\nx = 1"),
            "b.ipynb": nb("%%block b\nz = y"),
        }
    )

    result = run(folder)

    assert result.status is RunStatus.FAILED
    a, b = result.blocks["a"], result.blocks["b"]
    assert a.status is BlockStatus.FAILED, statuses(result)
    assert "`y`" in (a.error or ""), a.error
    assert "--out" in (a.error or ""), a.error
    assert b.status is BlockStatus.UPSTREAM_FAILED, statuses(result)


def test_an_out_name_left_over_from_an_earlier_block_is_not_bound(pipeline, run) -> None:
    """The kernel's namespace holds `y` from an earlier block: still not this block's output."""
    folder = pipeline(
        {
            "a.ipynb": nb(
                "%%block early\ny = 1\nw = y",
                "%%block a --out y --upstream early\nx = 2",
                "%%block b\nz = y",
            ),
        }
    )

    result = run(folder)

    assert result.blocks["early"].status is BlockStatus.SUCCESS, statuses(result)
    assert result.blocks["a"].status is BlockStatus.FAILED, statuses(result)
    assert "`y`" in (result.blocks["a"].error or "")
    assert result.blocks["b"].status is BlockStatus.UPSTREAM_FAILED, statuses(result)


def test_an_out_name_bound_at_run_time_counts(pipeline, run) -> None:
    """A name bound in a way static analysis cannot see (globals()) is still bound."""
    folder = pipeline(
        {
            "a.ipynb": nb("%%block a --out y\nglobals()['y'] = 41 + 1"),
            "b.ipynb": nb("%%block b\nz = y"),
        }
    )

    result = run(folder)

    assert result.status is RunStatus.SUCCESS, statuses(result)
    assert load_output(result, "a", "y") == 42
