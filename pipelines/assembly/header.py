"""The `%%block` header: one pure parser shared by the magic, the assembler, the runner and the CLI.

    %%block clean_trips --upstream load_trips --retries 2 --timeout 300

Parsing never touches the kernel or the file system; errors are `HeaderError`s whose hint says
how to write the header instead.
"""

from __future__ import annotations

import argparse
import difflib
import enum
import keyword
import math
import random
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import NewType, NoReturn

from pipelines.errors import HeaderError

BlockName = NewType("BlockName", str)

MAGIC = "%%block"
NAME_PATTERN = re.compile(r"[a-z_][a-z0-9_]*\Z")
USAGE = (
    "%%block NAME [--upstream NAME ...] [--kind KIND] [--retries N] [--retry-delay SECONDS] "
    "[--timeout SECONDS] [--out NAME ...] [--tests fail|warn] [--skip] "
    "[--trigger-rule all_success|all_done|one_success] [--cache auto|never] "
    "[--schema warn|fail|off] [--schema-file PATH.json] [--map NAME] "
    "[--poke-interval SECONDS] [--sensor-timeout SECONDS] (the last two with --kind sensor)"
)
DEFAULT_POKE_INTERVAL = 5.0
DEFAULT_SENSOR_TIMEOUT = 3600.0
SENSOR_OPTIONS = ("--poke-interval", "--sensor-timeout")


class BlockKind(enum.StrEnum):
    LOADER = "loader"
    TRANSFORMER = "transformer"
    EXPORTER = "exporter"
    SENSOR = "sensor"
    CONDITION = "condition"
    CUSTOM = "custom"


class TriggerRule(enum.StrEnum):
    """When a block runs, given how its upstream blocks ended (decided once all of them have).

    A condition block whose result was false counts as skipped for the blocks below it.
    """

    ALL_SUCCESS = "all_success"
    """Every upstream succeeded. A failed one makes this block upstream_failed; otherwise a
    skipped one (or a false condition) makes it skipped."""
    ALL_DONE = "all_done"
    """Every upstream ended, however; only the outputs of those that succeeded are loaded."""
    ONE_SUCCESS = "one_success"
    """At least one upstream succeeded; outputs are loaded from the successful ones only. None
    did: upstream_failed, or skipped when every upstream was skipped."""


class CachePolicy(enum.StrEnum):
    """Whether a run may reuse a block's last outputs when nothing it depends on changed."""

    AUTO = "auto"
    """Reused when unchanged, except exporters and sensors (side effects) and conditions."""
    NEVER = "never"
    """Always run: the block depends on something Blockbook can't see (a clock, a source)."""


class SchemaPolicy(enum.StrEnum):
    """What a stored DataFrame whose columns or row count drifted from its baseline does to its
    block (`pipelines.rundir.schema_drift`)."""

    WARN = "warn"
    """The block succeeds, with the drift recorded as warnings."""
    FAIL = "fail"
    """The block fails with the drift as its error (not retried)."""
    OFF = "off"
    """Nothing is compared."""


class TestPolicy(enum.StrEnum):
    """What a failing `@test` does to its block."""

    FAIL = "fail"
    WARN = "warn"


