"""Block templates: the ready-to-edit block cells `%block_new KIND SOURCE [NAME]` inserts.

Each template is a complete block: a header, a body using the usual library for the job, and an
`@test`. It runs as inserted once the names it reads (its parameters, such as `csv_path`) are set,
by a plain cell, an upstream block or `pipeline.toml` `[params]`.

Plain data and lookups, shared by the `%block_new` magic (`kernel_magics.templates`) and the REST
server (`GET templates`, for JupyterLab's "new block" menu). Importing this module stays cheap:
the libraries the templates use are imported by the rendered cells, not here.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from pipelines.assembly.header import BlockHeader, BlockKind, BlockName, format_header, parse_header
from pipelines.errors import HeaderError, InvalidInputError

USAGE = "%block_new KIND [SOURCE] [NAME]"


class TemplateNotFound(InvalidInputError):
    """`%block_new` arguments that ask for no template, or for a bad block name. The hint, when
    there is one, is the list of templates (`listing`)."""


@dataclass(frozen=True, slots=True)
class Template:
    kind: BlockKind
    source: str
    """What the block reads or writes (`csv`, `sql`, ...); with `kind`, the template's key."""
    description: str
    default_name: str
    parameters: tuple[str, ...]
    """The names the body reads and the user sets (a plain cell, an upstream block or params)."""
    body: str
    test: str

    @property
    def key(self) -> str:
        return f"{self.kind} {self.source}"

    def render(self, name: str | None = None) -> str:
        """The cell text: header, body, then the `@test`."""
        header = format_header(
            BlockHeader(name=BlockName(name or self.default_name), kind=self.kind)
        )
        return f"{header}\n{self.body.strip()}\n\n\n{self.test.strip()}"


_SQL_DATABASE = """\
# `database`: a SQLAlchemy URL, or the name of a [connections.NAME] entry in blockbook.toml
# (its ${ENV_VAR} references are filled in from the environment, so no password is written here).
"""

