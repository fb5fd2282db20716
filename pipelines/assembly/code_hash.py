"""Hashes of code that ignore what doesn't change what the code does to its reader's eye.

A block's hash covers its header and its body: line endings are unified, trailing whitespace and
blank lines before and after the body are dropped, and the header is written in its canonical
form (`format_header`), so `--retries 2 --kind loader` and `--kind loader  --retries 2` agree.
Comments and blank lines inside the body do count: they are code a person edited, and telling
them apart from code needs a parser that a cell with a syntax error would defeat.

Pure functions over strings: no kernel, no store, no file system. Incremental runs compare a
block's hash with its last run's; run audits and `diff` record each notebook's hash.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from pipelines.assembly.header import format_header, is_block_cell, parse_header, split_block_cell
from pipelines.errors import HeaderError

_LINE_BREAK = re.compile(r"\r\n?")
# Kept apart from every character a cell can hold, so a cell can't forge a boundary.
_CELL_SEPARATOR = "\x00"


def normalise_code(source: str) -> str:
    """`source` with `\\n` line endings, no trailing whitespace and no leading or trailing blank
    lines."""
    lines = [line.rstrip() for line in _LINE_BREAK.sub("\n", source).split("\n")]
    return "\n".join(lines).strip("\n")


def normalise_header(line: str) -> str:
    """The canonical form of a `%%block` header line; a header that doesn't parse keeps its
    words, single-spaced (it is reported by assembly, but still gets a stable hash)."""
    try:
        return format_header(parse_header(line))
    except HeaderError:
        return " ".join(line.split())


def normalise_cell(source: str) -> str:
    """A code cell's source as it is hashed: a block cell's header canonical, any cell's code
    normalised (`normalise_code`)."""
    if not is_block_cell(source):
        return normalise_code(source)
    header, body = split_block_cell(_LINE_BREAK.sub("\n", source))
    normalised_body = normalise_code(body)
    header = normalise_header(header)
    return f"{header}\n{normalised_body}" if normalised_body else header


def block_code_hash(source: str) -> str:
    """sha256 (hex) of a block cell's normalised source, header line included."""
    return _sha256(normalise_cell(source))


def notebook_code_hash(code_cells: Iterable[str]) -> str:
    """sha256 (hex) of a notebook's code cells (their sources, in notebook order), each
    normalised as `normalise_cell` does; cells left empty by that don't count, so adding or
    removing an empty cell keeps the hash."""
    normalised = (normalise_cell(source) for source in code_cells)
    return _sha256(_CELL_SEPARATOR.join(text for text in normalised if text))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
