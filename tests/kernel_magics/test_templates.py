"""`%block_new`: every template, inserted by the magic in a real kernel, runs as a real block.

The magic inserts its cell through IPython's `set_next_input`, which reaches the frontend as a
payload of the execute reply. These tests read that payload the way JupyterLab does, then run
its text as the next cell, where the real `%%block` magic runs it and prints its status.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from nbclient import NotebookClient
from nbformat import v4
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.pool import NullPool

from kernel_magics.templates import TEMPLATES, Template, find_template, listing
from pipelines.assembly.analysis import analyze
from pipelines.assembly.header import parse_header, split_block_cell
from pipelines.store.run_store import DATABASE_URL_ENV
from tests.helpers.postgres import POSTGRES_URL, postgres_schema, schema_url

# Which kernel test runs each template as inserted; a new template needs a test here.
RUN_IN_A_KERNEL = {
    "loader csv": "test_file_templates_run_as_inserted",
    "loader parquet": "test_file_templates_run_as_inserted",
    "transformer pandas": "test_file_templates_run_as_inserted",
    "exporter parquet": "test_file_templates_run_as_inserted, test_templates_fit_real_extracts",
    "sensor file": "test_file_templates_run_as_inserted",
    "loader sql": "test_sql_templates_on_sqlite, test_sql_templates_on_postgresql",
    "exporter sql": "test_sql_templates_on_sqlite, test_sql_templates_on_postgresql",
    "loader http": "test_http_loader_against_a_local_server",
}

# A frame with what real extracts have: a duplicated row, an empty row, a spaced column name.
CSV = """\
trip_id,Pickup Time,Fare Amount,vendor
1,2024-03-01 08:00:00,12.5,a
2,2024-03-01 09:30:00,7.0,b
2,2024-03-01 09:30:00,7.0,b
,,,
3,2024-03-02 10:15:00,30.25,a
"""


# ---- a kernel driven like a frontend ------------------------------------------------------------


@dataclass
class Executed:
    status: str  # the execute reply's status: "ok" or "error"
    text: str  # printed text, results and error messages, in order
    inserted: list[str] = field(default_factory=list)  # `set_next_input` texts, as a frontend gets

    def __str__(self) -> str:
        return f"[{self.status}]\n{self.text}"


class Kernel:
    """One real kernel whose cells are added and run one at a time, as a person runs them."""

    def __init__(self, folder: Path) -> None:
        self.notebook = v4.new_notebook()
        self._replies: dict[int, Any] = {}
        self.client = NotebookClient(
            self.notebook,
            kernel_name="python3",
            timeout=60,
            allow_errors=True,
            resources={"metadata": {"path": str(folder)}},
            on_cell_executed=self._executed,
        )

    def _executed(self, cell: Any, cell_index: int, execute_reply: Any) -> None:
        self._replies[cell_index] = execute_reply

    def run(self, source: str) -> Executed:
        cell = v4.new_code_cell(source)
        self.notebook.cells.append(cell)
        index = len(self.notebook.cells) - 1
        self.client.execute_cell(cell, index)
        reply = self._replies[index]["content"]
        inserted = []
        for payload in reply.get("payload", []):
            if payload.get("source") == "set_next_input":
                assert payload["replace"] is False, "a template must go below, not replace"
                inserted.append(payload["text"])
        return Executed(reply["status"], _text(cell.outputs), inserted)

    def check(self, source: str) -> Executed:
        """Run a cell that must succeed."""
        executed = self.run(source)
        assert executed.status == "ok", f"cell failed:\n{source}\n{executed}"
        return executed

    def insert(self, arguments: str) -> str:
        """`%block_new ARGUMENTS` -> the text of the cell it inserts."""
        executed = self.check(f"%block_new {arguments}")
        assert len(executed.inserted) == 1, executed
        return executed.inserted[0]

    def block(self, cell: str) -> Executed:
        """Run a block cell that must succeed with every test passing."""
        executed = self.check(cell)
        name = parse_header(split_block_cell(cell)[0]).name
        assert f"block {name}: success" in executed.text, executed
        tests = analyze(split_block_cell(cell)[1]).tests
        assert tests
        for test in tests:
            assert f"test {test}: passed" in executed.text, executed
        return executed


def _text(outputs: list[Any]) -> str:
    parts = []
    for output in outputs:
        if output["output_type"] == "stream":
            parts.append(output["text"])
        elif output["output_type"] == "error":
            parts.append(f"{output['ename']}: {output['evalue']}\n")
        elif "text/plain" in output.get("data", {}):
            parts.append(output["data"]["text/plain"] + "\n")
    return "".join(parts)


@pytest.fixture
def start_kernel() -> Iterator[Callable[[Path], Kernel]]:
    """`start_kernel(folder)`: a kernel working in `folder` with both extensions loaded.

    Kernels inherit this process's environment when they start, so set variables first.
    """
    with ExitStack() as stack:

        def start(folder: Path) -> Kernel:
            kernel = Kernel(folder)
            stack.enter_context(kernel.client.setup_kernel())
            kernel.check("%load_ext kernel_magics\n%load_ext kernel_magics.templates")
            return kernel

        yield start


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project root with an empty blockbook.toml; the kernel works in its `pipe` folder."""
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    (tmp_path / "blockbook.toml").write_text("", encoding="utf-8")
    (tmp_path / "pipe").mkdir()
    return tmp_path


