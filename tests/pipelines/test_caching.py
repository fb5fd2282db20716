"""The decisions of incremental runs, without kernels: fingerprints, what changed, who caches."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pipelines.assembly.header import CachePolicy, format_header, parse_header
from pipelines.assembly.pipeline import Pipeline, assemble
from pipelines.runs.caching import (
    CachePolicyOfRun,
    Fingerprint,
    Previous,
    changes,
    decide,
    input_hashes,
    own_fingerprint,
    run_policy,
    value_hash,
)
from pipelines.status import Trigger
from tests.helpers.notebooks import nb

ON = CachePolicyOfRun(True)


def test_cache_never_is_a_header_option_kept_by_the_canonical_form() -> None:
    header = parse_header("%%block stamp --cache never")
    assert header.cache is CachePolicy.NEVER
    assert format_header(header) == "%%block stamp --cache never"
    assert parse_header("%%block stamp").cache is CachePolicy.AUTO


def test_who_caches() -> None:
    manual = run_policy(Trigger.MANUAL, force_all=False, force_blocks=(), selective="", cache=None)
    assert manual.enabled
    for trigger in (Trigger.SCHEDULE, Trigger.BACKFILL, Trigger.API):
        policy = run_policy(trigger, force_all=False, force_blocks=(), selective="", cache=None)
        assert not policy.enabled
        assert policy.disabled_because == f"caching is off for {trigger} runs"
    on_anyway = run_policy(Trigger.API, force_all=False, force_blocks=(), selective="", cache=True)
    assert on_anyway.enabled
    forced = run_policy(Trigger.MANUAL, force_all=True, force_blocks=(), selective="", cache=None)
    assert forced.disabled_because == "--force"
    only = run_policy(
        Trigger.MANUAL, force_all=False, force_blocks=(), selective="run by --only", cache=None
    )
    assert only.disabled_because == "run by --only"


def test_changes_name_each_part_that_differs() -> None:
    before = Fingerprint("c1", {"day": "h1", "n": "h2"}, {"kernel": "k"}, {"load.df": "a"})
    assert changes(before, before) == []
    after = Fingerprint("c2", {"day": "h9", "m": "h3"}, {"kernel": "k2"}, {"load.df": "b"})
    assert changes(before, after) == [
        "code changed",
        "parameter `day` changed",
        "parameter `m` is new",
        "parameter `n` is no longer read",
        "setting `kernel` changed",
        "input `df` from `load` changed",
    ]
    assert "input `df` from `load` changed" not in changes(before, after, inputs=False)


def test_fingerprints_round_trip_and_other_versions_are_never_matched() -> None:
    fingerprint = Fingerprint("c", {"day": "h"}, {"kernel": "k"}, {"load.df": "a"})
    stored = fingerprint.to_json("code changed")
    assert stored["reason"] == "code changed"
    assert Fingerprint.from_json(stored) == fingerprint
    assert Fingerprint.from_json({**stored, "version": 0}) is None
    assert Fingerprint.from_json({**stored, "params": ["day"]}) is None


def test_parameter_hashes_tell_types_apart_and_keep_secrets_slow_to_guess() -> None:
    assert value_hash("day", "1") != value_hash("day", 1)
    assert value_hash("day", "mon") == value_hash("day", "mon")
    secret = value_hash("password", "hunter2")
    assert secret == value_hash("password", "hunter2")
    assert secret != value_hash("passwords", "hunter2")  # salted with the name
    assert "hunter2" not in secret


@pytest.fixture
def chain(pipeline_dir: Callable[..., Path]) -> Pipeline:
    """load -> clean -> report, and export reading report; `report` reads the parameter day."""
    folder = pipeline_dir(
        {
            "a.ipynb": nb(
                "%%block load --kind loader\nraw = 1",
                "%%block clean\ndf = raw + 1",
                "%%block report\nsummary = (df, day)",
                "%%block export --kind exporter\nwritten = summary",
            )
        },
        '[params]\nday = "mon"\n',
    )
    return assemble(folder)


def _stored(hashes: dict[tuple[str, str, str], str]) -> Callable[[str, str, str], str | None]:
    return lambda folder, block, output: hashes.get((folder, block, output))


def _previous(pipeline: Pipeline, params: dict[str, str], hashes: dict) -> dict[str, Previous]:
    """Each block's fingerprint as a run R1 in folder `r1` recorded it."""
    found = {}
    for name in pipeline.order:
        own = own_fingerprint(pipeline, name, params, "python3")
        inputs = input_hashes(pipeline, name, dict.fromkeys(pipeline.order, "r1"), _stored(hashes))
        found[name] = Previous("R1", "r1", Fingerprint(own.code, own.params, own.settings, inputs))
    return found


ALL_STORED = {
    ("r1", "load", "raw"): "h-raw",
    ("r1", "clean", "df"): "h-df",
    ("r1", "report", "summary"): "h-summary",
}


def _decide(pipeline: Pipeline, params: dict[str, str], previous: dict, policy=ON) -> dict:
    own = {name: own_fingerprint(pipeline, name, params, "python3") for name in pipeline.order}
    stored = {name: pipeline.stored_outputs(name) for name in pipeline.order}
    decisions = decide(
        pipeline, set(pipeline.order), policy, own, previous, stored, _stored(ALL_STORED)
    )
    return {name: decision.reason for name, decision in decisions.items()}


def test_unchanged_blocks_are_cached_top_down_and_exporters_run(chain: Pipeline) -> None:
    previous = _previous(chain, {"day": "mon"}, ALL_STORED)
    assert _decide(chain, {"day": "mon"}, previous) == {
        "load": "reused from run R1: nothing changed",
        "clean": "reused from run R1: nothing changed",
        "report": "reused from run R1: nothing changed",
        "export": "an exporter always runs",
    }
    assert _decide(chain, {"day": "tue"}, previous)["report"] == "parameter `day` changed"
    assert _decide(chain, {"day": "tue"}, previous)["clean"].startswith("reused from run R1")


def test_a_block_below_one_that_runs_runs_and_a_missing_output_is_a_reason(
    chain: Pipeline,
) -> None:
    previous = _previous(chain, {"day": "mon"}, ALL_STORED)
    del previous["clean"]
    reasons = _decide(chain, {"day": "mon"}, previous)
    assert reasons["clean"] == "no earlier successful run to reuse"
    assert reasons["report"] == "upstream `clean` runs"
    assert reasons["load"].startswith("reused from run R1")

    # `load`'s last result is another run's, whose output differs from what `clean` read.
    moved = _previous(chain, {"day": "mon"}, ALL_STORED)
    moved["load"] = Previous("R2", "r2", moved["load"].fingerprint)
    hashes = {**ALL_STORED, ("r2", "load", "raw"): "h-raw-2"}
    own = {name: own_fingerprint(chain, name, {"day": "mon"}, "python3") for name in chain.order}
    stored = {name: chain.stored_outputs(name) for name in chain.order}
    decisions = decide(chain, set(chain.order), ON, own, moved, stored, _stored(hashes))
    assert decisions["clean"].reason == "input `raw` from `load` changed"

    gone = {k: v for k, v in ALL_STORED.items() if k[1] != "report"}
    full = _previous(chain, {"day": "mon"}, ALL_STORED)
    decisions = decide(chain, set(chain.order), ON, own, full, stored, _stored(gone))
    assert decisions["report"].reason == "output `summary` is not stored in run R1"
