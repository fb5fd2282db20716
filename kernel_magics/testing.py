"""`@test` checks inside a block: declared in the body, run after the block's outputs exist."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pipelines.rundir.state import TestOutcome, TestRecord

TEST_MARKER = "__blockbook_test__"
Function = TypeVar("Function", bound=Callable[..., Any])


def test(function: Function) -> Function:
    """Mark a function defined in a `%%block` as a check of the block's outputs.

    Its parameters name the values it receives: the block's outputs, or any other name the
    block could see.
    """
    setattr(function, TEST_MARKER, True)
    return function


test.__test__ = False  # type: ignore[attr-defined]  # keep pytest from collecting it


class MissingArgument(Exception):
    pass


def run_test(
    name: str, function: Callable[..., Any], namespace: Mapping[str, Any], *, warn_only: bool
) -> TestRecord:
    """Call one `@test` with the values its parameters name; never raises for the check's own
    failure (a failed assertion, an error, a parameter nothing provides)."""
    failed = TestOutcome.WARNED if warn_only else TestOutcome.FAILED
    try:
        arguments = _arguments(function, namespace)
        function(**arguments)
    except MissingArgument as exc:
        return TestRecord(name, failed, str(exc))
    except AssertionError as exc:
        return TestRecord(name, failed, str(exc) or "assertion failed")
    except Exception as exc:
        return TestRecord(name, failed, f"{type(exc).__name__}: {exc}")
    return TestRecord(name, TestOutcome.PASSED)


def _arguments(function: Callable[..., Any], namespace: Mapping[str, Any]) -> dict[str, Any]:
    arguments: dict[str, Any] = {}
    for parameter in inspect.signature(function).parameters.values():
        if parameter.name in namespace:
            arguments[parameter.name] = namespace[parameter.name]
        elif parameter.default is inspect.Parameter.empty:
            raise MissingArgument(
                f"test parameter `{parameter.name}` names no output of the block "
                "and no variable in the notebook"
            )
    return arguments