# ---- templates in a kernel ----------------------------------------------------------------------


def test_file_templates_run_as_inserted(
    project: Path, start_kernel: Callable[[Path], Kernel]
) -> None:
    data = project / "data"
    data.mkdir()
    (data / "trips.csv").write_text(CSV, encoding="utf-8")
    pd.read_csv(data / "trips.csv").to_parquet(data / "trips.parquet")
    output = project / "out" / "trips.parquet"  # its folder doesn't exist yet
    kernel = start_kernel(project / "pipe")
    kernel.check(
        f"csv_path = {str(data / 'trips.csv')!r}\n"
        f"parquet_path = {str(data / 'trips.parquet')!r}\n"
        f"output_path = {str(output)!r}\n"
        f"watch_path = {str(data / 'ready.flag')!r}"
    )

    load_csv = kernel.insert("loader csv")
    assert load_csv.startswith("%%block load_csv --kind loader\n")
    kernel.block(load_csv)
    kernel.check("assert df.shape == (5, 4), df.shape")
    # The parse_dates hint, followed: naming the column makes it a datetime column.
    edited = load_csv.replace("_date_columns = []", '_date_columns = ["Pickup Time"]')
    assert edited != load_csv
    kernel.block(edited)
    kernel.check('assert str(df["Pickup Time"].dtype).startswith("datetime64"), df.dtypes')

    kernel.block(kernel.insert("loader parquet"))
    kernel.check("assert df.shape == (5, 4), df.shape")

    kernel.block(kernel.insert("transformer"))
    kernel.check(
        "assert list(df_clean.columns) == ['trip_id', 'pickup_time', 'fare_amount', 'vendor']\n"
        "assert df_clean.trip_id.tolist() == [1, 2, 3], df_clean"
    )

    kernel.block(kernel.insert("exporter parquet"))
    kernel.check("assert exported_rows == 3")
    assert pd.read_parquet(output).trip_id.tolist() == [1, 2, 3]
    assert sorted(path.name for path in output.parent.iterdir()) == ["trips.parquet"]

    wait = kernel.insert("sensor file")
    assert wait.startswith("%%block wait_for_file --kind sensor\n")
    (data / "ready.flag").write_text("done", encoding="utf-8")
    kernel.block(wait)
    kernel.check("assert ready is True")
    (data / "ready.flag").unlink()
    # A sensor pokes until its --sensor-timeout: a short one fails it fast.
    quick = "--kind sensor --poke-interval 0.1 --sensor-timeout 0.5"
    not_ready = kernel.run(wait.replace("--kind sensor", quick, 1))
    assert not_ready.status == "error"
    assert "block wait_for_file: failed" in not_ready.text
    assert "sensor condition not met after 0.5 s" in not_ready.text, not_ready.text


# Column names as the NYC taxi extracts spell them.
TAXI_COLUMNS = {
    "VendorID": "vendor_id",
    "PULocationID": "pu_location_id",
    "LocationID": "location_id",
    "trip_distance": "trip_distance",
    "Pickup Date/Time": "pickup_date_time",
}