TEMPLATES: tuple[Template, ...] = (
    Template(
        BlockKind.LOADER,
        "csv",
        "Read a CSV file with pandas",
        "load_csv",
        ("csv_path",),
        """
import pandas as pd

# Name the date/time columns in _date_columns so they load as datetimes rather than text, and
# give _dtypes for the columns pandas would guess wrong ("Int64" for integers with gaps).
_date_columns = []  # e.g. ["pickup_datetime", "dropoff_datetime"]
_dtypes = {}  # e.g. {"vendor_id": "Int64", "store_and_fwd_flag": "string"}

df = pd.read_csv(csv_path, parse_dates=_date_columns, dtype=_dtypes)
""",
        """
@test
def has_rows(df):
    assert len(df) > 0, "the CSV file has no data rows"
""",
    ),
    Template(
        BlockKind.LOADER,
        "parquet",
        "Read a Parquet file or folder with pandas",
        "load_parquet",
        ("parquet_path",),
        """
import pandas as pd

# `parquet_path`: one Parquet file, or a folder of them (a partitioned dataset). Read only what
# you need with columns=[...] and filters=[("year", "==", 2024)].
df = pd.read_parquet(parquet_path)
""",
        """
@test
def has_rows(df):
    assert len(df) > 0, "the Parquet data has no rows"
""",
    ),
    Template(
        BlockKind.LOADER,
        "sql",
        "Run a SQL query into pandas with SQLAlchemy",
        "load_sql",
        ("database", "query"),
        """
import pandas as pd
from sqlalchemy import create_engine, text

from pipelines.assembly.connections import connection_url

"""
        + _SQL_DATABASE
        + """\
# `query`: the SELECT to run. Pass values as :name placeholders with params={"name": value}
# rather than formatting them into the text; parse_dates=[...] for dates stored as text.
_engine = create_engine(connection_url(database))
try:
    with _engine.connect() as _connection:
        df = pd.read_sql(text(query), _connection)
finally:
    _engine.dispose()
""",
        """
@test
def has_rows(df):
    assert len(df) > 0, "the query returned no rows"
""",
    ),
    Template(
        BlockKind.LOADER,
        "http",
        "Fetch JSON records from an HTTP API",
        "load_http",
        ("url",),
        """
import json
import urllib.request

import pandas as pd

# `url`: an endpoint answering JSON, either a list of records or an object holding one (name
# its key in _records_key). Add headers as needed, e.g. "Authorization": f"Bearer {api_token}"
# (parameters named like tokens or passwords are masked in run output).
_records_key = None  # e.g. "results" for {"results": [...], "next": ...}
_request = urllib.request.Request(url, headers={"Accept": "application/json"})
# urlopen raises HTTPError on a 4xx/5xx answer, so a failing API fails the block; the timeout
# (seconds) keeps a server that never answers from holding up the run.
with urllib.request.urlopen(_request, timeout=30) as _response:
    _payload = json.load(_response)

df = pd.json_normalize(_payload if _records_key is None else _payload[_records_key])
""",
        """
@test
def has_records(df):
    assert len(df) > 0, "the API returned no records"
""",
    ),
    Template(
        BlockKind.TRANSFORMER,
        "pandas",
        "Clean `df` into `df_clean` with pandas",
        "transform",
        ("df",),
        '''
import re

# Reads the frame `df` (a loader's output) and publishes `df_clean`: column names in snake_case,
# rows without any value and exact duplicate rows dropped. Edit to taste.
_NON_WORD = re.compile(r"\\W+")
# Word boundaries inside CamelCase: `VendorID` -> `Vendor_ID`, `PULocationID` -> `PU_Location_ID`.
_ACRONYM_END = re.compile(r"([A-Z]+)([A-Z][a-z])")
_LOWER_TO_UPPER = re.compile(r"([a-z0-9])([A-Z])")


def _snake_case(name):
    """`Pickup Date/Time` -> `pickup_date_time`, `PULocationID` -> `pu_location_id`."""
    text = _LOWER_TO_UPPER.sub(r"\\1_\\2", _ACRONYM_END.sub(r"\\1_\\2", str(name).strip()))
    return _NON_WORD.sub("_", text).strip("_").lower()


df_clean = (
    df.rename(columns=_snake_case)
    .dropna(how="all")
    .drop_duplicates()
    .reset_index(drop=True)
)
''',
        """
@test
def no_duplicate_rows(df_clean):
    assert not df_clean.duplicated().any(), "df_clean has duplicate rows"


@test
def no_empty_rows(df_clean):
    assert not df_clean.isna().all(axis=1).any(), "df_clean has rows without any value"
""",
    ),
    Template(
        BlockKind.EXPORTER,
        "sql",
        "Replace a database table with `df_clean`",
        "export_sql",
        ("database", "df_clean", "table"),
        """
import sqlalchemy as sa

from pipelines.assembly.connections import connection_url

"""
        + _SQL_DATABASE
        + """\
# Writes the frame `df_clean` to the table named `table` in one transaction, then counts the rows
# it added. _if_exists: "replace" the table, "append" rows to it, or "fail" if it exists;
# _schema: the table's schema (None: the connection's default). dtype={...} picks column types.
_schema = None  # e.g. "analytics"
_if_exists = "replace"
_engine = sa.create_engine(connection_url(database))
_rows = sa.select(sa.func.count()).select_from(sa.table(table, schema=_schema))
try:
    with _engine.begin() as _connection:
        _exists = sa.inspect(_connection).has_table(table, schema=_schema)
        _before = _connection.execute(_rows).scalar_one() if _exists else 0
        if _if_exists == "replace":
            _before = 0
        df_clean.to_sql(
            table, _connection, schema=_schema, if_exists=_if_exists, index=False, chunksize=1_000
        )
        _after = _connection.execute(_rows).scalar_one()
finally:
    _engine.dispose()

exported_rows = int(_after - _before)
""",
        """
@test
def every_row_is_exported(exported_rows, df_clean):
    assert exported_rows == len(df_clean), f"exported {exported_rows} of {len(df_clean)} rows"
""",
    ),
    Template(
        BlockKind.EXPORTER,
        "parquet",
        "Write `df_clean` to Parquet atomically",
        "export_parquet",
        ("df_clean", "output_path"),
        """
import shutil
import uuid
from pathlib import Path

import pyarrow.parquet as pq

# Writes the frame `df_clean` to `output_path` atomically: into a temporary path in the same
# folder, which then replaces the target, so readers never see half of it. With _partition_cols
# the target is a dataset folder with one subfolder per value (year=2024/month=3/...), which
# readers can skip; without, one file.
_partition_cols = []  # e.g. ["year", "month"]
_target = Path(output_path)
_target.parent.mkdir(parents=True, exist_ok=True)
_temporary = _target.with_name(f".{_target.name}.{uuid.uuid4().hex}.tmp")
_previous = _target.with_name(f".{_target.name}.{uuid.uuid4().hex}.old")
try:
    df_clean.to_parquet(_temporary, partition_cols=_partition_cols or None, index=False)
    if _target.is_dir() or (_partition_cols and _target.exists()):
        _target.rename(_previous)  # a folder cannot replace, or be replaced, in one step
    _temporary.replace(_target)
except BaseException:
    shutil.rmtree(_temporary, ignore_errors=True)
    _temporary.unlink(missing_ok=True)
    if _previous.exists() and not _target.exists():
        _previous.rename(_target)  # a failed write leaves the previous dataset in place
    raise
if _previous.is_dir():
    shutil.rmtree(_previous)
_previous.unlink(missing_ok=True)

exported_rows = pq.ParquetDataset(_target).read().num_rows
""",
        """
@test
def every_row_is_exported(exported_rows, df_clean):
    assert exported_rows == len(df_clean), f"exported {exported_rows} of {len(df_clean)} rows"
""",
    ),
    Template(
        BlockKind.SENSOR,
        "file",
        "Check that a file has arrived (`ready`)",
        "wait_for_file",
        ("watch_path",),
        """
from pathlib import Path

# A sensor runs again every --poke-interval seconds (default 5) until `ready` is true, and fails
# after --sensor-timeout seconds (default 3600), so its downstream blocks don't run. Here:
# `watch_path` exists and is not empty (a writer may still be creating it).
_target = Path(watch_path)
ready = _target.is_file() and _target.stat().st_size > 0
""",
        """
@test
def is_ready(ready):
    assert ready, f"not ready: {watch_path} is missing or empty"
""",
    ),
)


