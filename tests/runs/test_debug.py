"""`blockbook debug RUN BLOCK`: a new notebook that re-creates one block of a past run with its
exact inputs, parameters and working folder, run here with real kernels (nbclient)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell

from pipelines.rundir.artifacts import ArtifactStore
from pipelines.runs.runner import RunResult
from pipelines.status import BlockStatus, RunStatus
from pipelines.store.run_store import DATABASE_URL_ENV, RunStore
from tests.helpers.notebooks import make_pipeline, nb
from tests.helpers.runs import RunHelper, assert_no_kernels, blockbook, source_hashes, statuses

TOKEN = "tok-D3BUG-4242-plugh"
TOKEN_SHA = hashlib.sha256(TOKEN.encode()).hexdigest()
PASSWORD = "pw-XYZZY-77"
URL = f"postgresql://u:{PASSWORD}@db.example/prod"
URL_SHA = hashlib.sha256(URL.encode()).hexdigest()
SECRETS = {"api_token": TOKEN, "database_url": URL}
PARAMS_TOML = "[params]\nday = 2024-01-31\nfactor = 2\n"

LOAD = """%%block load
import pandas as pd

df = pd.DataFrame({"id": [1, 2, 3, 4], "amount": [5.0, 2.5, -1.5, 7.0]})
"""

# Reads a date parameter (a string would have no .isoformat) and defines a @test.
SCALE = """%%block scale --out scaled
scaled = df.assign(amount=df.amount * factor, day=day.isoformat())

@test
def keeps_rows(scaled, df):
    assert len(scaled) == len(df)
"""

# Needs the real secret, a file relative to the notebook's folder, and fails on row 3.
CLEAN = f"""%%block clean
import hashlib
import pathlib

assert hashlib.sha256(api_token.encode()).hexdigest() == {TOKEN_SHA!r}, "not the real token"
assert hashlib.sha256(database_url.encode()).hexdigest() == {URL_SHA!r}, "not the real URL"
limit = float(pathlib.Path("limit.txt").read_text())
for row in df.itertuples():
    if row.amount < 0:
        raise ValueError(f"row {{row.id}}: negative amount {{row.amount}} (limit {{limit}})")
cleaned = df[df.amount <= limit]
"""

REPORT = "%%block report\ntotal = cleaned.amount.sum()"


@dataclass
class Ran:
    project: Path
    folder: Path
    result: RunResult
    store: RunStore
    helper: RunHelper

    @property
    def run_id(self) -> str:
        return str(self.result.run_id)

    def debug(self, *args: str) -> Any:
        return blockbook(self.project, "debug", *args)


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ran]:
    """One failed run of the two-notebook pipeline, shared by the tests of this file."""
    project = tmp_path_factory.mktemp("debug")
    (project / "blockbook.toml").write_text("", encoding="utf-8")
    folder = make_pipeline(
        project, {"a.ipynb": nb(LOAD), "b.ipynb": nb(SCALE, CLEAN, REPORT)}, PARAMS_TOML
    )
    (folder / "limit.txt").write_text("100", encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(DATABASE_URL_ENV, raising=False)
        with RunStore.open(project) as store:
            helper = RunHelper(project, store)
            result = helper(folder, params={**SECRETS, "factor": 3})
            assert result.status is RunStatus.FAILED, statuses(result)
            assert result.blocks["scale"].status is BlockStatus.SUCCESS, statuses(result)
            assert result.blocks["clean"].status is BlockStatus.FAILED, statuses(result)
            yield Ran(project, folder, result, store, helper)


def run_files(run_dir: Path) -> dict[str, str]:
    """The run folder's files, by content, leaving out the debug notebooks."""
    return {k: v for k, v in source_hashes(run_dir).items() if not k.startswith("debug/")}


