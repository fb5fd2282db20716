"""The `%%block` header: parsing every option, the canonical round trip, and every error."""

from __future__ import annotations

import pytest

from pipelines.assembly.header import (
    OPTIONS,
    USAGE,
    BlockHeader,
    BlockKind,
    TriggerRule,
    format_header,
    is_block_cell,
    parse_header,
    split_block_cell,
)
from pipelines.assembly.header import TestPolicy as Policy  # not `Test*`: pytest would collect it
from pipelines.errors import HeaderError

# ---- good headers ----------------------------------------------------------------------------

GOOD_HEADERS = [
    pytest.param("%%block load", BlockHeader(name="load"), id="name-only"),
    pytest.param("load", BlockHeader(name="load"), id="without-magic"),
    pytest.param("  %%block   load  ", BlockHeader(name="load"), id="extra-spaces"),
    pytest.param("%%block\tload", BlockHeader(name="load"), id="tab-separated"),
    pytest.param("%%block _private_1", BlockHeader(name="_private_1"), id="underscore-digit-name"),
    pytest.param(
        "%%block clean --upstream load",
        BlockHeader(name="clean", upstream=("load",)),
        id="one-upstream",
    ),
    pytest.param(
        "%%block join --upstream left right",
        BlockHeader(name="join", upstream=("left", "right")),
        id="two-upstream",
    ),
    pytest.param(
        "%%block join --upstream left --upstream right",
        BlockHeader(name="join", upstream=("left", "right")),
        id="repeated-upstream-accumulates",
    ),
    pytest.param(
        "%%block clean --upstream=load", BlockHeader(name="clean", upstream=("load",)), id="equals"
    ),
    pytest.param("%%block clean --upstream", BlockHeader(name="clean"), id="empty-upstream"),
    *(
        pytest.param(
            f"%%block b --kind {kind}", BlockHeader(name="b", kind=kind), id=f"kind-{kind}"
        )
        for kind in BlockKind
    ),
    pytest.param("%%block b --retries 3", BlockHeader(name="b", retries=3), id="retries"),
    pytest.param("%%block b --retries 0", BlockHeader(name="b", retries=0), id="retries-zero"),
    pytest.param(
        "%%block b --retry-delay 2.5", BlockHeader(name="b", retry_delay=2.5), id="retry-delay"
    ),
    pytest.param(
        "%%block b --retry-delay 0", BlockHeader(name="b", retry_delay=0.0), id="retry-delay-zero"
    ),
    pytest.param("%%block b --timeout 300", BlockHeader(name="b", timeout=300.0), id="timeout"),
    pytest.param("%%block b --timeout 0.5", BlockHeader(name="b", timeout=0.5), id="timeout-float"),
    pytest.param(
        "%%block b --timeout 1e3", BlockHeader(name="b", timeout=1000.0), id="timeout-exp"
    ),
    pytest.param("%%block b --out df", BlockHeader(name="b", out=("df",)), id="out-one"),
    pytest.param(
        "%%block b --out df Summary", BlockHeader(name="b", out=("df", "Summary")), id="out-two"
    ),
    pytest.param(
        "%%block b --out df --out summary",
        BlockHeader(name="b", out=("df", "summary")),
        id="repeated-out-accumulates",
    ),
    pytest.param("%%block b --tests warn", BlockHeader(name="b", tests=Policy.WARN), id="warn"),
    pytest.param("%%block b --tests fail", BlockHeader(name="b", tests=Policy.FAIL), id="fail"),
    pytest.param("%%block b --skip", BlockHeader(name="b", skip=True), id="skip"),
    pytest.param(
        "%%block clean_trips --upstream load_trips --kind transformer --retries 2 "
        "--retry-delay 0.5 --timeout 300 --out df summary --tests warn --skip",
        BlockHeader(
            name="clean_trips",
            upstream=("load_trips",),
            kind=BlockKind.TRANSFORMER,
            retries=2,
            retry_delay=0.5,
            timeout=300.0,
            out=("df", "summary"),
            tests=Policy.WARN,
            skip=True,
        ),
        id="every-option",
    ),
    pytest.param(
        "%%block b --skip --timeout 5 --kind loader --upstream a",
        BlockHeader(name="b", upstream=("a",), kind=BlockKind.LOADER, timeout=5.0, skip=True),
        id="any-option-order",
    ),
]


