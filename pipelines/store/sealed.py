"""Secret parameters of queued runs, sealed: encrypted with a key the run store never holds.

A queued run waits in the store for a runner, which may start on another host. Its parameters
as people see them (secrets masked) go in `runs.params`; the real values of the secret ones go
in `runs.sealed_params`, encrypted with Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`).
The runner that adopts the run opens them and the column is emptied, so a store alone never
gives a secret away, and a runner's command line never carries one.

The key comes from $BLOCKBOOK_SECRET_KEY, else from `.blockbook/secret.key` (mode 0600), which
is created the first time a run with secrets is queued. Every host that queues or runs runs of
one store (a shared PostgreSQL database) needs the same key: set the variable there.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import select

from pipelines.errors import InvalidInputError
from pipelines.params import (
    MASK,
    ParamValue,
    is_secret,
    is_secret_param,
    json_params,
    masked,
    parse_value,
)
from pipelines.rundir.layout import state_dir
from pipelines.rundir.state import now
from pipelines.status import RunStatus
from pipelines.store.schema import RunRow

if TYPE_CHECKING:
    from pipelines.store.run_store import RunStore

log = logging.getLogger(__name__)

KEY_ENV = "BLOCKBOOK_SECRET_KEY"
KEY_FILE = "secret.key"
_NEW_KEY = (
    "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
)


class SecretKeyError(InvalidInputError):
    """No key, a wrong key, or a key that cannot be read: the secrets of a run stay sealed."""


def key_file(root: Path) -> Path:
    return state_dir(root) / KEY_FILE


@dataclass(frozen=True, slots=True)
class SecretKey:
    fernet: Fernet
    fingerprint: str
    """Names the key in errors and next to what it sealed, without giving it away."""
    source: str
    """Where it came from: `$BLOCKBOOK_SECRET_KEY` or the key file's path."""

    @classmethod
    def of(cls, text: str, source: str) -> SecretKey:
        try:
            fernet = Fernet(text.strip().encode())
        except ValueError:
            raise SecretKeyError(
                f"the key in {source} is not a Fernet key (32 bytes, url-safe base64)",
                hint=f"set it to the key of the hosts that share the run store, or a new one: "
                f"{_NEW_KEY}",
            ) from None
        fingerprint = hashlib.sha256(text.strip().encode()).hexdigest()[:12]
        return cls(fernet, fingerprint, source)

    @classmethod
    def find(cls, root: Path) -> SecretKey | None:
        """$BLOCKBOOK_SECRET_KEY, else the project's key file; None when there is neither."""
        text = os.environ.get(KEY_ENV, "").strip()
        if text:
            return cls.of(text, f"${KEY_ENV}")
        path = key_file(root)
        if not path.exists():
            return None
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SecretKeyError(
                f"the key file {path} can be read by other users",
                hint=f"chmod 600 {path}",
            )
        return cls.of(path.read_text(encoding="ascii"), str(path))

    @classmethod
    def for_sealing(cls, root: Path) -> SecretKey:
        """The key to seal with: the one `find` finds, else a new key file, made once."""
        found = cls.find(root)
        if found is not None:
            return found
        path = key_file(root)
        try:
            created = _create_key_file(path)
        except OSError as exc:
            raise SecretKeyError(
                f"cannot create {path} to seal secret parameters: {exc.strerror}",
                hint=f"set ${KEY_ENV} to the key of the hosts that share the run store, or to a "
                f"new one: {_NEW_KEY}",
            ) from exc
        if created:
            log.warning(
                "created %s to seal the secret parameters of queued runs; every host that "
                "queues or runs runs of this store needs the same key: set $%s to its content",
                path,
                KEY_ENV,
            )
        found = cls.find(root)
        assert found is not None
        return found