def test_templates_fit_real_extracts(project: Path, start_kernel: Callable[[Path], Kernel]) -> None:
    output = project / "out" / "trips"  # a dataset folder, where a single file was
    kernel = start_kernel(project / "pipe")
    kernel.check(
        "import pandas as pd\n"
        "df = pd.DataFrame([[1, 10, 20, 1.5, 'x'], [2, 11, 21, 0.5, 'y'], [1, 12, 22, 3.0, 'z']],"
        f" columns={list(TAXI_COLUMNS)!r})"
    )
    kernel.block(kernel.insert("transformer"))
    kernel.check(f"assert list(df_clean.columns) == {list(TAXI_COLUMNS.values())!r}, df_clean")

    kernel.check(f"output_path = {str(output)!r}")
    output.parent.mkdir()
    kernel.check("df_clean.to_parquet(output_path)")  # a single file there before: replaced too
    inserted = kernel.insert("exporter parquet")
    export = inserted.replace("_partition_cols = []", "_partition_cols = ['vendor_id']")
    assert export != inserted
    kernel.block(export)
    kernel.block(export)  # the second export replaces the first dataset
    kernel.check("assert exported_rows == 3")
    assert sorted(p.name for p in output.iterdir()) == ["vendor_id=1", "vendor_id=2"]
    assert sorted(p.name for p in output.parent.iterdir()) == ["trips"]  # no temporary left
    back = pd.read_parquet(output).sort_values("pu_location_id")
    assert back.pu_location_id.tolist() == [10, 11, 12]
    assert back.vendor_id.astype(int).tolist() == [1, 2, 1]


def test_sql_exporter_appends_on_request(
    project: Path, start_kernel: Callable[[Path], Kernel]
) -> None:
    database = project / "warehouse.db"
    kernel = start_kernel(project / "pipe")
    kernel.check(
        "import pandas as pd\n"
        f"database = {f'sqlite:///{database}'!r}\n"
        "table = 'trips'\n"
        "df_clean = pd.DataFrame({'trip_id': [1, 2, 3]})"
    )
    export = kernel.insert("exporter sql")
    kernel.block(export)
    appending = export.replace('_if_exists = "replace"', '_if_exists = "append"')
    assert appending != export
    kernel.block(appending)
    kernel.check("assert exported_rows == 3, exported_rows")  # the rows this export added
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT COUNT(*) FROM trips").fetchone() == (6,)


