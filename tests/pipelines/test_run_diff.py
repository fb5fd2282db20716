"""The column comparison behind `blockbook diff`'s schema changes, on manifests' `columns` as
the store keeps them (lists of [name, dtype])."""

from __future__ import annotations

from pipelines.store.diff import Pair, Retyped, SchemaChange, schema_change


def test_columns_added_removed_and_retyped_are_told_apart() -> None:
    before = [["city", "object"], ["km", "int64"], ["fare", "float64"]]
    after = [["city", "object"], ["km", "float64"], ["tip", "float64"]]

    change = schema_change(before, after)

    assert change == SchemaChange(
        added=(("tip", "float64"),),
        removed=(("fare", "float64"),),
        retyped=(Retyped("km", "int64", "float64"),),
    )
    assert change.changed
    assert change.to_json()["retyped"] == [{"column": "km", "a": "int64", "b": "float64"}]


def test_the_same_columns_in_another_order_are_no_change() -> None:
    change = schema_change([["a", "int64"], ["b", "object"]], [["b", "object"], ["a", "int64"]])

    assert not change.changed


def test_a_side_that_is_not_a_frame_has_no_schema_to_compare() -> None:
    assert schema_change(None, [["a", "int64"]]) == SchemaChange()
    assert schema_change([["a", "int64"]], None) == SchemaChange()


def test_a_pair_is_changed_when_one_side_is_missing() -> None:
    assert Pair(None, "x").changed
    assert not Pair(3, 3).changed
    assert Pair(3, 3).to_json() == {"a": 3, "b": 3, "changed": False}
