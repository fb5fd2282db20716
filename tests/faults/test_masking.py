"""URL passwords are masked by one masker everywhere, whatever the password holds (`/`, `:`,
quotes) and however the scheme is spelt (`POSTGRESQL://`): in the store, the plan, the run
notebooks, state files, the debug notebook and every command's output."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.assembly.connections import URL_MASK, describe_url
from pipelines.envrefs import credentials_span
from pipelines.params import MASK, Secrets, is_secret_param, mask_text, masked, secret_values
from pipelines.store.db import mask_url
from pipelines.store.run_store import RunStore
from tests.helpers.notebooks import nb
from tests.helpers.runs import blockbook, blockbook_json, files_containing

SLASHED = "Hun/HunSlashX"
UPPER = "UPPERpw9x"
SLASHED_URL = f"postgresql://u:{SLASHED}@h/db"
UPPER_URL = f"POSTGRESQL://u:{UPPER}@h/db"
# What must never show: whole passwords and the parts a masker that stops early would leave.
NEEDLES = [SLASHED, "HunSlashX", UPPER]


# ---- the masker --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (SLASHED_URL, f"postgresql://u:{MASK}@h/db"),
        (UPPER_URL, f"POSTGRESQL://u:{MASK}@h/db"),
        (f"engine = create_engine('{SLASHED_URL}')", f"engine = create_engine('postgresql://u:{MASK}@h/db')"),
        (f'{{"url": "{SLASHED_URL}", "to": "a@b.org"}}', f'{{"url": "postgresql://u:{MASK}@h/db", "to": "a@b.org"}}'),  # noqa: E501
        ("Postgres+Psycopg://etl:p:a/s@db:5432/wh ok", f"Postgres+Psycopg://etl:{MASK}@db:5432/wh ok"),  # noqa: E501
        ("postgresql://etl:p@ss@db/wh", f"postgresql://etl:{MASK}@db/wh"),
        # Not passwords: a port, no user part, a plain e-mail address.
        ("https://api.example.com:443/users?email=a@b.com", "https://api.example.com:443/users?email=a@b.com"),
        ("sqlite:////tmp/x.db and me@example.com", "sqlite:////tmp/x.db and me@example.com"),
    ],
)  # fmt: skip
def test_mask_text_masks_every_url_password(text: str, shown: str) -> None:
    assert mask_text(text) == shown


@pytest.mark.parametrize("url", [SLASHED_URL, UPPER_URL, "postgresql://etl:p@ss@db/wh"])
def test_every_masker_is_the_same_one(url: str) -> None:
    password = url.split("://")[1].split(":", 1)[1].rsplit("@", 1)[0]
    assert describe_url(url) == mask_text(url, mask=URL_MASK)
    assert mask_url(url) == describe_url(url)
    assert password not in describe_url(url)
    assert is_secret_param("anything", url)
    assert password in secret_values({"anything": url})
    assert password not in repr(masked({"anything": url}))
    start, end = credentials_span(url) or (0, 0)
    assert url[start:end] == f"u:{password}" or url[start:end] == f"etl:{password}"


def test_secrets_mask_the_password_alone_and_percent_decoded() -> None:
    secrets = Secrets.of({"db": "postgresql://u:Hun%2FSlash99@h/db"})
    assert secrets.mask("password Hun/Slash99 and Hun%2FSlash99") == f"password {MASK} and {MASK}"


schemes = st.sampled_from(["postgresql", "POSTGRESQL", "Postgresql+Psycopg", "mysql", "HTTPS"])
# Anything but whitespace and "@" (a raw "@" ends the password the way SQLAlchemy reads it).
password_tails = st.text(
    st.characters(blacklist_categories=("Z", "C"), blacklist_characters="@"), max_size=12
)


@settings(max_examples=200, deadline=None)
@given(scheme=schemes, tail=password_tails, quote=st.sampled_from(["", "'", '"']))
def test_no_password_survives_masking(scheme: str, tail: str, quote: str) -> None:
    password = f"PWD{tail}"
    url = f"{scheme}://user:{password}@host:5432/db?sslmode=require"
    text = f"connect({quote}{url}{quote}) failed"
    for shown in (mask_text(text), describe_url(url), Secrets.of({"url": url}).mask(text)):
        assert password not in shown, shown
    assert password in secret_values({"url": url})


# ---- end to end --------------------------------------------------------------------------------


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


USE_URLS = f"""%%block use_urls
import hashlib
from sqlalchemy.engine import make_url

assert hashlib.sha256(warehouse.encode()).hexdigest() == {sha(SLASHED_URL)!r}, "not the real URL"
assert hashlib.sha256(other_db.encode()).hexdigest() == {sha(UPPER_URL)!r}, "not the real URL"
print("url is", warehouse, "and", other_db)
print("password is", make_url(warehouse).password)
seen = len(warehouse)
"""

LEAK = """%%block leak
from sqlalchemy.engine import make_url

raise PermissionError(
    f"cannot log in to {warehouse!r} or {other_db}: password {make_url(warehouse).password}"
)
"""


def test_a_url_password_with_a_slash_or_an_upper_case_scheme_never_shows(
    project: Path, pipeline, store_url: str | None
) -> None:
    pipeline({"a.ipynb": nb(USE_URLS), "b.ipynb": nb(LEAK)})
    ran = blockbook(
        project, "run", "pipe", "-p", f"warehouse={SLASHED_URL}", "-p", f"other_db={UPPER_URL}"
    )
    assert ran.returncode == 1, ran.stdout + ran.stderr
    run_id = blockbook_json(project, "runs")[0]["run_id"]
    outputs = [
        ran,
        blockbook(project, "runs"),
        blockbook(project, "show", run_id),
        blockbook(project, "show", run_id, "--format", "json"),
        blockbook(project, "logs", run_id),
        blockbook(project, "debug", run_id, "leak"),
    ]
    for output in outputs[1:]:
        assert output.returncode == 0, output.args
    for output in outputs:
        for needle in NEEDLES:
            assert needle not in output.stdout + output.stderr, (output.args, needle)

    run_dir = project / ".blockbook" / "runs" / run_id
    debug = run_dir / "debug" / "leak.ipynb"
    assert debug.is_file()
    executed = (run_dir / "notebooks" / "a.ipynb").read_text(encoding="utf-8")
    assert f"password is {MASK}" in executed  # the kernel saw the real one: its hash matched
    # The store file, plan, run notebooks (input and executed), state files, logs, debug notebook.
    assert files_containing(project, NEEDLES) == []
    with RunStore.open(project) as store:
        record = store.get_run(run_id)
    assert record is not None
    assert {b.block: b.status for b in record.blocks} == {"use_urls": "success", "leak": "failed"}
    for needle in NEEDLES:
        assert needle not in repr(dataclasses.asdict(record))
    assert record.params == {
        "warehouse": f"postgresql://u:{MASK}@h/db",
        "other_db": f"POSTGRESQL://u:{MASK}@h/db",
    }
