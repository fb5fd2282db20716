"""Fan-out in the kernel: `%%block per_day --map days` runs its body once per item of `days`.

Three places run a mapped block, all with `item` (and `item_index`) bound for each item and
each output becoming a list in item order:

- **A run, the mapped block's own notebook** (`fan_out`): once the upstream blocks ended, the
  kernel counts the items and writes the count into the block's state; the runner then starts
  one child notebook per item (`pipelines.runs.fanout`). The kernel waits for every child to
  end, like a block waits for upstream blocks of other notebooks, and collects their stored
  outputs into the block's own outputs: lists, stored for the blocks below.
- **A run, a child's notebook** (`ChildContext`): the block's cell runs as block
  `per_day[3]`, with its own state file, retries, artifacts and record, `item` bound to the
  fourth item.
- **By hand** (`run_items`): the items run one after the other in the kernel, so a notebook
  stays usable while it is written; the result is the same lists.

A list or tuple maps over its elements, a pandas DataFrame over its rows (`frame.iloc[i]`, a
Series), at most `MAX_ITEMS` of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from kernel_magics.contexts import (
    HeadlessContext,
    Preparation,
    Readiness,
    polls_for,
    wait_until_ended,
)
from pipelines.assembly.header import BlockHeader, BlockName, TriggerRule
from pipelines.errors import BlockbookError, ErrorKind
from pipelines.rundir.fanout import (
    ITEM_INDEX_NAME,
    ITEM_NAME,
    MAP_CONTEXT_KEY,
    MAX_ITEMS,
    child_name,
)
from pipelines.rundir.schema_drift import Baseline
from pipelines.rundir.state import Attempt, BlockState, InputSource, LoadedInput, now, read_state
from pipelines.status import BlockStatus


class NotMappable(BlockbookError):
    """The value a block maps over is not a list, tuple or DataFrame, or has too many items."""

    kind = ErrorKind.INVALID


class FanOutFailed(BlockbookError):
    """Some children of a mapped block did not succeed, or left an output unstored."""

    kind = ErrorKind.INVALID


def item_count(value: Any, block: str, name: str) -> int:
    """How many items `value` (the `--map` input of `block`) has; NotMappable when it can't
    be mapped over."""
    if isinstance(value, list | tuple) or _is_frame(value):
        count = len(value)
    else:
        raise NotMappable(
            f"block `{block}` maps over `{name}` (--map), which is a {type(value).__name__}, "
            "not a list, tuple or DataFrame",
            hint=f"make the upstream block bind `{name}` to a list (e.g. `{name} = list(...)`), "
            "or remove --map",
        )
    if count > MAX_ITEMS:
        raise NotMappable(
            f"block `{block}` maps over `{name}` (--map), which has {count} items; a fan-out "
            f"runs at most {MAX_ITEMS} (one kernel each)",
            hint=f"map over batches (e.g. `{name} = [chunk, ...]`), or process `{name}` in one "
            "block without --map",
        )
    return count


def item_at(value: Any, index: int) -> Any:
    """Item number `index` of a mappable value: an element, or a DataFrame's row."""
    return value.iloc[index] if _is_frame(value) else value[index]


def bind_item(namespace: dict[str, Any], value: Any, index: int) -> None:
    namespace[ITEM_NAME] = item_at(value, index)
    namespace[ITEM_INDEX_NAME] = index


def _is_frame(value: Any) -> bool:
    return type(value).__name__ == "DataFrame" and hasattr(value, "iloc")


# ---- by hand -----------------------------------------------------------------------------------


def run_items(
    header: BlockHeader,
    namespace: dict[str, Any],
    outputs: Sequence[str],
    run_one: Callable[[], None],
) -> None:
    """Run the body (`run_one`) for each item in turn; then bind each output to the list of its
    values in item order, as a run's downstream blocks get them."""
    assert header.map is not None
    if header.map not in namespace:
        raise NameError(
            f"name '{header.map}' is not defined: block `{header.name}` maps over it (--map)"
        )
    value = namespace[header.map]
    count = item_count(value, header.name, header.map)
    collected: dict[str, list[Any]] = {output: [] for output in outputs}
    for index in range(count):
        for output in outputs:
            namespace.pop(output, None)  # a value left by the item before is not this item's
        bind_item(namespace, value, index)
        run_one()
        for output in outputs:
            if output not in namespace:
                raise FanOutFailed(
                    f"item {index} of block `{header.name}` did not bind `{output}`",
                    hint=f"bind `{output}` for every item, or leave it out of --out",
                )
            collected[output].append(namespace[output])
    namespace.update(collected)


# ---- a run: the child ------------------------------------------------------------------------