@dataclass(frozen=True, slots=True)
class BlockHeader:
    name: BlockName
    upstream: tuple[BlockName, ...] = ()
    kind: BlockKind = BlockKind.CUSTOM
    retries: int = 0
    retry_delay: float = 1.0
    timeout: float | None = None
    out: tuple[str, ...] | None = None
    tests: TestPolicy = TestPolicy.FAIL
    skip: bool = False
    trigger_rule: TriggerRule = TriggerRule.ALL_SUCCESS
    poke_interval: float = DEFAULT_POKE_INTERVAL
    """Sensors only: seconds between two runs of the body."""
    sensor_timeout: float = DEFAULT_SENSOR_TIMEOUT
    """Sensors only: give up (fail) when the condition still doesn't hold after this long."""
    cache: CachePolicy = CachePolicy.AUTO
    schema: SchemaPolicy = SchemaPolicy.WARN
    schema_file: str | None = None
    """A pinned schema contract, relative to the notebook's folder; None: the last run's."""
    map: str | None = None
    """Fan-out: the upstream output (a list, tuple or small DataFrame) whose items the block
    runs once each for, with `item` bound (`pipelines.rundir.fanout`); None: runs once."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When a failed block is tried again: up to `max_retries` more attempts, the n-th after
    `delay * backoff ** (n - 1)` seconds, moved at random by up to `jitter` of itself (so
    blocks that failed together don't retry together), never longer than `max_delay`."""

    max_retries: int = 0
    delay: float = 1.0
    backoff: float = 2.0
    jitter: float = 0.0
    """A fraction from 0 to 1."""
    max_delay: float = math.inf

    @classmethod
    def from_header(cls, header: BlockHeader) -> RetryPolicy:
        """`--retries` and `--retry-delay`, the delay doubled for each retry."""
        return cls(max_retries=header.retries, delay=header.retry_delay)

    @property
    def attempts(self) -> int:
        return self.max_retries + 1

    def delay_before(self, retry: int, draw: Callable[[], float] = random.random) -> float:
        """Seconds to wait before retry number `retry` (1 follows the first attempt); `draw`
        gives the jitter's random number in [0, 1)."""
        if self.delay == 0:
            return 0.0
        try:
            grown = self.delay * self.backoff ** (retry - 1)
        except OverflowError:  # a float can't hold it; the cap decides
            return self.max_delay
        spread = grown * (1 + self.jitter * (2 * draw() - 1)) if self.jitter else grown
        return min(spread, self.max_delay)


# IPython drops leading blank (or whitespace-only) lines and the first line's indentation before
# it looks for a cell magic, so "\n  \n  %%block a" runs as a block in the kernel: match that.
_LEADING_BLANK_LINES = re.compile(r"\A(?:[^\S\n]*\n)*")


def is_block_cell(source: str) -> bool:
    """True when the cell's first line is a `%%block` magic."""
    first = split_block_cell(source)[0]
    return first == MAGIC or first.startswith(MAGIC + " ") or first.startswith(MAGIC + "\t")


def split_block_cell(source: str) -> tuple[str, str]:
    """Split a block cell into its header line (without surrounding whitespace) and its body."""
    stripped = _LEADING_BLANK_LINES.sub("", source, count=1)
    header, _, body = stripped.partition("\n")
    return header.strip(), body


@dataclass(frozen=True, slots=True)
class HeaderIssue:
    """One thing wrong with a header, and how to fix it."""

    message: str
    hint: str


class HeaderErrors(HeaderError):
    """Every problem of one header; `message` lists them all, `issues` holds them one by one."""

    def __init__(self, message: str, hint: str = "", issues: tuple[HeaderIssue, ...] = ()) -> None:
        super().__init__(message, hint)
        self.issues = issues or (HeaderIssue(message, hint),)
        self.args = (message, hint, self.issues)  # so pickling keeps them

    @classmethod
    def of(cls, issues: list[HeaderIssue]) -> HeaderErrors:
        if len(issues) == 1:
            return cls(issues[0].message, issues[0].hint, tuple(issues))
        message = f"{len(issues)} problems in the header: " + "; ".join(
            f"({number}) {issue.message}" for number, issue in enumerate(issues, start=1)
        )
        hint = "; ".join(dict.fromkeys(issue.hint for issue in issues))
        return cls(message, hint, tuple(issues))


@dataclass(frozen=True, slots=True)
class _Invalid:
    """What an option's converter returns for a bad value, so parsing goes on to the others."""

    issue: HeaderIssue