def test_sql_templates_on_sqlite(project: Path, start_kernel: Callable[[Path], Kernel]) -> None:
    database = project / "warehouse.db"
    kernel = start_kernel(project / "pipe")
    kernel.check(
        "import pandas as pd\n"
        f"database = {f'sqlite:///{database}'!r}\n"
        "table = 'trips'\n"
        "df_clean = pd.DataFrame({'trip_id': [1, 2, 3], 'fare': [12.5, 7.0, 30.25],"
        " 'vendor': ['a', 'b', 'a']})"
    )
    export = kernel.insert("exporter sql")
    kernel.block(export)
    kernel.block(export)  # if_exists="replace": the second export replaces the first
    kernel.check("assert exported_rows == 3")
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT COUNT(*) FROM trips").fetchone() == (3,)

    kernel.check("query = 'SELECT * FROM trips ORDER BY trip_id'")
    load = kernel.insert("loader sql")
    kernel.block(load)
    kernel.check("pd.testing.assert_frame_equal(df, df_clean)")
    # The placeholder hint, followed: a value passed as :low, not formatted into the query.
    kernel.check("query = 'SELECT trip_id FROM trips WHERE fare > :low ORDER BY trip_id'")
    edited = load.replace(
        "text(query), _connection)", 'text(query), _connection, params={"low": 10})'
    )
    assert edited != load
    kernel.block(edited)
    kernel.check("assert df.trip_id.tolist() == [1, 3], df")


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh schema of this test's own in the test database, dropped afterwards.

    Fails (never skips) when the server is unreachable: CI must run these tests.
    """
    with postgres_schema("bb_tpl") as schema:
        yield schema


def test_sql_templates_on_postgresql(
    project: Path,
    start_kernel: Callable[[Path], Kernel],
    pg_schema: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = make_url(POSTGRES_URL)
    # The named connection keeps every credential in the environment. With trust auth the
    # password is never asked for, so it exercises the escaping of `@`, `/` and `:` only.
    (project / "blockbook.toml").write_text(
        "[connections.warehouse]\n"
        f'url = "{base.drivername}://${{TEST_PG_USER}}:${{TEST_PG_PASSWORD}}@{base.host}:'
        f'{base.port or 5432}/{base.database}?options=-csearch_path%3D${{TEST_PG_SCHEMA}}"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("TEST_PG_USER", base.username or "postgres")
    monkeypatch.setenv("TEST_PG_PASSWORD", base.password or "n0t/used@all:really")
    monkeypatch.setenv("TEST_PG_SCHEMA", pg_schema)
    kernel = start_kernel(project / "pipe")  # after setenv: the kernel inherits it
    kernel.check(
        "import pandas as pd\n"
        "database = 'warehouse'\n"
        "table = 'trips'\n"
        "df_clean = pd.DataFrame({'trip_id': [1, 2, 3], 'fare': [12.5, 7.0, 30.25],"
        " 'vendor': ['a', 'b', 'a']})"
    )
    export = kernel.insert("exporter sql")
    kernel.block(export)
    admin = create_engine(POSTGRES_URL, poolclass=NullPool)
    try:
        with admin.connect() as connection:
            count = connection.execute(text(f'SELECT COUNT(*) FROM "{pg_schema}".trips'))
            assert count.scalar_one() == 3
        # The schema option: a table in another schema than the connection's default.
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{pg_schema}_other"'))
        try:
            other = export.replace("_schema = None", f"_schema = {pg_schema + '_other'!r}")
            assert other != export
            kernel.block(other)
            with admin.connect() as connection:
                moved = connection.execute(text(f'SELECT COUNT(*) FROM "{pg_schema}_other".trips'))
                assert moved.scalar_one() == 3
        finally:
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{pg_schema}_other" CASCADE'))
    finally:
        admin.dispose()

    # The loader gets a URL instead of a name: both work.
    url = schema_url(pg_schema)
    kernel.check(f"database = {url!r}\nquery = 'SELECT * FROM trips ORDER BY trip_id'")
    load = kernel.insert("loader sql")
    kernel.block(load)
    kernel.check("pd.testing.assert_frame_equal(df, df_clean)")

    kernel.check("database = 'wharehouse'")
    misspelt = kernel.run(load)
    assert misspelt.status == "error"
    assert "block load_sql: failed" in misspelt.text
    assert "no connection named `wharehouse`" in misspelt.text
    assert "did you mean `warehouse`?" in misspelt.text


API_RECORDS = (
    {"id": 1, "fare": {"amount": 12.5, "currency": "USD"}},
    {"id": 2, "fare": {"amount": 7.0, "currency": "USD"}},
)


class _Api(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/trips.json":
            body, status = json.dumps(API_RECORDS).encode(), 200
        else:
            body, status = b'{"error": "boom"}', 500
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def api() -> Iterator[str]:
    """A JSON API on 127.0.0.1 (no outside network): its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_http_loader_against_a_local_server(
    project: Path, start_kernel: Callable[[Path], Kernel], api: str
) -> None:
    kernel = start_kernel(project / "pipe")
    kernel.check(f"url = {api + '/trips.json'!r}")
    load = kernel.insert("loader http")
    kernel.block(load)
    kernel.check(
        "assert list(df.columns) == ['id', 'fare.amount', 'fare.currency'], df.columns\n"
        "assert df['fare.amount'].tolist() == [12.5, 7.0]"
    )
    kernel.check(f"url = {api + '/broken'!r}")
    broken = kernel.run(load)
    assert broken.status == "error"
    assert "block load_http: failed" in broken.text
    assert "HTTP Error 500" in broken.text


def test_block_new_lists_inserts_and_explains_mistakes(
    project: Path, start_kernel: Callable[[Path], Kernel]
) -> None:
    kernel = start_kernel(project / "pipe")
    listed = kernel.check("%block_new")
    assert not listed.inserted
    for template in TEMPLATES:
        line = rf"\n  {template.key}\s+{re.escape(template.description)}\s+reads "
        assert re.search(line, listed.text), template.key
    assert listed.text.strip() == listing()
    assert all(len(line) <= 100 for line in listed.text.splitlines())

    named = kernel.insert("exporter sql trips_to_warehouse")
    assert named.startswith("%%block trips_to_warehouse --kind exporter\n")

    for arguments, expected in [
        ("loadr csv", "did you mean `loader`?"),
        ("loader cvs", "did you mean `csv`?"),
        ("loader csv Trips", "invalid block name `Trips`"),
        ("condition", "no template for kind `condition` yet"),
    ]:
        mistake = kernel.run(f"%block_new {arguments}")
        assert mistake.status == "error", arguments
        assert "UsageError" in mistake.text, mistake
        assert expected in mistake.text, mistake
        assert not mistake.inserted