@pytest.mark.parametrize(("line", "expected"), GOOD_HEADERS)
def test_parse_good_header(line: str, expected: BlockHeader) -> None:
    assert parse_header(line) == expected


def test_defaults() -> None:
    header = parse_header("%%block b")
    assert header.upstream == ()
    assert header.kind is BlockKind.CUSTOM
    assert header.retries == 0
    assert header.retry_delay == 1.0
    assert header.timeout is None
    assert header.out is None
    assert header.tests is Policy.FAIL
    assert header.skip is False


def test_parsing_twice_does_not_share_state() -> None:
    """The parser is module-global: an accumulated list must not leak into the next parse."""
    assert parse_header("%%block a --upstream x --out y").upstream == ("x",)
    again = parse_header("%%block b")
    assert again.upstream == ()
    assert again.out is None


def test_header_is_frozen() -> None:
    header = parse_header("%%block b")
    with pytest.raises(AttributeError):
        header.name = "other"  # type: ignore[misc]


# ---- round trip ------------------------------------------------------------------------------


@pytest.mark.parametrize(("line", "expected"), GOOD_HEADERS)
def test_format_round_trips(line: str, expected: BlockHeader) -> None:
    header = parse_header(line)
    assert parse_header(format_header(header)) == header


@pytest.mark.parametrize(
    ("header", "text"),
    [
        pytest.param(BlockHeader(name="a"), "%%block a", id="defaults-omitted"),
        pytest.param(
            BlockHeader(name="a", upstream=("b", "c"), retries=2, timeout=30.0),
            "%%block a --upstream b c --retries 2 --timeout 30",
            id="whole-numbers-without-point",
        ),
        pytest.param(
            BlockHeader(
                name="a",
                upstream=("b",),
                kind=BlockKind.EXPORTER,
                retries=1,
                retry_delay=0.25,
                timeout=1.5,
                out=("x",),
                tests=Policy.WARN,
                skip=True,
            ),
            "%%block a --upstream b --kind exporter --retries 1 --retry-delay 0.25 "
            "--timeout 1.5 --out x --tests warn --skip",
            id="every-option",
        ),
    ],
)
def test_format_is_canonical(header: BlockHeader, text: str) -> None:
    assert format_header(header) == text
    assert parse_header(text) == header


# ---- errors ----------------------------------------------------------------------------------

