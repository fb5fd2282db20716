"""Run parameters: typed defaults and `-p` overrides reach the kernel; secrets reach it too but
never show up in notebooks, the plan, the store or the command's output."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib

from pipelines.rundir.artifacts import ArtifactStore
from pipelines.store.run_store import RunStore
from tests.helpers.notebooks import nb
from tests.helpers.runs import blockbook, blockbook_json, files_containing

PARAMS_TOML = """\
[params]
n = 3
ratio = 0.5
flag = false
day = 2024-01-31
label = "default label"
since = 2023-12-25
"""

SEE_PARAMS = """%%block seen
values = {
    "n": n, "ratio": ratio, "flag": flag, "day": day, "label": label,
    "since": since, "tag": tag, "stamp": stamp,
}
kinds = {name: type(value).__name__ for name, value in values.items()}
"""


def test_params_defaults_and_overrides_are_typed(project, pipeline) -> None:
    pipeline(
        {
            "a.ipynb": nb(SEE_PARAMS),
            "b.ipynb": nb("%%block check\nreport = sorted(kinds.items())\ncount = len(values)"),
        },
        pipeline_toml=PARAMS_TOML,
    )
    overrides = ["n=7", "ratio=2.5", "flag=true", "day=2025-02-03", "tag=hello"]
    result = blockbook(
        project,
        "run",
        "pipe",
        *[arg for item in [*overrides, "stamp=2025-02-03T04:05:06"] for arg in ("-p", item)],
    )
    assert result.returncode == 0, result.stdout + result.stderr

    runs = blockbook_json(project, "runs")
    shown = blockbook_json(project, "show", runs[0]["run_id"])
    expected_values = {
        "n": 7,
        "ratio": 2.5,
        "flag": True,
        "day": dt.date(2025, 2, 3),
        "label": "default label",
        "since": dt.date(2023, 12, 25),
        "tag": "hello",
        "stamp": dt.datetime(2025, 2, 3, 4, 5, 6),
    }
    artifacts = ArtifactStore(project / ".blockbook" / "runs" / runs[0]["run_id"])
    # What the kernel saw, pickled by the block itself.
    assert artifacts.load("seen", "kinds") == {
        "n": "int",
        "ratio": "float",
        "flag": "bool",
        "day": "date",
        "label": "str",
        "since": "date",
        "tag": "str",
        "stamp": "datetime",
    }
    assert artifacts.load("seen", "values") == expected_values
    # Recorded in the store (dates as ISO strings).
    assert shown["params"] == {
        "n": 7,
        "ratio": 2.5,
        "flag": True,
        "day": "2025-02-03",
        "label": "default label",
        "since": "2023-12-25",
        "tag": "hello",
        "stamp": "2025-02-03T04:05:06",
    }
    assert runs[0]["params"] == shown["params"]


TOKEN = "tok-S3CRET-4242-xyzzy"
PASSWORD = "pw123"
URL = f"postgresql://u:{PASSWORD}@host/db"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# The blocks check the real values by hash: the literals must not be in any notebook.
USE_SECRETS = f"""%%block use_secrets
import hashlib
from urllib.parse import urlsplit

assert hashlib.sha256(api_token.encode()).hexdigest() == {sha(TOKEN)!r}, "not the real token"
assert hashlib.sha256(database_url.encode()).hexdigest() == {sha(URL)!r}, "not the real URL"
print("token is", api_token)
print("url is", database_url)
print("password is", urlsplit(database_url).password)
connection = {{"user": "u", "url_length": len(database_url)}}
api_token
"""

LEAK_ERROR = """%%block leak_error --retries 1 --retry-delay 0
from urllib.parse import urlsplit

raise PermissionError(
    f"login with {api_token} to {database_url} failed; password {urlsplit(database_url).password}"
)
"""

LEAK_TEST = """%%block leak_test
from urllib.parse import urlsplit

checked = True


@test
def credentials_work(checked):
    assert not checked, f"rejected {api_token} / {urlsplit(database_url).password}"
"""

OTHER_KERNEL = f"""%%block other_kernel
import hashlib

assert hashlib.sha256(api_token.encode()).hexdigest() == {sha(TOKEN)!r}
assert hashlib.sha256(database_url.encode()).hexdigest() == {sha(URL)!r}
assert connection["url_length"] == len(database_url)
print(api_token, database_url)
"""


def test_secrets_reach_the_kernel_and_nothing_else(project, pipeline) -> None:
    folder = pipeline(
        {"a.ipynb": nb(USE_SECRETS, LEAK_ERROR, LEAK_TEST), "b.ipynb": nb(OTHER_KERNEL)},
        pipeline_toml='[params]\napi_token = "placeholder"\n',
    )
    result = blockbook(
        project, "run", "pipe", "-p", f"api_token={TOKEN}", "-p", f"database_url={URL}"
    )
    secrets = [TOKEN, PASSWORD]
    assert result.returncode == 1, result.stdout + result.stderr
    for needle in secrets:
        assert needle not in result.stdout + result.stderr

    runs = blockbook(project, "runs", "--format", "json")
    run_id = blockbook_json(project, "runs")[0]["run_id"]
    shown = blockbook(project, "show", run_id, "--format", "json")
    shown_text = blockbook(project, "show", run_id)
    for output in (runs, shown, shown_text):
        assert output.returncode == 0, output.stderr
        for needle in secrets:
            assert needle not in output.stdout + output.stderr

    with RunStore.open(project) as store:
        record = store.get_run(run_id)
    statuses = {block.block: block.status for block in record.blocks}
    # The blocks that assert the real values succeeded: the kernels saw them.
    assert statuses == {
        "use_secrets": "success",
        "leak_error": "failed",
        "leak_test": "failed",
        "other_kernel": "success",
    }
    leak = record.block("leak_error")
    assert leak.attempts == 2
    assert "PermissionError" in leak.error
    assert "login with" in leak.error
    assert leak.attempt_records[0].traceback
    assert "credentials_work" in record.block("leak_test").error
    assert record.block("leak_test").attempt_records[-1].tests[0]["outcome"] == "failed"
    stored = repr(dataclasses.asdict(record))
    for needle in secrets:
        assert needle not in stored, f"the store holds {needle!r}"
    assert record.params["api_token"] != TOKEN
    assert record.params["database_url"].startswith("postgresql://u:")

    run_dir = project / ".blockbook" / "runs" / run_id
    assert (run_dir / "notebooks" / "a.ipynb").is_file()
    assert (run_dir / "input" / "a.ipynb").is_file()
    assert (run_dir / "plan.json").is_file()
    # Executed and input notebooks, the plan, block state files, kernel logs, stored outputs.
    for place in ("notebooks", "input", "plan.json", "blocks", "logs", "artifacts"):
        assert files_containing(run_dir / place, secrets) == []
    executed = (run_dir / "notebooks" / "a.ipynb").read_text()
    assert "password is ********" in executed
    assert "database_url = 'postgresql://u:********@host/db'" in executed
    assert files_containing(folder, secrets) == []
