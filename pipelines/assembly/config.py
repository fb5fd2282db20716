"""`pipeline.toml` and `blockbook.toml`: validated, with unknown keys reported where they stand."""

from __future__ import annotations

import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from pipelines.assembly import timing
from pipelines.errors import Location, Problem, ProblemKind
from pipelines.params import ParamValue

PIPELINE_FILE = "pipeline.toml"
PROJECT_FILE = "blockbook.toml"
LONGEST_EVERY = timedelta(days=366)
"""The longest `every` of a schedule."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScheduleConfig(_Strict):
    """`[schedule]`: when the scheduler starts runs (grammar: `pipelines.assembly.timing`)."""

    cron: str | None = None
    """Five cron fields, in `timezone`."""
    every: str | None = None
    """An interval such as "30s", "15m", "1h", "1d"."""
    timezone: str = "UTC"
    catchup: Literal["none", "latest", "all"] = "none"
    max_catchup: Annotated[int, Field(ge=1)] | None = None
    """With catchup = "all": at most this many missed fire times, the newest ones."""
    params: dict[str, ParamValue] = Field(default_factory=dict)
    max_active_runs: Annotated[int, Field(ge=1)] = 1
    run_retries: Annotated[int, Field(ge=0)] = 0
    """How many times a run that crashed (its runner died) is started again."""

    # Checked while loading so `blockbook validate` reports each with its line.
    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:

        if value is not None:
            timing.check_cron(value)
        return value

    @field_validator("every")
    @classmethod
    def _every(cls, value: str | None) -> str | None:

        if value is None:
            return value
        try:
            interval: timedelta | None = timing.parse_every(value)
        except OverflowError:
            interval = None  # more days than a timedelta holds
        if interval is None or interval > LONGEST_EVERY:
            # Fire times are dates: a longer interval soon points past the calendar's end.
            raise ValueError(
                f"`{value}` is longer than {LONGEST_EVERY.days}d, the longest interval: for runs "
                'a year or more apart use `cron`, e.g. cron = "0 6 1 1 *" (06:00 on 1 January)'
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:

        timing.check_timezone(value)
        return value

    @model_validator(mode="after")
    def _one_timing(self) -> ScheduleConfig:
        if (self.cron is None) == (self.every is None):
            raise ValueError('set exactly one of `cron` (e.g. "0 6 * * *") or `every` ("15m")')
        return self


class WebhookConfig(_Strict):
    url: str
    """JSON POST with a Slack-compatible `text` field; `${ENV_VAR}` references are expanded."""


class EmailConfig(_Strict):
    host: str
    port: Annotated[int, Field(ge=1, le=65535)] = 25
    sender: str = Field(alias="from")
    to: list[str] = Field(min_length=1)
    starttls: bool = False
    username: str | None = None
    password: str | None = None
    """Write it as `${ENV_VAR}`: it is expanded at send time and never stored."""


AlertEvent = Literal["failure", "success", "sla", "schema_drift"]
"""`schema_drift`: a run whose blocks stored frames that drifted (`--schema`), when no
failure or success alert of the run goes out (those list the drift too)."""


class AlertsConfig(_Strict):
    on: tuple[AlertEvent, ...] = ("failure",)
    sla: Annotated[float, Field(gt=0)] | None = None
    """Seconds; a run still going after this long sends an `sla` alert."""
    webhook: WebhookConfig | None = None
    email: EmailConfig | None = None


class PipelineConfig(_Strict):
    description: str = ""
    params: dict[str, ParamValue] = Field(default_factory=dict)
    concurrency: Annotated[int, Field(ge=1)] | None = None
    """At most this many notebooks of one run execute at once (default: the CPU count)."""
    kernel: Annotated[str, Field(min_length=1)] | None = None
    """The kernelspec every notebook runs with (default: each notebook's own kernelspec)."""
    schedule: ScheduleConfig | None = None
    alerts: AlertsConfig | None = None
    include: tuple[str, ...] = ()
    """Notebooks of other folders that are part of this pipeline too, as paths relative to the
    pipeline folder (`../common/clean.ipynb`); checked by `pipelines.assembly.includes`."""


class StoreConfig(_Strict):
    url: str | None = None


class ConnectionConfig(_Strict):
    url: str


SCHEDULER_ADDRESS = re.compile(r"(?:tcp|tls)://(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\]):\d{1,5}")
"""A Dask scheduler's address as `dask scheduler` prints it: `tcp://10.0.0.5:8786`."""


def check_scheduler_address(address: str) -> str:
    """`address` if it is a Dask scheduler's address (ValueError saying the form, else)."""
    port = address.rsplit(":", 1)[-1]
    if not SCHEDULER_ADDRESS.fullmatch(address) or not 0 < int(port or 0) < 65536:
        raise ValueError(
            f"`{address}` is not a Dask scheduler address: write it as `dask scheduler` "
            'prints it, e.g. "tcp://10.0.0.5:8786"'
        )
    return address


class ExecutorConfig(_Strict):
    """`[executor]`: where runs execute their notebooks (`pipelines.runs.executors`)."""

    type: Literal["local", "dask"] = "local"
    address: str | None = None
    """With type = "dask": the scheduler, `tcp://HOST:8786`."""

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        return None if value is None else check_scheduler_address(value)

    @model_validator(mode="after")
    def _address_with_dask(self) -> ExecutorConfig:
        if self.type == "dask" and self.address is None:
            raise ValueError('type = "dask" needs the scheduler: address = "tcp://HOST:8786"')
        if self.type == "local" and self.address is not None:
            raise ValueError('`address` is for type = "dask"; the local executor has none')
        return self


ARTIFACT_URL = re.compile(r"[a-z][a-z0-9+.-]*://\S+")


class ArtifactsConfig(_Strict):
    """`[artifacts]`: where run folders (outputs, plans, notebooks, block states) go; none: this
    machine's `.blockbook/runs/` (`pipelines.rundir.location`)."""

    url: str | None = None
    """`s3://bucket/prefix`, `gs://...`, `abfs://...` (fsspec), or `file:///shared/nfs`."""
    options: dict[str, Any] = Field(default_factory=dict)
    """fsspec keyword arguments (`endpoint_url`, `key`, `secret`, ...); `${ENV}` references in
    their text are expanded when a run starts."""

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not ARTIFACT_URL.fullmatch(value):
            raise ValueError(
                f"`{value}` is not a storage URL: write it as s3://bucket/prefix (or gs://, "
                "abfs://, file:///shared/folder)"
            )
        return value.rstrip("/")


class ProjectConfig(_Strict):
    store: StoreConfig = Field(default_factory=StoreConfig)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    artifacts: ArtifactsConfig = Field(default_factory=ArtifactsConfig)
    connections: dict[str, ConnectionConfig] = Field(default_factory=dict)
    exclude: tuple[str, ...] = ()
    """Glob patterns of folders, relative to the project root, that never hold pipelines
    (`tests/fixtures`, `archive/*`); everything below a matching folder is skipped too."""

    @field_validator("exclude")
    @classmethod
    def _relative_patterns(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        cleaned: list[str] = []
        for pattern in patterns:
            text = pattern.strip().rstrip("/")
            if not text or text.startswith("/") or ".." in text.split("/"):
                raise ValueError(
                    f"exclude patterns are folders relative to the project root, got {pattern!r}"
                )
            cleaned.append(text.removeprefix("./"))
        return tuple(cleaned)


def load_pipeline_config(
    folder: Path, relative_name: str = PIPELINE_FILE
) -> tuple[PipelineConfig, list[Problem]]:
    """Read `folder/pipeline.toml`; a missing file means defaults, a bad one means problems."""
    return _load(folder / PIPELINE_FILE, relative_name, PipelineConfig)


def load_project_config(root: Path) -> tuple[ProjectConfig, list[Problem]]:
    return _load(root / PROJECT_FILE, PROJECT_FILE, ProjectConfig)


ConfigT = TypeVar("ConfigT", bound=BaseModel)


def _load(file: Path, relative: str, model: type[ConfigT]) -> tuple[ConfigT, list[Problem]]:
    if not file.is_file():
        return model(), []
    try:
        text = file.read_text(encoding="utf-8-sig")  # editors on Windows add a BOM
    except (OSError, UnicodeDecodeError) as exc:
        return model(), [
            _problem(relative, None, f"cannot read the file: {exc}", "save it as UTF-8")
        ]
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None) or _line_from_message(str(exc))
        return model(), [_problem(relative, line, f"not valid TOML: {exc}", "fix the TOML syntax")]
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        return model(), _problems_from(relative, text, exc.errors())


def _problems_from(relative: str, text: str, errors: list[Any]) -> list[Problem]:
    problems: list[Problem] = []
    reported_params: set[str] = set()
    for error in errors:
        location = [str(part) for part in error["loc"]]
        if location[0] == "params" and len(location) > 2:
            # One complaint per parameter, not one per member of the allowed-types union.
            name = location[1]
            if name not in reported_params:
                reported_params.add(name)
                problems.append(
                    _problem(
                        relative,
                        _line_of_key(text, location[:2]),
                        f"`params.{name}`: parameters are strings, numbers, booleans, dates "
                        "or datetimes",
                        "give it a single value of one of those types",
                    )
                )
            continue
        problems.append(_from_validation(relative, text, error))
    return problems


def _from_validation(relative: str, text: str, error: Any) -> Problem:
    path = [str(part) for part in error["loc"]]
    dotted = ".".join(path)
    line = _line_of_key(text, path)
    if error["type"] == "extra_forbidden":
        return _problem(
            relative,
            line,
            f"unknown key `{dotted}`",
            "remove it or check its spelling; see the README for the keys Blockbook reads",
        )
    message = str(error["msg"]).removeprefix("Value error, ")
    return _problem(relative, line, f"`{dotted}`: {message}", "correct the value")


def _problem(relative: str, line: int | None, message: str, hint: str) -> Problem:
    return Problem(ProblemKind.BAD_CONFIG, message, Location(relative, line=line), hint)


def _line_from_message(message: str) -> int | None:
    match = re.search(r"line (\d+)", message)
    return int(match.group(1)) if match else None


def _line_of_key(text: str, path: list[str]) -> int | None:
    """Best-effort line of a dotted key: the key's line inside its table, else the table's."""
    while path and path[-1].isdigit():
        path = path[:-1]  # an item of an array: point at the array's key
    if not path:
        return None
    *tables, key = path
    table = ".".join(tables)
    in_table = not tables
    table_line: int | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("["):
            name = stripped.strip("[] ")
            if name == ".".join(path) or name.startswith(".".join(path) + "."):
                return number  # the key is itself a table: `[paramz]`, `[[paramz]]`, `[a.b]`
            in_table = name == table
            if in_table:
                table_line = number
            continue
        if in_table and re.match(rf'["\']?{re.escape(key)}["\']?\s*[=.]', stripped):
            return number
        if not tables and re.match(rf"{re.escape(path[0])}\s*[=.]", stripped):
            return number
    return table_line
