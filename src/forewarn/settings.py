"""Typed settings, read from ``FOREWARN_*`` environment variables (and a ``.env`` file if present).

Every field has a default and a description. A bad value, or a ``FOREWARN_*`` variable forewarn does not
know, fails at start with a :class:`~forewarn.errors.ConfigurationError` that names the variable and the
accepted form. Per-call overrides return a new object and leave the original alone.

Example::

    >>> from forewarn.settings import ForewarnSettings
    >>> s = ForewarnSettings(db_url="sqlite:///tmp/t.db")
    >>> s.with_overrides(retries=5).retries, s.retries
    (5, 3)
"""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from forewarn.errors import ConfigurationError
from forewarn.limits import MAX_WAIT_EXP_BASE, MAX_WAIT_SECONDS
from forewarn.masking import DEFAULT_REDACT_PATTERNS, mask_url

ENV_PREFIX = "FOREWARN_"

STORE_DRIVERS = ("sqlite", "sqlite+pysqlite", "postgresql", "postgresql+psycopg")
"""The SQLAlchemy driver names ``FOREWARN_DB_URL`` may use: exactly those the telemetry store opens."""


def default_db_path() -> Path:
    """Where the embedded SQLite store lives unless ``FOREWARN_DB_URL`` says otherwise.

    ``$XDG_DATA_HOME/forewarn/telemetry.db``, i.e. ``~/.local/share/forewarn/telemetry.db`` by default:
    per user rather than per project, because Prefect workers run flows from changing working directories
    and every run on this machine should land in the same store.
    """
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "forewarn" / "telemetry.db"


def _default_db_url() -> str:
    return f"sqlite:///{default_db_path()}"


def default_model_dir() -> Path:
    """Where trained models live unless ``FOREWARN_MODEL_DIR`` says otherwise: ``<data directory>/models``.

    Absolute and per user, beside the default store (``$XDG_DATA_HOME/forewarn/models``), because a Prefect
    worker starts each run in a changing working directory and every run must find the same model.
    """
    return default_db_path().parent / "models"


def default_model_key_file() -> Path:
    """The key file that signs and verifies models unless ``FOREWARN_MODEL_KEY_FILE`` says otherwise.

    ``<data directory>/model.key``: beside, never inside, the default models directory, so whoever may write
    a model directory cannot also forge its signature.
    """
    return default_db_path().parent / "model.key"


def default_cache_dir() -> Path:
    """Where live scoring keeps its history snapshot unless ``FOREWARN_CACHE_DIR`` says otherwise.

    ``$XDG_CACHE_HOME/forewarn``, i.e. ``~/.cache/forewarn`` by default: a cache directory, because the
    snapshot is derived from the store and safe to delete (backup tools skip it); per user like the
    store, because a Prefect worker starts each run's process in a changing working directory and every
    process on this machine should find the snapshot the previous one saved.
    """
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "forewarn"


def _wait_seconds(default: float, what: str) -> Any:
    """A backoff wait field: finite seconds within :mod:`forewarn.limits`' one-day bound."""
    return Field(
        default=default,
        ge=0,
        le=MAX_WAIT_SECONDS,
        allow_inf_nan=False,
        description=f"{what}, in seconds, from 0 to {MAX_WAIT_SECONDS:g} (one day).",
    )