def parse_header(line: str) -> BlockHeader:
    """Parse a full header line (with or without the leading `%%block`).

    Raises a `HeaderErrors` (a `HeaderError`) listing every problem found, not just the first,
    except when the line can't be split into options at all (a quote left open, an option
    missing its value): then that one is all there is to say.
    """
    text = line.strip()
    if text.startswith(MAGIC):
        text = text[len(MAGIC) :]
    try:
        tokens = shlex.split(text)
    except ValueError as exc:
        raise HeaderError(f"cannot split the header: {exc}", hint=_quote_hint()) from None
    if not tokens or tokens[0].startswith("-"):
        raise HeaderError(
            "the block has no name", hint=f"start the cell with `%%block my_block`; usage: {USAGE}"
        )
    try:
        namespace, extras = _PARSER.parse_known_args(tokens)
    except argparse.ArgumentError as exc:
        raise HeaderError(str(exc), hint=f"usage: {USAGE}") from None
    issues = [
        *_name_issues(namespace.name, namespace.upstream),
        *(value.issue for value in vars(namespace).values() if isinstance(value, _Invalid)),
        *(_identifier_issue(n) for n in namespace.out or ()),
        *_extras_issues(extras),
        *_sensor_issues(namespace),
        _schema_file_issue(namespace),
        *_map_issues(namespace),
    ]
    found = [issue for issue in issues if issue is not None]
    if found:
        raise HeaderErrors.of(found)
    return BlockHeader(
        name=BlockName(namespace.name),
        upstream=tuple(BlockName(n) for n in namespace.upstream),
        kind=namespace.kind,
        retries=namespace.retries,
        retry_delay=namespace.retry_delay,
        timeout=namespace.timeout,
        out=None if namespace.out is None else tuple(namespace.out),
        tests=namespace.tests,
        skip=namespace.skip,
        trigger_rule=namespace.trigger_rule,
        poke_interval=(
            DEFAULT_POKE_INTERVAL if namespace.poke_interval is None else namespace.poke_interval
        ),
        sensor_timeout=(
            DEFAULT_SENSOR_TIMEOUT if namespace.sensor_timeout is None else namespace.sensor_timeout
        ),
        cache=namespace.cache,
        schema=namespace.schema,
        schema_file=namespace.schema_file,
        map=namespace.map,
    )


def _name_issues(name: str, upstream: list[str]) -> list[HeaderIssue | None]:
    issues = [_block_name_issue(name, "block name")]
    issues += [_block_name_issue(n, "--upstream") for n in upstream]
    if name in upstream:
        issues.append(
            HeaderIssue(
                f"block `{name}` lists itself in --upstream", "remove its own name from --upstream"
            )
        )
    return issues


def _sensor_issues(namespace: argparse.Namespace) -> list[HeaderIssue]:
    kind = namespace.kind
    if isinstance(kind, _Invalid):
        return []  # the kind's own problem says enough until it is fixed
    given = [
        option
        for option, value in zip(
            SENSOR_OPTIONS, (namespace.poke_interval, namespace.sensor_timeout), strict=True
        )
        if value is not None
    ]
    if not given or kind is BlockKind.SENSOR:
        return []
    return [
        HeaderIssue(
            f"{' and '.join(given)} only {'applies' if len(given) == 1 else 'apply'} to "
            f"sensors, and this block's kind is `{kind}`",
            f"add `--kind sensor` to make the block a sensor, or remove {given[0]}",
        )
    ]


def _schema_file_issue(namespace: argparse.Namespace) -> HeaderIssue | None:
    path = namespace.schema_file
    if path is None:
        return None
    if not path.endswith(".json"):
        return HeaderIssue(
            f"--schema-file names a JSON file, got `{path}`",
            "write one with `blockbook schema pin RUN BLOCK -o PATH.json`",
        )
    if namespace.schema is SchemaPolicy.OFF:
        return HeaderIssue(
            "--schema-file has no effect with --schema off",
            "remove --schema-file, or use --schema warn or fail",
        )
    return None