class ChildContext(HeadlessContext):
    """One child of a mapped block, in a notebook of its own: the block's plan, under the
    child's name; its inputs are the block's, and `item` is bound before the body runs."""

    def __init__(self, run_context: dict[str, Any], namespace: dict[str, Any]) -> None:
        super().__init__(run_context, namespace)
        mapping = run_context[MAP_CONTEXT_KEY]
        self.parent: str = mapping["block"]
        self.index = int(mapping["index"])
        self.child = child_name(self.parent, self.index)

    def child_header(self, header: BlockHeader) -> BlockHeader:
        """The header the child runs by: the block's (retries, timeout, tests), its own name,
        and no --map of its own."""
        return replace(header, name=BlockName(self.child), map=None)

    def prepare(
        self,
        name: str,
        inputs: tuple[str, ...],
        namespace: dict[str, Any],
        trigger_rule: TriggerRule = TriggerRule.ALL_SUCCESS,
    ) -> Preparation:
        earlier = read_state(self.state_root, name)
        if earlier is not None and earlier.status.succeeded:
            # Its notebook runs again after a lost worker: the child must not run twice.
            return Preparation(Readiness.REUSED, "finished by an earlier execution")
        if self.cancelled():
            return Preparation(Readiness.CANCELLED, "the run was cancelled")
        # The mapped block's kernel judged the upstream states before it asked for children.
        block = self.plan.blocks[self.parent]
        loaded = []
        for input_name, producer in block.sources.items():
            state = read_state(self.state_root, producer)
            if state is None or not state.status.succeeded:
                continue  # all_done / one_success: nothing to load from it
            namespace[input_name] = self.artifacts.load(producer, input_name)
            notebook = self.plan.blocks[producer].source_notebook
            loaded.append(
                LoadedInput(input_name, InputSource.RUN, producer, notebook, self.plan.run_id)
            )
        assert block.map is not None
        bind_item(namespace, namespace[block.map], self.index)
        return Preparation(Readiness.PROCEED, loaded=loaded)

    def stored_outputs(self, name: str, outputs: tuple[str, ...]) -> dict[str, list[str]]:
        return self.plan.blocks[self.parent].stored

    def schema_baseline(self, name: str) -> Baseline | None:
        # The block's baseline is its collected lists', not one item's.
        return None


# ---- a run: the mapped block -------------------------------------------------------------------


def fan_out(
    context: HeadlessContext,
    header: BlockHeader,
    namespace: dict[str, Any],
    state: BlockState,
    publish: Callable[[BlockState], None],
) -> tuple[BlockState, BaseException | None]:
    """Have the runner run one child per item, wait for them all, collect their outputs: the
    block's final state, and the error it failed with (None when it succeeded)."""
    name, mapped = header.name, header.map
    assert mapped is not None
    try:
        if mapped not in namespace:
            # all_done / one_success: its producer ended without succeeding.
            raise NotMappable(
                f"block `{name}` maps over `{mapped}` (--map), which no upstream block provided",
                hint=f"the block producing `{mapped}` must succeed; with --trigger-rule all_done "
                "or one_success it may not have",
            )
        count = item_count(namespace[mapped], name, mapped)
    except NotMappable as exc:
        return _failed(state, exc), exc
    children = [child_name(name, index) for index in range(count)]
    state = replace(state, status=BlockStatus.RUNNING, map_items=count, waiting_for=tuple(children))
    publish(state)  # the runner starts the children once it reads this
    ended = _await(context, children)
    if ended is None:
        return replace(
            state, status=BlockStatus.CANCELLED, error="cancelled", waiting_for=(), ended_at=now()
        ), None
    unsuccessful = [child for child in children if not ended[child].status.succeeded]
    if unsuccessful:
        hint = _hint(unsuccessful, context.plan.run_id)
        error = FanOutFailed(_unsuccessful(unsuccessful, ended, count), hint=hint)
        return _failed(state, error), error
    stored = context.stored_outputs(name, ())
    try:
        values = _collect(context, name, children, stored)
        manifests = tuple(
            context.artifacts.save(name, output, values[output], readers).to_json()
            for output, readers in stored.items()
        )
    except (BlockbookError, OSError) as exc:
        # A child's output gone, or the lists not writable (a full disk): the block fails.
        failure = (
            exc
            if isinstance(exc, BlockbookError)
            else FanOutFailed(
                f"the outputs of block `{name}`'s children could not be collected: {exc}",
                hint="fix what the error names, then `blockbook run PIPELINE --resume RUN_ID`",
            )
        )
        return _failed(state, failure), failure
    namespace.update(values)
    moment = now()
    attempt = Attempt(1, BlockStatus.SUCCESS, state.started_at or moment, moment, outputs=manifests)
    return replace(
        state, status=BlockStatus.SUCCESS, waiting_for=(), attempts=(attempt,), ended_at=moment
    ), None


def _await(context: HeadlessContext, children: list[str]) -> dict[str, BlockState] | None:
    """Each child's terminal state, once all have one; None when the run is cancelled first."""
    delays = polls_for(context.state_root)
    return wait_until_ended(context.state_root, children, context.cancelled, delays)


def _collect(
    context: HeadlessContext, name: str, children: list[str], stored: Mapping[str, list[str]]
) -> dict[str, list[Any]]:
    """Each stored output of the block: the list of its children's values, in item order."""
    values: dict[str, list[Any]] = {output: [] for output in stored}
    for child in children:
        for output in stored:
            if context.artifacts.manifest(child, output) is None:
                raise FanOutFailed(
                    f"child `{child}` of block `{name}` stored no `{output}`",
                    hint=f"bind `{output}` for every item: the blocks below read it as a list",
                )
            values[output].append(context.artifacts.load(child, output))
    return values


def _unsuccessful(children: list[str], ended: Mapping[str, BlockState], count: int) -> str:
    shown = [
        f"{child} {ended[child].status}"
        + (f" ({ended[child].error})" if ended[child].error else "")
        for child in children[:3]
    ]
    more = f" and {len(children) - 3} more" if len(children) > 3 else ""
    return f"{len(children)} of {count} items did not succeed: {'; '.join(shown)}{more}"


def _hint(children: list[str], run_id: str) -> str:
    return f"`blockbook debug {run_id} '{children[0]}'` re-creates the first with its item"


def _failed(state: BlockState, error: BlockbookError) -> BlockState:
    fix = f"; fix: {error.hint}" if error.hint else ""
    return replace(
        state,
        status=BlockStatus.FAILED,
        error=f"{type(error).__name__}: {error.message}{fix}",
        waiting_for=(),
        ended_at=now(),
    )