def _create_key_file(path: Path) -> bool:
    """Write a new key, readable by its owner only; whoever links theirs first wins, so two
    processes (or threads) queueing at once end up with one key. False when another won."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f"{path.name}.{secrets.token_hex(8)}.tmp")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(Fernet.generate_key() + b"\n")
            stream.flush()
            os.fsync(stream.fileno())
        try:
            os.link(draft, path)  # atomic, and never replaces a key another process made
        except FileExistsError:
            return False
        return True
    finally:
        draft.unlink(missing_ok=True)


# ---- sealing and opening -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueuedParams:
    """A queued run's parameters as the store keeps them."""

    shown: dict[str, Any]
    """JSON values, secrets masked: what `runs.params` holds and people see."""
    sealed: str | None = None
    """The real values of the hidden ones, encrypted; None when nothing is hidden."""


def seal(root: Path, params: Mapping[str, ParamValue]) -> QueuedParams:
    """Split `params` into what may be stored as is and the secrets, which are encrypted.

    A value that holds the mask is refused: it is a secret copied from where it was shown (a
    run's recorded parameters), and the run would get the mask instead of the secret."""
    values = json_params(params)
    for name, value in values.items():
        if isinstance(value, str) and MASK in value:
            raise InvalidInputError(
                f"parameter `{name}` holds the mask {MASK} instead of its value",
                hint="give the real value (recorded parameters have their secrets masked), or "
                "leave the parameter out to use its default from pipeline.toml",
            )
    shown = json_params(masked(params))
    # Whatever masking changes is a secret, however `masked` decides it.
    hidden = {
        name: value
        for name, value in values.items()
        if shown[name] != value or is_secret_param(name, value)
    }
    if not hidden:
        return QueuedParams(shown)
    key = SecretKey.for_sealing(root)
    token = key.fernet.encrypt(json.dumps(hidden).encode()).decode()
    return QueuedParams(shown, json.dumps({"key": key.fingerprint, "token": token}))


def open_sealed(root: Path, run_id: str, queued: QueuedParams) -> dict[str, ParamValue]:
    """The run's real parameters, typed as `-p` types them; SecretKeyError when the key that
    sealed them is not here."""
    params = {
        name: _typed(value)
        for name, value in queued.shown.items()
        # A secret queued before runs kept them sealed: dropped, as the runner did then.
        if not (is_secret(name) and value == MASK)
    }
    if queued.sealed is None:
        return params
    sealed = json.loads(queued.sealed)
    key = SecretKey.find(root)
    if key is None or key.fingerprint != sealed["key"]:
        here = f"this host's key ({key.source}) is {key.fingerprint}" if key else "no key here"
        raise SecretKeyError(
            f"run {run_id}: its secret parameters were sealed with key {sealed['key']}; {here}. "
            f"Set ${KEY_ENV} to the key they were sealed with (the content of "
            f".blockbook/{KEY_FILE} where the run was queued) on every host that queues or "
            "runs runs of this store",
            hint=f"export {KEY_ENV}=... before starting the scheduler, then trigger the run again",
        )
    try:
        opened = json.loads(key.fernet.decrypt(sealed["token"].encode()))
    except InvalidToken:
        raise SecretKeyError(
            f"run {run_id}: its sealed parameters do not open with key {key.fingerprint} "
            f"({key.source}): they were changed in the store",
            hint="trigger the run again",
        ) from None
    return params | {name: _typed(value) for name, value in opened.items()}


def queued_params(store: RunStore, root: Path, run_id: str) -> dict[str, ParamValue] | None:
    """The real parameters of the queued run `run_id`; None when no such run is queued.

    When its secrets cannot be opened the run fails, saying why, instead of running with masks
    in place of its secrets, and SecretKeyError is raised."""
    with store.reading() as session:
        row = session.execute(
            select(RunRow.status, RunRow.params, RunRow.sealed_params).where(
                RunRow.run_id == run_id
            )
        ).first()
    if row is None or row.status != RunStatus.QUEUED.value:
        return None
    try:
        return open_sealed(root, run_id, QueuedParams(dict(row.params), row.sealed_params))
    except SecretKeyError as exc:
        store.finish_run(run_id, RunStatus.FAILED, now(), error=f"{exc.message} ({exc.hint})")
        raise


def _typed(value: Any) -> Any:
    """A JSON value back as the run had it: ISO dates and datetimes are dates again."""
    if isinstance(value, str):
        parsed = parse_value(value)
        if isinstance(parsed, dt.date):
            return parsed
    return value