BAD_HEADERS = [
    # (line, text the message contains, text the hint contains)
    pytest.param("%%block", "the block has no name", "%%block my_block", id="no-name"),
    pytest.param("%%block   ", "the block has no name", "%%block my_block", id="blank-name"),
    pytest.param(
        "%%block --kind loader", "the block has no name", "%%block my_block", id="option-first"
    ),
    pytest.param(
        "%%block Load", "invalid block name `Load`", "use a name like `load`", id="uppercase"
    ),
    pytest.param(
        "%%block my-block", "invalid block name `my-block`", "`my_block`", id="dash-in-name"
    ),
    pytest.param("%%block 1st", "invalid block name `1st`", "`_1st`", id="leading-digit"),
    pytest.param("%%block clé", "invalid block name `clé`", "use a name like", id="non-ascii"),
    pytest.param("%%block class", "invalid block name `class`", "`class_`", id="keyword"),
    pytest.param("%%block a b", "unexpected argument `b`", "--upstream", id="two-names"),
    pytest.param(
        "%%block a --upsteam b",
        "unknown option `--upsteam`; did you mean `--upstream`?",
        "known options: --upstream",
        id="misspelt-upstream",
    ),
    pytest.param(
        "%%block a -retries 2",
        "unknown option `-retries`; did you mean `--retries`?",
        "known options",
        id="single-dash",
    ),
    pytest.param(
        "%%block a --retry_delay 2",
        "unknown option `--retry_delay`; did you mean `--retry-delay`?",
        "known options",
        id="underscore-option",
    ),
    pytest.param(
        "%%block a --timout=3",
        "unknown option `--timout`; did you mean `--timeout`?",
        "known options",
        id="misspelt-with-equals",
    ),
    pytest.param(
        "%%block a --frobnicate",
        "unknown option `--frobnicate`",
        "known options: --upstream, --kind",
        id="unknown-option",
    ),
    pytest.param(
        "%%block a --kind lodaer",
        "`lodaer` is not one of loader, transformer, exporter, sensor, condition, custom; "
        "did you mean `loader`?",
        "usage: %%block NAME",
        id="misspelt-kind",
    ),
    pytest.param(
        "%%block a --kind transformers", "did you mean `transformer`?", "usage", id="plural-kind"
    ),
    pytest.param(
        "%%block a --kind zzz",
        "`zzz` is not one of loader, transformer",
        "usage",
        id="unknown-kind",
    ),
    pytest.param("%%block a --tests wan", "did you mean `warn`?", "usage", id="misspelt-tests"),
    pytest.param(
        "%%block a --retries -1",
        "--retries needs a whole number >= 0, got `-1`",
        "usage",
        id="negative-retries",
    ),
    pytest.param("%%block a --retries 1.5", "--retries needs a whole number", "usage", id="frac"),
    pytest.param("%%block a --retries two", "got `two`", "usage", id="retries-not-number"),
    pytest.param(
        "%%block a --retry-delay -0.5",
        "--retry-delay needs a number of seconds >= 0",
        "usage",
        id="negative-delay",
    ),
    pytest.param(
        "%%block a --timeout 0",
        "--timeout needs a number of seconds > 0, got `0`",
        "usage",
        id="zero-timeout",
    ),
    pytest.param("%%block a --timeout inf", "got `inf`", "usage", id="infinite-timeout"),
    pytest.param("%%block a --timeout nan", "got `nan`", "usage", id="nan-timeout"),
    pytest.param("%%block a --timeout", "expected one argument", "usage", id="missing-value"),
    pytest.param("%%block a --out", "expected at least one argument", "usage", id="empty-out"),
    pytest.param(
        "%%block a --out 2x",
        "`2x` is not an identifier",
        "--out df summary",
        id="out-not-identifier",
    ),
    pytest.param("%%block a --out for", "`for` is not an identifier", "--out", id="out-keyword"),
    pytest.param(
        "%%block a --upstream Load",
        "invalid --upstream `Load`",
        "`load`",
        id="bad-upstream-name",
    ),
    pytest.param(
        "%%block a --upstream a",
        "block `a` lists itself in --upstream",
        "remove its own name",
        id="self-upstream",
    ),
    pytest.param(
        "%%block a --upstream 'b", "cannot split the header", "close every quote", id="open-quote"
    ),
    pytest.param("%%block a --skip=yes", "--skip", "usage", id="flag-with-value"),
]


@pytest.mark.parametrize(("line", "message", "hint"), BAD_HEADERS)
def test_bad_header(line: str, message: str, hint: str) -> None:
    with pytest.raises(HeaderError) as caught:
        parse_header(line)
    assert message in caught.value.message
    assert hint in caught.value.hint
    assert caught.value.hint, "every header error says how to fix it"


def test_header_error_text_includes_hint() -> None:
    with pytest.raises(HeaderError) as caught:
        parse_header("%%block a --upsteam b")
    assert str(caught.value) == (
        "unknown option `--upsteam`; did you mean `--upstream`?\n  hint: " + caught.value.hint
    )