# ---- templates without a kernel -----------------------------------------------------------------


def test_every_template_is_run_in_a_kernel_test() -> None:
    assert sorted(RUN_IN_A_KERNEL) == sorted(template.key for template in TEMPLATES)
    names = {name for tests in RUN_IN_A_KERNEL.values() for name in tests.split(", ")}
    assert names <= set(globals())


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: t.key.replace(" ", "-"))
def test_a_template_is_a_well_formed_block(template: Template) -> None:
    cell = template.render()
    header_line, body = split_block_cell(cell)
    header = parse_header(header_line)
    assert (header.name, header.kind) == (template.default_name, template.kind)
    analysis = analyze(body)
    # The names it documents as parameters are exactly the ones it reads.
    assert sorted(analysis.inputs) == sorted(template.parameters)
    assert analysis.outputs, "a template publishes something"
    assert analysis.tests, "a template comes with an @test"
    assert all(len(line) <= 100 for line in cell.splitlines())
    assert cell == cell.strip()
    assert parse_header(split_block_cell(template.render("my_block"))[0]).name == "my_block"


def test_sql_templates_take_a_url_or_a_connection_name() -> None:
    for key in ("loader sql", "exporter sql"):
        cell = next(t for t in TEMPLATES if t.key == key).render()
        assert "from pipelines.assembly.connections import connection_url" in cell
        assert "create_engine(connection_url(database))" in cell


def test_the_sensor_sets_ready_last() -> None:
    sensor = next(t for t in TEMPLATES if t.kind == "sensor")
    assert sensor.body.strip().splitlines()[-1].startswith("ready = ")


@pytest.mark.parametrize(
    ("words", "key", "name"),
    [
        (["loader", "csv"], "loader csv", None),
        (["loader", "sql", "orders"], "loader sql", "orders"),
        (["transformer"], "transformer pandas", None),
        (["transformer", "pandas", "clean_trips"], "transformer pandas", "clean_trips"),
        (["sensor"], "sensor file", None),
    ],
)
def test_find_template(words: list[str], key: str, name: str | None) -> None:
    template, chosen = find_template(words)
    assert (template.key, chosen) == (key, name)


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["loadr", "csv"], "unknown kind `loadr`; did you mean `loader`?"),
        (["exporter", "parqet"], "unknown source `parqet`; did you mean `parquet`?"),
        (["loader", "excel"], "(loader sources: csv, parquet, sql, http)"),
        (["loader"], "name a source, one of csv, parquet, sql, http"),
        (["custom"], "no template for kind `custom` yet"),
        (["loader", "csv", "a", "b"], "too many arguments"),
        (["loader", "csv", "class"], "invalid block name `class`"),
        (["transformer", "clean_trips"], "unknown source `clean_trips`"),
    ],
)
def test_find_template_explains_mistakes(words: list[str], expected: str) -> None:
    from IPython.core.error import UsageError

    with pytest.raises(UsageError) as info:
        find_template(words)
    assert expected in str(info.value)
    if "too many" not in expected and "invalid" not in expected:
        assert "Templates (" in str(info.value), "the template list comes with the error"


def test_the_templates_are_plain_data_of_pipelines_the_magic_only_presents() -> None:
    from pipelines.assembly import templates as data
    from pipelines.errors import InvalidInputError

    assert TEMPLATES is data.TEMPLATES
    assert find_template(["loader", "csv"]) == data.find_template(["loader", "csv"])
    with pytest.raises(InvalidInputError) as info:
        data.find_template(["loadr", "csv"])
    assert "did you mean `loader`?" in info.value.message
    assert info.value.hint == listing()
    # The REST server lists them: the data must load without IPython.
    code = (
        "import sys, pipelines.assembly.templates\n"
        "assert 'IPython' not in sys.modules and 'kernel_magics' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_extension_imports_no_data_library() -> None:
    # Loading the extension must stay quick: pandas and SQLAlchemy load when a block runs.
    code = (
        "import sys, kernel_magics, kernel_magics.templates\n"
        "heavy = {'pandas', 'sqlalchemy', 'pyarrow'} & set(sys.modules)\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
