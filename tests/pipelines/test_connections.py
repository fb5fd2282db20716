"""Named connections: lookup in blockbook.toml, `${VAR}` expansion, URL passthrough, masking."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from pipelines.assembly.connections import (
    URL_MASK,
    ConnectionConfigError,
    connection_url,
    describe_url,
    expand_variables,
)
from pipelines.errors import BlockbookError

WAREHOUSE = "postgresql+psycopg://etl:${WAREHOUSE_PASSWORD}@db/warehouse"


def project(tmp_path: Path, toml: str) -> Path:
    (tmp_path / "blockbook.toml").write_text(toml, encoding="utf-8")
    return tmp_path


def raised(name: str, root: Path, environ: dict[str, str] | None = None) -> ConnectionConfigError:
    with pytest.raises(ConnectionConfigError) as info:
        connection_url(name, root, environ=environ or {})
    return info.value


def test_a_named_connection_has_its_variables_filled_in(tmp_path: Path) -> None:
    root = project(tmp_path, f'[connections.warehouse]\nurl = "{WAREHOUSE}"\n')
    url = connection_url("warehouse", root, environ={"WAREHOUSE_PASSWORD": "s3cret"})
    assert url == "postgresql+psycopg://etl:s3cret@db/warehouse"


def test_the_process_environment_and_the_project_around_the_current_folder_are_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project(tmp_path, f'[connections.warehouse]\nurl = "{WAREHOUSE}"\n')
    (tmp_path / "pipe").mkdir()
    monkeypatch.chdir(tmp_path / "pipe")
    monkeypatch.setenv("WAREHOUSE_PASSWORD", "from-env")
    assert connection_url("warehouse") == "postgresql+psycopg://etl:from-env@db/warehouse"


def test_credentials_are_percent_encoded_and_the_rest_is_filled_in_as_is(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        "[connections.pg]\n"
        'url = "postgresql+psycopg://${PG_USER}:${PG_PASSWORD}@${PG_HOST}/${PG_DB}'
        '?options=-csearch_path%3D${PG_SCHEMA}"\n'
        "[connections.local]\n"
        'url = "sqlite:///${DATA_DIR}/warehouse.db"\n',
    )
    environ = {
        "PG_USER": "etl user",
        "PG_PASSWORD": "p@ss/w:rd%",
        "PG_HOST": "db.internal:6432",
        "PG_DB": "warehouse",
        "PG_SCHEMA": "staging",
        "DATA_DIR": "/srv/data dir",
    }
    url = make_url(connection_url("pg", root, environ=environ))
    assert (url.username, url.password) == ("etl user", "p@ss/w:rd%")
    assert (url.host, url.port, url.database) == ("db.internal", 6432, "warehouse")
    assert url.query == {"options": "-csearch_path=staging"}
    assert connection_url("local", root, environ=environ) == "sqlite:////srv/data dir/warehouse.db"


def test_a_url_is_returned_as_is(tmp_path: Path) -> None:
    for url in (
        "sqlite:///relative.db",
        "postgresql+psycopg://u:${NOT_EXPANDED}@h/db",
        "https://example.invalid/api",
    ):
        # No blockbook.toml is read (there is none): a URL never needs one.
        assert connection_url(url, tmp_path, environ={}) == url


def test_a_missing_variable_names_the_connection_and_the_variable(tmp_path: Path) -> None:
    root = project(tmp_path, f'[connections.warehouse]\nurl = "{WAREHOUSE}"\n')
    error = raised("warehouse", root)
    assert isinstance(error, BlockbookError)
    assert "connection `warehouse`" in error.message
    assert "`WAREHOUSE_PASSWORD`" in error.message
    assert "export WAREHOUSE_PASSWORD=" in error.hint
    assert "restart" in error.hint


def test_every_missing_variable_is_named_once(tmp_path: Path) -> None:
    root = project(tmp_path, '[connections.pg]\nurl = "postgresql://${U}:${P}@h/${U}"\n')
    error = raised("pg", root, {"OTHER": "x"})
    assert "variables `U` and `P`" in error.message
    assert error.hint.startswith("export U=...; export P=...")


def test_expansion_serves_other_url_settings_too() -> None:
    hook = "https://${HOOK_USER}:${HOOK_TOKEN}@hooks.example.invalid/${HOOK_PATH}"
    environ = {"HOOK_USER": "bot", "HOOK_TOKEN": "t/k@n", "HOOK_PATH": "services/T0/B1"}
    expanded = expand_variables(hook, "webhook `alerts`", environ)
    assert expanded == "https://bot:t%2Fk%40n@hooks.example.invalid/services/T0/B1"
    with pytest.raises(ConnectionConfigError, match=r"webhook `alerts` needs .* `HOOK_TOKEN`"):
        expand_variables(hook, "webhook `alerts`", {"HOOK_USER": "bot", "HOOK_PATH": "x"})


def test_an_empty_variable_counts_as_set(tmp_path: Path) -> None:
    root = project(tmp_path, '[connections.pg]\nurl = "postgresql://etl:${P}@h/db"\n')
    assert connection_url("pg", root, environ={"P": ""}) == "postgresql://etl:@h/db"


def test_a_malformed_reference_is_reported(tmp_path: Path) -> None:
    root = project(tmp_path, '[connections.pg]\nurl = "postgresql://etl:${1PASS}@h/db"\n')
    error = raised("pg", root, {"1PASS": "x"})
    assert "`${1PASS}` is not a variable reference" in error.message


def test_an_unknown_name_lists_the_known_ones_with_a_suggestion(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        f'[connections.warehouse]\nurl = "{WAREHOUSE}"\n[connections.crm]\nurl = "sqlite:///c.db"\n',
    )
    error = raised("wharehouse", root)
    assert "no connection named `wharehouse`" in error.message
    assert "did you mean `warehouse`?" in error.hint
    assert "known connections: crm, warehouse" in error.hint
    assert "did you mean" not in raised("zzz", root).hint


def test_an_unknown_name_without_connections_says_how_to_define_one(tmp_path: Path) -> None:
    missing_file = raised("warehouse", tmp_path)
    assert "has no blockbook.toml" in missing_file.message
    assert "[connections.warehouse]" in missing_file.hint
    empty = raised("warehouse", project(tmp_path, "[store]\n"))
    assert "defines no connections" in empty.message
    # A file path is a common slip for a SQLite URL: the hint shows what a URL looks like.
    assert "://" in raised("warehouse.db", tmp_path).hint


def test_a_broken_blockbook_toml_is_reported_with_its_place(tmp_path: Path) -> None:
    root = project(tmp_path, '[connections.warehouse]\nuri = "sqlite:///x.db"\n')
    error = raised("warehouse", root)
    assert "blockbook.toml" in error.message
    assert "connections.warehouse" in error.message


@pytest.mark.parametrize("value", ["", "   ", None])
def test_no_name_at_all_is_an_error(tmp_path: Path, value: object) -> None:
    with pytest.raises(ConnectionConfigError, match="expected a connection name or a URL"):
        connection_url(value, tmp_path)  # type: ignore[arg-type]


def test_the_error_survives_pickling() -> None:
    error = ConnectionConfigError("no connection named `x`", hint="define it")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.message, copy.hint) == (error.message, error.hint)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg://etl:s3cret@db:5432/wh", f"postgresql+psycopg://etl:{URL_MASK}@db:5432/wh"),
        ("postgresql://etl:p%40ss@db/wh?sslmode=require", f"postgresql://etl:{URL_MASK}@db/wh?sslmode=require"),
        # A raw "@" or "/" in a password (not valid, but typed): none of it shows.
        ("postgresql://etl:p@ss@db/wh", f"postgresql://etl:{URL_MASK}@db/wh"),
        ("postgresql://etl:pa/ss@db/wh", f"postgresql://etl:{URL_MASK}@db/wh"),
        ("postgresql://etl@db/wh", "postgresql://etl@db/wh"),
        ("postgresql://db:5432/wh", "postgresql://db:5432/wh"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
        ("warehouse", "warehouse"),
        # A port then an "@" later on is not a password.
        ("https://api.example.com:443/users?email=a@b.com", "https://api.example.com:443/users?email=a@b.com"),
        (
            "https://u:pw@api.example.com/v1?api_key=abc&page=2#top",
            f"https://u:{URL_MASK}@api.example.com/v1?api_key={URL_MASK}&page=2#top",
        ),
    ],
)  # fmt: skip
def test_describe_url_masks_passwords(url: str, shown: str) -> None:
    assert describe_url(url) == shown


def test_describe_url_never_shows_an_expanded_password(tmp_path: Path) -> None:
    root = project(tmp_path, f'[connections.warehouse]\nurl = "{WAREHOUSE}"\n')
    url = connection_url("warehouse", root, environ={"WAREHOUSE_PASSWORD": "p@ss/w:rd"})
    assert "p@ss" not in describe_url(url)
    assert "p%40ss" not in describe_url(url)