def execute(path: Path, cwd: Path, *extra_cells: str) -> Any:
    """Execute a notebook with a kernel started in `cwd`; errors stay in the cells' outputs."""
    notebook = nbformat.read(path, as_version=4)
    notebook.cells += [new_code_cell(source) for source in extra_cells]
    client = NotebookClient(
        notebook,
        timeout=60,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute()
    return notebook


def errors(cell: Any) -> list[Any]:
    return [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]


def last_line_number(traceback: str) -> str:
    return re.findall(r"line (\d+)", re.sub(r"\x1b\[[0-9;]*m", "", traceback))[-1]


def test_debug_notebook_reproduces_the_failure_in_place(
    ran: Ran, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sources, run_before = source_hashes(ran.folder), run_files(ran.result.run_dir)
    answer = ran.debug(ran.run_id[:-1], "clean")  # a unique prefix of the id works

    assert answer.returncode == 0, answer.stderr
    path = Path(answer.stdout.strip())
    assert path == ran.result.run_dir / "debug" / "clean.ipynb"
    data = path.read_bytes()
    assert TOKEN.encode() not in data
    assert PASSWORD.encode() not in data
    notebook = nbformat.reads(data.decode(), as_version=4)
    nbformat.validate(notebook)
    assert [c.cell_type for c in notebook.cells] == ["markdown", "code", "code", "markdown"]
    intro, setup, code, error = notebook.cells
    assert f"Debug block `clean` of run `{ran.run_id}`" in intro.source
    provenance = notebook.metadata["blockbook"]
    assert provenance["run_id"] == ran.run_id
    assert (provenance["block"], provenance["source_notebook"]) == ("clean", "b.ipynb")
    assert (provenance["cell"], provenance["cell_id"]) == (3, "b-3")
    assert provenance["created_at"]
    # Parameters typed as the run had them; the secret comes from the environment.
    assert "day = datetime.date.fromisoformat('2024-01-31')" in setup.source
    assert "factor = 3" in setup.source
    assert "api_token = os.environ['API_TOKEN']" in setup.source
    assert "export API_TOKEN" in setup.source
    assert "database_url = os.environ['DATABASE_URL']" in setup.source
    assert f"os.chdir({str(ran.folder)!r})" in setup.source
    assert "df = _blockbook_run.load('load', 'df')" in setup.source
    assert code.source == "# %%block clean\n" + CLEAN.split("\n", 1)[1]
    record = ran.store.get_run(ran.run_id).block("clean")
    assert record.error in error.source
    assert record.attempt_records[-1].traceback.rstrip() in error.source

    monkeypatch.setenv("API_TOKEN", TOKEN)
    monkeypatch.setenv("DATABASE_URL", URL)
    monkeypatch.chdir(tmp_path)
    executed = execute(path, tmp_path)

    assert errors(executed.cells[1]) == [], errors(executed.cells[1])
    [raised] = errors(executed.cells[2])
    assert f"{raised['ename']}: {raised['evalue']}" == record.error
    assert record.error == "ValueError: row 3: negative amount -1.5 (limit 100.0)"
    # The header is kept as a comment so the line numbers match the run's traceback.
    assert last_line_number("\n".join(raised["traceback"])) == last_line_number(
        record.attempt_records[-1].traceback
    )
    assert source_hashes(ran.folder) == sources
    assert run_files(ran.result.run_dir) == run_before
    assert_no_kernels(ran.project)


def test_debug_of_a_successful_block_recreates_its_outputs(
    ran: Ran, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("API_TOKEN", "DATABASE_URL"):  # `scale` reads no secret: none is needed
        monkeypatch.delenv(variable, raising=False)
    target = tmp_path / "notes" / "scale-debug.ipynb"
    answer = ran.debug(ran.run_id, "scale", "--output", str(target))

    assert answer.returncode == 0, answer.stderr
    assert Path(answer.stdout.strip()) == target
    notebook = nbformat.read(target, as_version=4)
    setup = notebook.cells[1].source
    assert "os.environ" not in setup
    assert "# api_token: a secret this block does not read" in setup
    assert "# database_url: a secret this block does not read" in setup
    assert "from kernel_magics import test" in setup
    assert "with no error" in notebook.cells[-1].source

    again = tmp_path / "again"
    executed = execute(
        target,
        tmp_path,
        "from pipelines.rundir.artifacts import ArtifactStore\n"
        f"ArtifactStore(Path({str(again)!r})).save('scale', 'scaled', scaled)\n"
        "keeps_rows(scaled, df)",
    )

    # setup, body, the block's @test calls (item 4: debug runs the tests), the extra cell
    assert [errors(c) for c in executed.cells if c.cell_type == "code"] == [[], [], [], []]
    recreated = ArtifactStore(again).load("scale", "scaled")
    pd.testing.assert_frame_equal(
        recreated, ArtifactStore(ran.result.run_dir).load("scale", "scaled")
    )
    assert recreated.day.tolist() == ["2024-01-31"] * 4
    assert recreated.amount.tolist() == [15.0, 7.5, -4.5, 21.0]


def test_debug_of_a_block_that_ran_isolated(
    ran: Ran, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `clean` alone in its own kernel; `load`'s outputs are reused from the first run.
    isolated = ran.helper(ran.folder, params=SECRETS, isolate=True, only=("clean",))
    assert isolated.blocks["clean"].status is BlockStatus.FAILED, statuses(isolated)
    answer = ran.debug(str(isolated.run_id), "clean")

    assert answer.returncode == 0, answer.stderr
    path = Path(answer.stdout.strip())
    assert path == isolated.run_dir / "debug" / "clean.ipynb"
    monkeypatch.setenv("API_TOKEN", TOKEN)
    monkeypatch.setenv("DATABASE_URL", URL)
    executed = execute(path, tmp_path)
    [raised] = errors(executed.cells[2])
    assert f"{raised['ename']}: {raised['evalue']}" == isolated.blocks["clean"].error
    assert "factor = 2" in executed.cells[1].source  # the default: this run gave no -p factor

    # `report` was left out of this run by --only: its input was never stored here.
    left_out = ran.debug(str(isolated.run_id), "report")
    assert left_out.returncode == 1
    assert "`report` did not run here; debug the run that ran it" in left_out.stderr


def test_debug_errors_say_what_to_do(ran: Ran) -> None:
    sources, run_before = source_hashes(ran.folder), run_files(ran.result.run_dir)

    unknown_run = ran.debug("no-such-run", "clean")
    assert unknown_run.returncode == 2
    assert "no run `no-such-run`" in unknown_run.stderr
    assert "blockbook runs" in unknown_run.stderr

    unknown_block = ran.debug(ran.run_id, "clen")
    assert unknown_block.returncode == 2
    assert "no block `clen`" in unknown_block.stderr
    assert "load, scale, clean, report" in unknown_block.stderr

    # `report` reads `cleaned`, which `clean` never stored: it failed.
    missing = ran.debug(ran.run_id, "report")
    assert missing.returncode == 1
    assert "reads `cleaned` from block `clean`" in missing.stderr
    assert "stored no `cleaned` (block `clean`: failed)" in missing.stderr
    assert f"blockbook debug {ran.run_id} clean" in missing.stderr
    assert not (ran.result.run_dir / "debug" / "report.ipynb").exists()

    for target in (ran.folder / "b.ipynb", ran.result.run_dir / "plan.json"):
        refused = ran.debug(ran.run_id, "clean", "--output", str(target))
        assert refused.returncode == 2, refused.stderr
        assert "never replaces" in refused.stderr

    assert source_hashes(ran.folder) == sources
    assert run_files(ran.result.run_dir) == run_before
