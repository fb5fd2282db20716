from pipelines.assembly.code_hash import (
    block_code_hash,
    normalise_cell,
    notebook_code_hash,
)


def test_layout_that_does_not_change_the_code_keeps_the_hash() -> None:
    plain = "%%block clean --upstream load --retries 2\ndf = load_df()\nx = 1"
    reshaped = (
        "\r\n  %%block clean  --retries 2 --upstream load \r\ndf = load_df()   \r\nx = 1\r\n\r\n"
    )
    assert block_code_hash(reshaped) == block_code_hash(plain)
    assert (
        normalise_cell(reshaped)
        == "%%block clean --upstream load --retries 2\ndf = load_df()\nx = 1"
    )


def test_code_and_header_options_change_the_hash() -> None:
    base = block_code_hash("%%block clean\ndf = f()")
    assert block_code_hash("%%block clean\ndf = g()") != base
    assert block_code_hash("%%block clean --retries 1\ndf = f()") != base
    assert block_code_hash("%%block other\ndf = f()") != base
    assert block_code_hash("%%block clean\n    df = f()") != base  # indentation is code


def test_a_header_that_does_not_parse_still_hashes_by_its_words() -> None:
    assert block_code_hash("%%block clean --nope  1\nx = 1") == block_code_hash(
        "%%block clean --nope 1\nx = 1"
    )


def test_notebook_hash_covers_every_code_cell_in_order_and_skips_empty_ones() -> None:
    cells = ["import pandas as pd", "%%block a\nx = 1", "%%block b\ny = x"]
    base = notebook_code_hash(cells)
    assert notebook_code_hash([cells[0], "  \n", *cells[1:]]) == base
    assert notebook_code_hash([cells[0], cells[2], cells[1]]) != base
    assert notebook_code_hash(["import pandas as pd\n", *cells[1:]]) == base
    assert notebook_code_hash(["import numpy as np", *cells[1:]]) != base
    # Two cells are not one cell holding both.
    assert notebook_code_hash(["x = 1", "y = 2"]) != notebook_code_hash(["x = 1\ny = 2"])