# ---- recognising block cells -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param("%%block a\nx = 1", True, id="block"),
        pytest.param("%%block", True, id="bare-magic"),
        # IPython finds the cell magic after blank lines and indentation; so must Blockbook.
        pytest.param("\n\n%%block a\nx = 1", True, id="leading-blank-lines"),
        pytest.param(" \n\t\n%%block a\nx = 1", True, id="leading-whitespace-lines"),
        pytest.param("  %%block a\n  x = 1", True, id="indented-cell"),
        pytest.param("\r\n%%block a\r\nx = 1", True, id="crlf"),
        pytest.param("   ", False, id="blank"),
        pytest.param("%%block\ta", True, id="tab"),
        pytest.param("%%blocks a", False, id="other-magic"),
        pytest.param("%%time\nx = 1", False, id="cell-magic"),
        pytest.param("x = 1\n%%block a", False, id="not-first-line"),
        pytest.param("# %%block a", False, id="comment"),
        pytest.param("", False, id="empty"),
    ],
)
def test_is_block_cell(source: str, expected: bool) -> None:
    assert is_block_cell(source) is expected


@pytest.mark.parametrize(
    ("source", "header", "body"),
    [
        pytest.param("%%block a\nx = 1\ny = 2", "%%block a", "x = 1\ny = 2", id="body"),
        pytest.param("%%block a", "%%block a", "", id="no-body"),
        pytest.param("\n%%block a\nx = 1", "%%block a", "x = 1", id="leading-newline"),
        pytest.param(" \n  %%block a \n  x = 1", "%%block a", "  x = 1", id="indented"),
        pytest.param("%%block a\r\nx = 1\r\n", "%%block a", "x = 1\r\n", id="crlf"),
    ],
)
def test_split_block_cell(source: str, header: str, body: str) -> None:
    assert split_block_cell(source) == (header, body)


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("\n  \n%%block a\nx = 1\n", id="leading-whitespace-lines"),
        pytest.param("  %%block a\n  x = 1\n", id="indented-cell"),
        pytest.param("\r\n%%block a\r\nx = 1\r\n", id="crlf"),
    ],
)
def test_block_cells_are_the_cells_ipython_runs_as_blocks(source: str) -> None:
    """The kernel runs `%%block` whenever IPython's transformer turns the cell into that magic."""
    from IPython.core.inputtransformer2 import TransformerManager

    assert "run_cell_magic('block', 'a'" in TransformerManager().transform_cell(source)
    assert is_block_cell(source)
    assert parse_header(split_block_cell(source)[0]) == BlockHeader(name="a")


# ---- sensors and trigger rules ---------------------------------------------------------------

SENSOR_AND_RULE_HEADERS = [
    *(
        pytest.param(
            f"%%block b --trigger-rule {rule}",
            BlockHeader(name="b", trigger_rule=rule),
            id=f"trigger-rule-{rule}",
        )
        for rule in TriggerRule
    ),
    pytest.param(
        "%%block wait --kind sensor",
        BlockHeader(name="wait", kind=BlockKind.SENSOR, poke_interval=5.0, sensor_timeout=3600.0),
        id="sensor-defaults",
    ),
    pytest.param(
        "%%block wait --kind sensor --poke-interval 0.2 --sensor-timeout 90",
        BlockHeader(name="wait", kind=BlockKind.SENSOR, poke_interval=0.2, sensor_timeout=90.0),
        id="sensor-options",
    ),
    pytest.param(
        "%%block wait --sensor-timeout=1e3 --poke-interval=2 --kind=sensor",
        BlockHeader(name="wait", kind=BlockKind.SENSOR, poke_interval=2.0, sensor_timeout=1000.0),
        id="sensor-options-before-kind",
    ),
    pytest.param(
        "%%block wait --kind sensor --poke-interval 5 --sensor-timeout 3600",
        BlockHeader(name="wait", kind=BlockKind.SENSOR),
        id="sensor-defaults-spelt-out",
    ),
    pytest.param(
        "%%block gate --kind condition --upstream a --trigger-rule one_success",
        BlockHeader(
            name="gate",
            upstream=("a",),
            kind=BlockKind.CONDITION,
            trigger_rule=TriggerRule.ONE_SUCCESS,
        ),
        id="condition-with-rule",
    ),
]


@pytest.mark.parametrize(("line", "expected"), SENSOR_AND_RULE_HEADERS)
def test_parse_sensor_and_rule_headers(line: str, expected: BlockHeader) -> None:
    header = parse_header(line)
    assert header == expected
    assert parse_header(format_header(header)) == header