class ForewarnSettings(BaseSettings):
    """forewarn's configuration. Each field reads ``FOREWARN_<FIELD NAME IN UPPER CASE>``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="forbid", frozen=True, validate_default=True
    )

    db_url: str = Field(
        default_factory=_default_db_url,
        description="SQLAlchemy URL of the telemetry store: sqlite:///PATH (default "
        "~/.local/share/forewarn/telemetry.db) or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB.",
    )
    model_dir: Path = Field(
        default_factory=default_model_dir,
        description="Directory of trained model artifacts (default ~/.local/share/forewarn/models, under "
        "$XDG_DATA_HOME if set).",
    )
    telemetry_enabled: bool = Field(default=True, description="Record attempts and runs in the store.")
    # NoDecode: the validator parses the JSON itself, so a malformed list is an error naming the variable
    # rather than pydantic-settings' own parse failure.
    redact_patterns: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_REDACT_PATTERNS),
        description="Regular expressions whose matches are replaced by *** in recorded exception "
        "messages. A JSON list, e.g. FOREWARN_REDACT_PATTERNS='[\"secret-\\\\w+\"]'.",
    )
    message_max_chars: int = Field(
        default=500, ge=20, le=10_000, description="Recorded exception messages are cut to this length."
    )
    retries: int = Field(default=3, ge=0, le=100, description="Default retries after the first attempt.")
    wait_initial: float = _wait_seconds(0.5, "Default first backoff wait")
    wait_max: float = _wait_seconds(30.0, "Default cap on one backoff wait")
    wait_exp_base: float = Field(
        default=2.0,
        ge=1,
        le=MAX_WAIT_EXP_BASE,
        allow_inf_nan=False,
        description=f"Default growth factor between waits, from 1 to {MAX_WAIT_EXP_BASE:g}.",
    )
    wait_jitter: float = _wait_seconds(0.5, "Default maximum random time added to each wait")
    warning_policy: Literal["warn", "harden", "pause"] = Field(
        default="warn", description="What a forewarn.flow does when its run is scored at risk."
    )
    cache_dir: Path | None = Field(
        default_factory=default_cache_dir,
        description="Directory of the history snapshot that lets a new process score warm (default "
        "~/.cache/forewarn, under $XDG_CACHE_HOME if set); empty to neither read nor write one.",
    )
    # model authenticity
    model_key: SecretStr | None = Field(
        default=None,
        description="Secret text (at least 32 characters) that signs and verifies saved models; unset: "
        "FOREWARN_MODEL_KEY_FILE is used.",
    )
    model_key_file: Path = Field(
        default_factory=default_model_key_file,
        description="File holding the model signing key, readable by its owner only (chmod 600); created by "
        "`forewarn train` when missing (default ~/.local/share/forewarn/model.key).",
    )
    # secrets
    redact_prefect_logs: bool = Field(
        default=True,
        description="Mask FOREWARN_REDACT_PATTERNS in the messages and tracebacks that forewarn tasks and "
        "flows log through Prefect's run loggers (prefect.task_runs, prefect.flow_runs); false to log them raw.",
    )
    # spool
    spool_dir: Path | None = Field(
        default_factory=lambda: default_db_path().parent / "spool",
        description="Absolute directory of the local telemetry spool that records go to before the store "
        "(default ~/.local/share/forewarn/spool, under $XDG_DATA_HOME if set; one subdirectory per store); "
        "empty to write every record to the store synchronously instead.",
    )
    spool_max_mb: float = Field(
        64.0,
        gt=0,
        le=1_000_000,
        allow_inf_nan=False,
        description="Most megabytes of records one process keeps waiting for the store; beyond it new records "
        "are dropped, counted and logged once.",
    )
    spool_exit_seconds: float = Field(
        2.0,
        ge=0,
        le=600,
        allow_inf_nan=False,
        description="Longest a process waits at exit for its spooled records to reach the store (the rest stay "
        "in the spool for the next process).",
    )
    # shared circuit breakers
    breaker_cache_seconds: float = Field(
        1.0,
        ge=0,
        le=3600,
        allow_inf_nan=False,
        description="How long a shared circuit breaker trusts the state it last read from the store before "
        "reading it again, from 0 to 3600 s; another process's opening is seen within this time.",
    )

    forecast_rise: float = Field(
        0.1,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="A scheduled run the forecast already warned about is warned about again only when its risk "
        "rose by at least this much (0 to 1) since that warning, or crossed into a higher risk band.",
    )

    @field_validator("db_url", mode="before")
    @classmethod
    def _empty_db_url_is_the_default(cls, value: Any) -> Any:
        # prefect.yaml passes FOREWARN_DB_URL: "{{ $FOREWARN_DB_URL }}" to runs, which `prefect deploy` fills
        # with "" when the variable is unset there: empty means "not configured", as for the directories
        return _default_db_url() if isinstance(value, str) and not value.strip() else value

    @field_validator("db_url")
    @classmethod
    def _check_db_url(cls, value: str) -> str:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError(
                "a SQLAlchemy URL such as sqlite:///path/to/telemetry.db or "
                "postgresql+psycopg://user:password@host:5432/db"
            ) from None
        if url.drivername not in STORE_DRIVERS:
            raise ValueError(
                "a URL the store opens: sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB "
                f"(postgresql:// is read as psycopg 3 too), not a {url.drivername} URL"
            )
        return value

    @field_validator("cache_dir", mode="before")
    @classmethod
    def _check_cache_dir(cls, value: Any) -> Any:
        # an empty value switches the snapshot off; "~" is expanded, as a shell would in the variable
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        return Path(value).expanduser() if isinstance(value, str | Path) else value

    @field_validator("redact_patterns", mode="before")
    @classmethod
    def _decode_patterns(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            decoded = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"a JSON list of strings; this is not JSON ({exc.msg} at character {exc.pos})") from None
        if not isinstance(decoded, list):
            raise ValueError(f"a JSON list of strings, not a JSON {type(decoded).__name__}")
        for index, item in enumerate(decoded):
            if not isinstance(item, str):
                raise ValueError(f"a JSON list of strings; item {index} is {item!r}, not a string")
        return decoded

    @field_validator("spool_dir", mode="before")
    @classmethod
    def _check_spool_dir(cls, value: Any) -> Any:
        # empty switches the spool off; a relative path would differ per worker's working directory
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        path = Path(value).expanduser() if isinstance(value, str | Path) else value
        if isinstance(path, Path) and not path.is_absolute():
            raise ValueError(f"an absolute path, not {str(value)!r}")
        return path

    @field_validator("redact_patterns")
    @classmethod
    def _check_patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"a list of valid regular expressions; {pattern!r} is not ({exc})") from None
        return value

    @field_validator("model_key")
    @classmethod
    def _check_model_key(cls, value: SecretStr | None) -> SecretStr | None:
        # an empty variable means "no key given" (the key file is used), as for FOREWARN_CACHE_DIR
        if value is None or not value.get_secret_value().strip():
            return None
        if len(value.get_secret_value().strip()) < 32:
            raise ValueError(
                "at least 32 characters of secret text, e.g. the output of "
                "`python -c 'import secrets; print(secrets.token_hex(32))'`"
            )
        return value

    @field_validator("model_dir", "model_key_file", mode="before")
    @classmethod
    def _expand_home(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str) and not value.strip():  # empty: not configured (see _empty_db_url_is_the_default)
            return default_model_dir() if info.field_name == "model_dir" else default_model_key_file()
        return Path(value).expanduser() if isinstance(value, str | Path) else value

    def with_overrides(self, **changes: Any) -> ForewarnSettings:
        """Return new, validated settings with ``changes`` applied; ``self`` is unchanged."""
        return load_settings(**{**self.model_dump(), **changes}, _environ={})


def _expected_form(name: str) -> str:
    field = ForewarnSettings.model_fields.get(name)
    return (field.description if field else None) or "a valid value"


def _field_in(message: str) -> str:
    """The field a pydantic-settings parse error names (``error parsing value for field "x" ...``)."""
    match = re.search(r'field "([^"]+)"', message)
    return match.group(1) if match else "settings"


def load_settings(_environ: dict[str, str] | None = None, **values: Any) -> ForewarnSettings:
    """Read and validate settings, turning every problem into a :class:`ConfigurationError`.

    ``values`` override the environment. A ``FOREWARN_*`` variable that names no setting is an error, so a
    typo such as ``FOREWARN_DB_ULR`` does not silently fall back to the default.

    Example::

        >>> load_settings(retries=2).retries
        2
    """
    environ = os.environ if _environ is None else _environ
    known = {ENV_PREFIX + name.upper() for name in ForewarnSettings.model_fields}
    # Variables the test and CI tooling sets for itself are not settings.
    allowed_extra = {"FOREWARN_TEST_PG_URL"}
    unknown = sorted(k for k in environ if k.upper().startswith(ENV_PREFIX) and k.upper() not in known)
    unknown = [k for k in unknown if k.upper() not in allowed_extra]
    if unknown:
        # the value of a misspelt FOREWARN_DB_URL is still a URL with a password in it
        shown = mask_url(environ[unknown[0]])
        raise ConfigurationError(unknown[0], shown, f"one of {', '.join(sorted(known))}")
    try:
        return ForewarnSettings(**values)
    except SettingsError as exc:  # a value pydantic-settings could not even decode (JSON of a list field)
        name = _field_in(str(exc))
        raise ConfigurationError(
            ENV_PREFIX + name.upper(), environ.get(ENV_PREFIX + name.upper()), _expected_form(name)
        ) from None
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0]) if error["loc"] else "settings"
        given = values.get(name, environ.get(ENV_PREFIX + name.upper(), error.get("input")))
        if name == "db_url":
            given = mask_url(str(given))
        elif name == "model_key":  # a secret: never echoed, not even when it is too short
            given = "***"
        message = str(error["msg"]).removeprefix("Value error, ")
        if name in ForewarnSettings.model_fields:
            setting, expected = ENV_PREFIX + name.upper(), f"{message} ({_expected_form(name)})"
        else:
            setting, expected = name, message
        raise ConfigurationError(setting, given, expected) from None


@functools.lru_cache(maxsize=1)
def get_settings() -> ForewarnSettings:
    """The process-wide settings, read once from the environment. ``get_settings.cache_clear()`` rereads."""
    return load_settings()


__all__ = [
    "STORE_DRIVERS",
    "ForewarnSettings",
    "default_cache_dir",
    "default_db_path",
    "default_model_dir",
    "default_model_key_file",
    "get_settings",
    "load_settings",
]