def _map_issues(namespace: argparse.Namespace) -> list[HeaderIssue]:
    name, kind = namespace.map, namespace.kind
    if name is None:
        return []
    issues = []
    if not name.isidentifier() or keyword.iskeyword(name):
        issues.append(
            HeaderIssue(
                f"--map names an upstream output, a Python variable; `{name}` is not one",
                "write `--map days`, where an upstream block binds `days` to a list",
            )
        )
    if kind in (BlockKind.SENSOR, BlockKind.CONDITION):
        issues.append(
            HeaderIssue(
                f"a {kind} cannot be mapped (--map): its verdict is one for the whole block",
                "remove --map, or map a block below it",
            )
        )
    return issues


def format_header(header: BlockHeader) -> str:
    """The canonical header line for `header`; `parse_header(format_header(h)) == h`."""
    parts = [MAGIC, header.name]
    if header.upstream:
        parts += ["--upstream", *header.upstream]
    defaults = BlockHeader(name=header.name)
    if header.kind is not defaults.kind:
        parts += ["--kind", str(header.kind)]
    if header.retries != defaults.retries:
        parts += ["--retries", str(header.retries)]
    if header.retry_delay != defaults.retry_delay:
        parts += ["--retry-delay", _number(header.retry_delay)]
    if header.timeout is not None:
        parts += ["--timeout", _number(header.timeout)]
    if header.out is not None:
        parts += ["--out", *header.out]
    if header.tests is not defaults.tests:
        parts += ["--tests", str(header.tests)]
    if header.skip:
        parts.append("--skip")
    if header.trigger_rule is not defaults.trigger_rule:
        parts += ["--trigger-rule", str(header.trigger_rule)]
    if header.poke_interval != defaults.poke_interval:
        parts += ["--poke-interval", _number(header.poke_interval)]
    if header.sensor_timeout != defaults.sensor_timeout:
        parts += ["--sensor-timeout", _number(header.sensor_timeout)]
    if header.cache is not defaults.cache:
        parts += ["--cache", str(header.cache)]
    if header.schema is not defaults.schema:
        parts += ["--schema", str(header.schema)]
    if header.schema_file is not None:
        parts += ["--schema-file", shlex.quote(header.schema_file)]
    if header.map is not None:
        parts += ["--map", header.map]
    return " ".join(parts)


class _RaisingParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise HeaderError(message, hint=f"usage: {USAGE}")


def _number_option(
    option: str, *, integer: bool, allow_zero: bool
) -> Callable[[str], float | _Invalid]:
    expected = ("a whole number" if integer else "a number of seconds") + (
        " >= 0" if allow_zero else " > 0"
    )

    def convert(text: str) -> float | _Invalid:
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            value = -1
        if not (value >= 0 if allow_zero else value > 0) or value == float("inf"):
            return _Invalid(
                HeaderIssue(f"{option} needs {expected}, got `{text}`", f"usage: {USAGE}")
            )
        return value

    return convert


def _choice(enum_type: type[enum.StrEnum]) -> Callable[[str], enum.StrEnum | _Invalid]:
    def convert(text: str) -> enum.StrEnum | _Invalid:
        try:
            return enum_type(text)
        except ValueError:
            choices = [str(member) for member in enum_type]
            guess = difflib.get_close_matches(text, choices, n=1)
            suggestion = f"; did you mean `{guess[0]}`?" if guess else ""
            return _Invalid(
                HeaderIssue(
                    f"`{text}` is not one of {', '.join(choices)}{suggestion}", f"usage: {USAGE}"
                )
            )

    convert.__name__ = enum_type.__name__
    return convert