def test_sensor_and_rule_defaults() -> None:
    header = parse_header("%%block b")
    assert header.trigger_rule is TriggerRule.ALL_SUCCESS
    assert header.poke_interval == 5.0
    assert header.sensor_timeout == 3600.0


@pytest.mark.parametrize(
    ("header", "text"),
    [
        pytest.param(
            BlockHeader(
                name="wait",
                upstream=("a",),
                kind=BlockKind.SENSOR,
                timeout=2.0,
                trigger_rule=TriggerRule.ALL_DONE,
                poke_interval=0.25,
                sensor_timeout=60.0,
            ),
            "%%block wait --upstream a --kind sensor --timeout 2 --trigger-rule all_done "
            "--poke-interval 0.25 --sensor-timeout 60",
            id="sensor-every-option",
        ),
        pytest.param(
            BlockHeader(name="wait", kind=BlockKind.SENSOR),
            "%%block wait --kind sensor",
            id="sensor-defaults-omitted",
        ),
        pytest.param(
            BlockHeader(name="b", trigger_rule=TriggerRule.ONE_SUCCESS),
            "%%block b --trigger-rule one_success",
            id="rule",
        ),
    ],
)
def test_format_sensor_and_rule_is_canonical(header: BlockHeader, text: str) -> None:
    assert format_header(header) == text
    assert parse_header(text) == header


@pytest.mark.parametrize(
    ("line", "message", "hint"),
    [
        pytest.param(
            "%%block a --poke-interval 1",
            "--poke-interval only applies to sensors, and this block's kind is `custom`",
            "add `--kind sensor`",
            id="poke-interval-without-sensor",
        ),
        pytest.param(
            "%%block a --kind condition --sensor-timeout 10",
            "--sensor-timeout only applies to sensors, and this block's kind is `condition`",
            "or remove --sensor-timeout",
            id="sensor-timeout-on-condition",
        ),
        pytest.param(
            "%%block a --kind loader --poke-interval 1 --sensor-timeout 10",
            "--poke-interval and --sensor-timeout only apply to sensors",
            "--kind sensor",
            id="both-without-sensor",
        ),
        pytest.param(
            "%%block a --kind sensor --poke-interval 0",
            "--poke-interval needs a number of seconds > 0, got `0`",
            "usage",
            id="zero-poke-interval",
        ),
        pytest.param(
            "%%block a --kind sensor --sensor-timeout -5",
            "--sensor-timeout needs a number of seconds > 0, got `-5`",
            "usage",
            id="negative-sensor-timeout",
        ),
        pytest.param(
            "%%block a --kind sensor --sensor-timeout inf",
            "got `inf`",
            "usage",
            id="infinite-sensor-timeout",
        ),
        pytest.param(
            "%%block a --trigger-rule one_sucess",
            "`one_sucess` is not one of all_success, all_done, one_success; "
            "did you mean `one_success`?",
            "usage: %%block NAME",
            id="misspelt-rule",
        ),
        pytest.param(
            "%%block a --trigger-rule any", "is not one of all_success", "usage", id="unknown-rule"
        ),
        pytest.param(
            "%%block a --trigger_rule all_done",
            "unknown option `--trigger_rule`; did you mean `--trigger-rule`?",
            "known options",
            id="underscore-rule-option",
        ),
        pytest.param(
            "%%block a --kind sensor --poke-intervall 1",
            "did you mean `--poke-interval`?",
            "--sensor-timeout",
            id="misspelt-poke-interval",
        ),
        pytest.param(
            "%%block a --kind sensor --sensor-timout 1",
            "did you mean `--sensor-timeout`?",
            "known options",
            id="misspelt-sensor-timeout",
        ),
    ],
)
def test_bad_sensor_and_rule_header(line: str, message: str, hint: str) -> None:
    with pytest.raises(HeaderError) as caught:
        parse_header(line)
    assert message in caught.value.message
    assert hint in caught.value.hint


def test_usage_names_the_new_options() -> None:
    for option in ("--trigger-rule", "--poke-interval", "--sensor-timeout"):
        assert option in USAGE
        assert option in OPTIONS
