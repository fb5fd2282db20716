"""Who reads a block's outputs and who feeds a block's inputs, asked of the assembled pipeline."""

from __future__ import annotations

from pipelines.assembly.pipeline import Pipeline, assemble
from tests.helpers.notebooks import MakePipeline


def lookups_pipeline(pipeline_dir: MakePipeline) -> Pipeline:
    return assemble(
        pipeline_dir(
            {
                "a.ipynb": [
                    "%%block load\ndf = 1\nengine = 2",
                    "%%block early\nseen = late_value",
                    "%%block late\nlate_value = df",
                    "%%block again\ndf = 3",
                ],
                "b.ipynb": ["%%block use\nn = df + 1", "%%block total\nsummed = df + n"],
            }
        )
    )


def test_readers_of_a_block_are_the_blocks_wired_to_it(pipeline_dir: MakePipeline) -> None:
    pipeline = lookups_pipeline(pipeline_dir)
    # `late` reads the nearest earlier `df` of its notebook; b.ipynb the last one of a.ipynb.
    assert pipeline.readers_of("load") == {"df": ("late",)}
    assert pipeline.readers_of("again") == {"df": ("use", "total")}
    assert pipeline.readers_of("use") == {"n": ("total",)}
    assert pipeline.readers_of("late") == {}, "`early` reads it as a parameter: not wired"
    assert pipeline.readers_of("not_saved_yet") == {}
    assert {
        name: [str(r) for r in readers] for name, readers in pipeline.readers_of("load").items()
    } == {name: readers for name, readers in pipeline.readers["load"].items()}


def test_unwired_readers_count_when_asked(pipeline_dir: MakePipeline) -> None:
    pipeline = lookups_pipeline(pipeline_dir)
    read = pipeline.readers_of("late", include_unwired=True)
    assert read["late_value"] == ("early",)
    assert pipeline.readers_of("early", include_unwired=True).get("late_value") is None, (
        "a block never reads its own input from itself"
    )


def test_producer_of_an_input(pipeline_dir: MakePipeline) -> None:
    pipeline = lookups_pipeline(pipeline_dir)
    assert pipeline.producer_of("late", "df") == "load"
    assert pipeline.producer_of("use", "df") == "again"
    assert pipeline.producer_of("early", "late_value") == "late", "unwired: the last producer"
    assert pipeline.producer_of("not_saved_yet", "df") == "again"
    assert pipeline.producer_of("use", "nothing_outputs_this") is None
    assert pipeline.producer_of("again", "df") == "load", "never the reader itself"