def _build_parser() -> _RaisingParser:
    parser = _RaisingParser(prog=MAGIC, add_help=False, allow_abbrev=False, exit_on_error=False)
    parser.add_argument("name")
    # "extend": `--upstream a --upstream b` means both, not just the last one.
    parser.add_argument("--upstream", nargs="*", action="extend", default=[], metavar="NAME")
    parser.add_argument("--kind", type=_choice(BlockKind), default=BlockKind.CUSTOM)
    parser.add_argument(
        "--retries", type=_number_option("--retries", integer=True, allow_zero=True), default=0
    )
    parser.add_argument(
        "--retry-delay",
        type=_number_option("--retry-delay", integer=False, allow_zero=True),
        default=1.0,
    )
    parser.add_argument(
        "--timeout", type=_number_option("--timeout", integer=False, allow_zero=False), default=None
    )
    parser.add_argument("--out", nargs="+", action="extend", default=None, metavar="NAME")
    parser.add_argument("--tests", type=_choice(TestPolicy), default=TestPolicy.FAIL)
    parser.add_argument("--skip", action="store_true")
    parser.add_argument(
        "--trigger-rule", type=_choice(TriggerRule), default=TriggerRule.ALL_SUCCESS
    )
    # None = not given, so a non-sensor that sets them can be told so.
    parser.add_argument(
        "--poke-interval",
        type=_number_option("--poke-interval", integer=False, allow_zero=False),
        default=None,
    )
    parser.add_argument(
        "--sensor-timeout",
        type=_number_option("--sensor-timeout", integer=False, allow_zero=False),
        default=None,
    )
    parser.add_argument("--cache", type=_choice(CachePolicy), default=CachePolicy.AUTO)
    parser.add_argument("--schema", type=_choice(SchemaPolicy), default=SchemaPolicy.WARN)
    parser.add_argument("--schema-file", default=None, metavar="PATH")
    parser.add_argument("--map", default=None, metavar="NAME")
    return parser


_PARSER = _build_parser()
OPTIONS = tuple(
    option
    for action in _PARSER._actions  # argparse keeps its option table only here
    for option in action.option_strings
)


def _extras_issues(extras: list[str]) -> list[HeaderIssue]:
    """Unknown options, and stray words that aren't the value of one."""
    issues: list[HeaderIssue] = []
    after_unknown_option = False
    for token in extras:
        if token.startswith("-"):
            issues.append(_unknown_option(token.split("=", 1)[0]))
            after_unknown_option = "=" not in token
        elif after_unknown_option:
            after_unknown_option = False  # most likely the unknown option's value
        else:
            issues.append(
                HeaderIssue(
                    f"unexpected argument `{token}`",
                    f"a block has one name; list upstream blocks after --upstream. usage: {USAGE}",
                )
            )
    return issues


def _unknown_option(option: str) -> HeaderIssue:
    candidates = difflib.get_close_matches(option, OPTIONS, n=1, cutoff=0.5)
    if not candidates and not option.startswith("--"):
        candidates = difflib.get_close_matches("-" + option, OPTIONS, n=1, cutoff=0.5)
    suggestion = f"; did you mean `{candidates[0]}`?" if candidates else ""
    return HeaderIssue(
        f"unknown option `{option}`{suggestion}", f"known options: {', '.join(OPTIONS)}"
    )


def _block_name_issue(text: str, what: str) -> HeaderIssue | None:
    if not NAME_PATTERN.match(text) or keyword.iskeyword(text):
        fixed = re.sub(r"[^a-z0-9_]", "_", text.lower())
        if fixed[:1].isdigit():
            fixed = "_" + fixed
        if keyword.iskeyword(fixed):
            fixed += "_"
        return HeaderIssue(
            f"invalid {what} `{text}`: names are lowercase identifiers ([a-z_][a-z0-9_]*)",
            f"use a name like `{fixed}`" if fixed else "use a name like `load_data`",
        )
    return None


def _identifier_issue(text: str) -> HeaderIssue | None:
    if not text.isidentifier() or keyword.iskeyword(text):
        return HeaderIssue(
            f"--out names Python variables; `{text}` is not an identifier",
            "list the variable names the block produces, e.g. `--out df summary`",
        )
    return None


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


def _quote_hint() -> str:
    return "close every quote in the header, or leave quotes out: names need none"