def find_template(words: list[str]) -> tuple[Template, str | None]:
    """The template and the optional block name that `%block_new` arguments ask for.

    `KIND SOURCE [NAME]`; a kind with a single template may leave out its source. Raises
    `TemplateNotFound` with a did-you-mean, its hint the template list, when nothing matches.
    """
    if not words:
        raise TemplateNotFound(f"usage: {USAGE}", hint=listing())
    kind, *rest = words
    kinds = list(dict.fromkeys(str(template.kind) for template in TEMPLATES))
    if kind not in kinds:
        if kind in {str(member) for member in BlockKind}:
            raise TemplateNotFound(f"%block_new: no template for kind `{kind}` yet", hint=listing())
        raise TemplateNotFound(
            f"%block_new: unknown kind `{kind}`{_guess(kind, kinds)}", hint=listing()
        )
    candidates = [template for template in TEMPLATES if template.kind == kind]
    sources = [template.source for template in candidates]
    if not rest:
        if len(candidates) == 1:
            return candidates[0], None
        raise TemplateNotFound(
            f"%block_new {kind}: name a source, one of {', '.join(sources)}", hint=listing()
        )
    source, *names = rest
    if source not in sources:
        raise TemplateNotFound(
            f"%block_new {kind}: unknown source `{source}`{_guess(source, sources)} "
            f"({kind} sources: {', '.join(sources)})",
            hint=listing(),
        )
    if len(names) > 1:
        raise TemplateNotFound(f"%block_new: too many arguments; usage: {USAGE}")
    template = candidates[sources.index(source)]
    name = names[0] if names else None
    if name is not None:
        try:
            parse_header(f"{name} --kind {kind}")
        except HeaderError as exc:
            raise TemplateNotFound(f"%block_new: {exc}") from None
    return template, name


def listing() -> str:
    """One line per template: kind and source, what it does, the names it reads."""
    key_width = max(len(template.key) for template in TEMPLATES)
    text_width = max(len(template.description) for template in TEMPLATES)
    lines = [f"Templates ({USAGE}):"]
    for template in TEMPLATES:
        lines.append(
            f"  {template.key:<{key_width}}  {template.description:<{text_width}}  "
            f"reads {', '.join(template.parameters)}"
        )
    return "\n".join(lines)


def _guess(word: str, choices: list[str]) -> str:
    guess = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    return f"; did you mean `{guess[0]}`?" if guess else ""
