"""The telemetry store: :class:`TelemetryStore`, the only class in forewarn that talks SQL.

It writes :class:`~forewarn.records.FlowRunRecord` and :class:`~forewarn.records.AttemptRecord` rows into
the tables of :mod:`forewarn.schema` and reads them back as pandas DataFrames. It runs on an embedded
SQLite file (the default, ``~/.local/share/forewarn/telemetry.db``) or on PostgreSQL
(``postgresql+psycopg://``); ``docs/store.md`` describes both.

Example::

    >>> from datetime import datetime, timezone
    >>> from forewarn.records import AttemptOutcome, AttemptRecord, FlowRunRecord
    >>> t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> with TelemetryStore("sqlite://") as store:
    ...     store.record_flow_run_start(FlowRunRecord("f1", "etl", start_time=t0))
    ...     store.record_attempt(AttemptRecord("f1", "t1", "load", 1, t0, t0, AttemptOutcome.SUCCESS))
    ...     store.record_flow_run_end("f1", "COMPLETED", t0)
    ...     store.runs()[["flow_run_id", "state"]].to_dict("records")
    [{'flow_run_id': 'f1', 'state': 'COMPLETED'}]
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from forewarn.errors import ConfigurationError, StoreError, StoreUnreachableError
from forewarn.migrations import ensure_schema, read_version, write_transaction
from forewarn.records import AttemptOutcome, AttemptRecord, FlowRunRecord, RunState
from forewarn.schema import flow_runs, string_lengths, task_attempts

if TYPE_CHECKING:
    import pandas as pd

T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_MS = 30_000
"""How long a SQLite writer waits for another writer's lock before SQLite reports "database is locked"."""

PG_CONNECT_TIMEOUT_S = 5
"""Seconds before an unanswered PostgreSQL connection attempt fails (``StoreUnreachableError`` at open)."""

WRITE_RETRIES = 5
"""Extra tries of a write that failed with a transient error (SQLite locked/busy, dropped connection)."""

SOURCES = ("forewarn", "import")

RUN_COLUMNS: tuple[str, ...] = tuple(flow_runs.c.keys())
"""Columns of :meth:`TelemetryStore.runs` and friends, in table order."""

ATTEMPT_COLUMNS: tuple[str, ...] = (*task_attempts.c.keys(), "flow_name")
"""Columns of :meth:`TelemetryStore.attempts`: the ``task_attempts`` columns, then the run's ``flow_name``."""

_TIME_COLUMNS = frozenset({"scheduled_start", "start_time", "end_time"})
_FAILURE_STATES = tuple(s.value for s in RunState if s.is_failure)
_RUN_LENGTHS = string_lengths(flow_runs)
_ATTEMPT_LENGTHS = string_lengths(task_attempts)
_TRANSIENT_SQLITE = re.compile(r"locked|busy", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(?<=://)([^:/@\s]+):[^@\s]*@")


def _aware(value: datetime, name: str) -> datetime:
    """``value`` if it is a timezone-aware datetime; else a ``ValueError``/``TypeError`` naming ``name``."""
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a timezone-aware datetime, not {type(value).__name__}: {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"{name}={value!r} is a naive datetime; forewarn stores UTC and needs timezone-aware times, "
            f"e.g. {name}=datetime(2026, 1, 1, tzinfo=timezone.utc)"
        )
    return value


def _aware_or_none(value: datetime | None, name: str) -> datetime | None:
    return None if value is None else _aware(value, name)


def _cut(value: str | None, length: int) -> str | None:
    return value if value is None or len(value) <= length else value[:length]


def _one_or_many(value: str | Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):  # includes the str Enums RunState and AttemptOutcome
        return [getattr(value, "value", value)]
    return [getattr(v, "value", v) for v in value]


def _check_count(value: int, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name}={value!r} is invalid: expected a whole number >= 0")


def _where(*filters: tuple[sa.ColumnElement[Any], list[str] | None]) -> list[sa.ColumnElement[bool]]:
    """``column = value`` or ``column IN (values)`` for each filter that was given (bound parameters)."""
    clauses: list[sa.ColumnElement[bool]] = []
    for column, values in filters:
        if values is not None:
            clauses.append(column == values[0] if len(values) == 1 else column.in_(values))
    return clauses


def _window(
    column: sa.ColumnElement[Any], since: datetime | None, until: datetime | None
) -> list[sa.ColumnElement[bool]]:
    """``since <= column < until`` for the bounds that were given."""
    clauses: list[sa.ColumnElement[bool]] = []
    if since is not None:
        clauses.append(column >= _aware(since, "since"))
    if until is not None:
        clauses.append(column < _aware(until, "until"))
    return clauses


def _state_value(state: RunState | str) -> str:
    try:
        return RunState(state).value
    except ValueError:
        raise ValueError(
            f"state={state!r} is not a run state: expected one of {', '.join(s.value for s in RunState)}"
        ) from None


def _outcome_value(outcome: AttemptOutcome | str) -> str:
    try:
        return AttemptOutcome(outcome).value
    except ValueError:
        raise ValueError(
            f"outcome={outcome!r} is not an attempt outcome: expected one of "
            f"{', '.join(o.value for o in AttemptOutcome)}"
        ) from None


def _forewarn_version() -> str:
    from forewarn import __version__

    return __version__


def encode_parameters(parameters: dict[str, Any]) -> tuple[str, str]:
    """Canonical JSON text of flow parameters and its SHA-256 hex digest.

    Keys are sorted so equal parameters give equal text and hash; values JSON cannot represent are
    written as their ``str()``.

    Example::

        >>> encode_parameters({"b": 1, "a": "x"})[0]
        '{"a": "x", "b": 1}'
    """
    text = json.dumps(parameters, sort_keys=True, default=str, ensure_ascii=False)
    return text, hashlib.sha256(text.encode()).hexdigest()


class _Prepared:
    """A Core statement compiled once for one dialect, executed straight on a pooled DBAPI connection.

    ``record_attempt`` runs after every task attempt, so it skips ``Connection.execute`` (statement cache
    lookup, execution context, result wrapping: about half its cost on SQLite). The SQL is still the one
    SQLAlchemy compiled from a Core expression, with bound parameters, and the values still go through
    each column type's own bind processor (``UTCDateTime`` included).
    """

    __slots__ = ("positional", "processors", "sql")

    def __init__(self, stmt: sa.Insert, table: sa.Table, keys: Sequence[str], dialect: sa.Dialect) -> None:
        compiled = stmt.compile(dialect=dialect, column_keys=list(keys))
        self.sql = str(compiled)
        self.positional = tuple(compiled.positiontup or ()) if compiled.positional else None
        processors = []
        for key in keys:
            processor = table.c[key].type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                processors.append((key, processor))
        self.processors: tuple[tuple[str, Callable[[Any], Any]], ...] = tuple(processors)

    def bind(self, params: dict[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        """The DBAPI parameters for one row given by column name (``params`` is changed in place)."""
        for key, processor in self.processors:
            params[key] = processor(params[key])
        if self.positional is not None:
            return tuple(params[key] for key in self.positional)
        return params


class TelemetryStore:
    """Reads and writes forewarn's telemetry in a SQL database.

    ``url`` is a SQLAlchemy URL, ``sqlite:///PATH`` or ``postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB``
    (default: ``FOREWARN_DB_URL``, see :func:`forewarn.settings.get_settings`). Opening creates the SQLite
    file's directory, connects, and creates or upgrades the schema (see :mod:`forewarn.migrations`);
    ``create=False`` refuses to create a store in an empty database. ``sleep`` is the pause between
    retries of a write that hit a locked SQLite database (tests pass a fake).

    Raises :class:`~forewarn.errors.StoreUnreachableError` when the database does not answer,
    :class:`~forewarn.errors.SchemaVersionError` when a newer forewarn wrote it,
    :class:`~forewarn.errors.StoreError` for anything else that keeps it from opening, and
    :class:`~forewarn.errors.ConfigurationError` for a URL that is not SQLite or PostgreSQL. The
    password never appears in a message: :attr:`url` and every error show it as ``***``.

    One store may be shared by every thread of a process (it holds a connection pool); open one per
    process. Every database error is raised as :class:`~forewarn.errors.StoreError`.

    Example::

        >>> store = TelemetryStore("sqlite://")
        >>> store.schema_version
        1
        >>> store.close()
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        create: bool = True,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if url is None:
            from forewarn.settings import get_settings

            url, setting = get_settings().db_url, "FOREWARN_DB_URL"
        else:
            setting = "url"
        self._sa_url = _parse_url(url, setting)
        self._url = self._sa_url.render_as_string(hide_password=True)
        query_password = self._sa_url.query.get("password")
        if isinstance(query_password, tuple):
            query_password = query_password[0] if query_password else None
        self._secrets = [s for s in (self._sa_url.password, query_password) if s]
        self._sleep = sleep
        self._closed = False
        self._is_sqlite = self._sa_url.get_backend_name() == "sqlite"
        self._engine = self._make_engine()
        try:
            conn = self._engine.connect()
        except SQLAlchemyError as exc:
            self._engine.dispose()
            raise self._open_error(exc) from None
        try:
            with conn:
                ensure_schema(conn, url=self._url, create=create)
        except StoreError:
            self._engine.dispose()
            raise
        except SQLAlchemyError as exc:
            self._engine.dispose()
            raise self._error(exc, "creating or upgrading the schema", 0) from exc
        self._build_statements()
        _LIVE_STORES.add(self)

    # -- opening -------------------------------------------------------------------------------------

    def _make_engine(self) -> sa.Engine:
        url = self._sa_url
        if self._is_sqlite:
            database = url.database or ""
            memory = database in ("", ":memory:")
            kwargs: dict[str, Any] = {}
            if memory:
                kwargs["poolclass"] = StaticPool  # one shared connection, or each would see its own DB
            else:
                path = Path(database).expanduser()
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise StoreError(
                        f"cannot create the directory of the SQLite store {self._url}: {exc.strerror or exc} "
                        f"({path.parent}); set FOREWARN_DB_URL to a path you can write, "
                        "e.g. sqlite:///$HOME/forewarn/telemetry.db",
                        url=self._url,
                    ) from None
                url = url.set(database=str(path))
            engine = sa.create_engine(
                url,
                # SQLAlchemy drives transactions itself (see write_transaction), so the sqlite3 module's
                # legacy implicit BEGIN is switched off.
                isolation_level="AUTOCOMMIT",
                connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
                **kwargs,
            )
            event.listen(engine, "connect", _sqlite_on_connect)
            return engine
        connect_args: dict[str, Any] = {}
        if "connect_timeout" not in url.query:
            connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT_S
        engine = sa.create_engine(
            url,
            pool_pre_ping=True,
            # One statement per write is its own transaction: one round trip, one commit. Multi-statement
            # writes open an explicit transaction (write_transaction).
            isolation_level="AUTOCOMMIT",
            connect_args=connect_args,
        )
        event.listen(engine, "connect", _postgres_on_connect)
        return engine

    def _open_error(self, exc: BaseException) -> StoreError:
        reason = self._reason(exc)
        if self._is_sqlite:
            return StoreError(
                f"cannot open the SQLite store {self._url}: {reason}; check that the file and its "
                "directory are writable and on a local disk, or set FOREWARN_DB_URL to another path",
                url=self._url,
            )
        host = f"{self._sa_url.host or 'localhost'}:{self._sa_url.port or 5432}"
        return StoreUnreachableError(
            f"the telemetry store {self._url} does not answer: {reason}. Check that PostgreSQL is running "
            f"and reachable at {host} (firewall, VPN), and that the user, password and database name in "
            "FOREWARN_DB_URL are right",
            url=self._url,
        )

    def _build_statements(self) -> None:
        """Build the write statements once; SQLAlchemy caches their compiled form."""
        insert = sqlite.insert if self._is_sqlite else postgresql.insert
        run = insert(flow_runs)
        self._upsert_run = run.on_conflict_do_update(
            index_elements=[flow_runs.c.flow_run_id],
            set_={c.name: run.excluded[c.name] for c in flow_runs.c if c.name != "flow_run_id"},
        )
        attempt = insert(task_attempts)
        keys = ("id", "task_run_id", "attempt")
        self._upsert_attempt = attempt.on_conflict_do_update(
            index_elements=[task_attempts.c.task_run_id, task_attempts.c.attempt],
            set_={c.name: attempt.excluded[c.name] for c in task_attempts.c if c.name not in keys},
        )
        attempt_keys = [c.name for c in task_attempts.c if c.name != "id"]
        self._attempt_raw = _Prepared(self._upsert_attempt, task_attempts, attempt_keys, self._engine.dialect)
        self._end_run = (
            sa.update(flow_runs)
            .where(flow_runs.c.flow_run_id == sa.bindparam("b_flow_run_id"))
            .values(state=sa.bindparam("b_state"), end_time=sa.bindparam("b_end_time"))
        )

    # -- properties ----------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The store's URL with its password shown as ``***``.

        Example::

            >>> TelemetryStore("sqlite://").url
            'sqlite://'
        """
        return self._url

    @property
    def engine(self) -> sa.Engine:
        """The SQLAlchemy ``Engine`` (AUTOCOMMIT; use :func:`~forewarn.migrations.write_transaction`).

        Example::

            >>> TelemetryStore("sqlite://").engine.dialect.name
            'sqlite'
        """
        return self._engine

    @property
    def schema_version(self) -> int:
        """The schema version recorded in the store.

        Example::

            >>> TelemetryStore("sqlite://").schema_version
            1
        """
        version = self._read(read_version, "read the schema version")
        if version is None:  # the tables were dropped under us
            raise StoreError(f"{self._url} no longer holds a forewarn store", url=self._url)
        return version

    def __repr__(self) -> str:
        """``TelemetryStore('sqlite:///…')`` with the password masked."""
        state = ", closed" if self._closed else ""
        return f"{type(self).__name__}({self._url!r}{state})"

    def close(self) -> None:
        """Close every pooled connection. The store cannot be used afterwards; closing twice is fine.

        Example::

            >>> store = TelemetryStore("sqlite://")
            >>> store.close()
            >>> store
            TelemetryStore('sqlite://', closed)
        """
        if not self._closed:
            self._closed = True
            self._engine.dispose()

    def __enter__(self) -> TelemetryStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------------------------

    def record_flow_run_start(self, rec: FlowRunRecord, *, source: str = "forewarn") -> None:
        """Insert the ``flow_runs`` row of ``rec``, or overwrite it if its ``flow_run_id`` exists.

        Writing the same record twice leaves one row (a flow retried by Prefect keeps its id and starts
        again as ``RUNNING``). ``parameters`` are stored as canonical JSON; a missing ``parameters_hash``
        is filled with its SHA-256 and a missing ``forewarn_version`` with this forewarn's. ``source`` is
        ``"forewarn"`` for live runs or ``"import"`` for imported history.

        Example::

            >>> from datetime import datetime, timezone
            >>> store = TelemetryStore("sqlite://")
            >>> rec = FlowRunRecord("f1", "etl", start_time=datetime(2026, 1, 1, tzinfo=timezone.utc))
            >>> store.record_flow_run_start(rec); store.record_flow_run_start(rec)
            >>> len(store.runs())
            1
        """
        params = self._run_params(rec, source)
        self._write(lambda conn: conn.execute(self._upsert_run, params), "record_flow_run_start")

    def record_flow_runs(self, recs: Iterable[FlowRunRecord], *, source: str = "forewarn") -> int:
        """Upsert many ``flow_runs`` rows in one transaction (as :meth:`record_flow_run_start`); their count.

        Example::

            >>> from datetime import datetime, timezone
            >>> t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
            >>> runs = [FlowRunRecord(f"r{i}", "etl", t0, RunState.COMPLETED, end_time=t0) for i in range(3)]
            >>> TelemetryStore("sqlite://").record_flow_runs(runs, source="import")
            3
        """
        params = [self._run_params(rec, source) for rec in recs]
        if params:
            self._write(lambda conn: conn.execute(self._upsert_run, params), "record_flow_runs", atomic=True)
        return len(params)

    def record_flow_run_end(self, flow_run_id: str, state: RunState | str, end_time: datetime) -> None:
        """Set the final ``state`` and ``end_time`` of a flow run recorded by :meth:`record_flow_run_start`.

        Raises :class:`~forewarn.errors.StoreError` when no run has that id (its start was never
        recorded), ``ValueError`` for an unknown state or a naive ``end_time``.

        Example::

            >>> from datetime import datetime, timezone
            >>> t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
            >>> store = TelemetryStore("sqlite://")
            >>> store.record_flow_run_start(FlowRunRecord("f1", "etl", start_time=t0))
            >>> store.record_flow_run_end("f1", RunState.FAILED, t0)
            >>> store.runs().loc[0, "state"]
            'FAILED'
        """
        params = {
            "b_flow_run_id": flow_run_id,
            "b_state": _state_value(state),
            "b_end_time": _aware(end_time, "end_time"),
        }
        updated = self._write(
            lambda conn: conn.execute(self._end_run, params).rowcount, "record_flow_run_end"
        )
        if updated == 0:
            raise StoreError(
                f"no flow run {flow_run_id!r} in {self._url}: record_flow_run_start(...) must record it "
                "before its end",
                url=self._url,
            )

    def record_attempt(self, rec: AttemptRecord) -> None:
        """Write one ``task_attempts`` row (a task's hot path: one statement, one commit).

        A second record with the same ``(task_run_id, attempt)`` overwrites the first, so retrying a write
        whose outcome is unknown is safe. Strings longer than their column are cut to fit.

        Example::

            >>> from datetime import datetime, timezone
            >>> t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
            >>> store = TelemetryStore("sqlite://")
            >>> store.record_attempt(AttemptRecord(None, "t1", "load", 1, t0, t0, AttemptOutcome.SUCCESS))
            >>> store.attempts()["outcome"].tolist()
            ['success']
        """
        self._write_prepared(self._attempt_raw, self._attempt_params(rec), "record_attempt")

    def record_attempts(self, recs: Iterable[AttemptRecord]) -> int:
        """Write many attempts in one transaction (one ``executemany``); return how many.

        Example::

            >>> from datetime import datetime, timezone
            >>> t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
            >>> recs = [AttemptRecord(None, "t1", "load", n, t0, t0, AttemptOutcome.FAILURE) for n in (1, 2)]
            >>> TelemetryStore("sqlite://").record_attempts(recs)
            2
        """
        params = [self._attempt_params(rec) for rec in recs]
        if params:
            self._write(
                lambda conn: conn.execute(self._upsert_attempt, params), "record_attempts", atomic=True
            )
        return len(params)

    def _run_params(self, rec: FlowRunRecord, source: str) -> dict[str, Any]:
        if source not in SOURCES:
            raise ValueError(f"source={source!r} is invalid: expected one of {', '.join(SOURCES)}")
        parameters, digest = encode_parameters(rec.parameters)
        n = _RUN_LENGTHS
        return {
            "flow_run_id": _cut(rec.flow_run_id, n["flow_run_id"]),
            "flow_name": _cut(rec.flow_name, n["flow_name"]),
            "deployment": _cut(rec.deployment, n["deployment"]),
            "parameters": parameters,
            "parameters_hash": _cut(rec.parameters_hash or digest, n["parameters_hash"]),
            "flow_version": _cut(rec.flow_version, n["flow_version"]),
            "scheduled_start": _aware_or_none(rec.scheduled_start, "FlowRunRecord.scheduled_start"),
            "start_time": _aware_or_none(rec.start_time, "FlowRunRecord.start_time"),
            "end_time": _aware_or_none(rec.end_time, "FlowRunRecord.end_time"),
            "state": _state_value(rec.state),
            "host": _cut(rec.host, n["host"]),
            "forewarn_version": _cut(rec.forewarn_version or _forewarn_version(), n["forewarn_version"]),
            "source": source,
        }

    @staticmethod
    def _attempt_params(rec: AttemptRecord) -> dict[str, Any]:
        start = _aware(rec.start_time, "AttemptRecord.start_time")
        end = _aware(rec.end_time, "AttemptRecord.end_time")
        n = _ATTEMPT_LENGTHS
        return {
            "flow_run_id": _cut(rec.flow_run_id, n["flow_run_id"]),
            "task_run_id": _cut(rec.task_run_id, n["task_run_id"]),
            "task_name": _cut(rec.task_name, n["task_name"]),
            "attempt": rec.attempt,
            "start_time": start,
            "end_time": end,
            "duration_seconds": (end - start).total_seconds(),
            "outcome": _outcome_value(rec.outcome),
            "exception_type": _cut(rec.exception_type, n["exception_type"]),
            "exception_message": _cut(rec.exception_message, n["exception_message"]),
            "retryable": rec.retryable,
            "used_fallback": bool(rec.used_fallback),
            "host": _cut(rec.host, n["host"]),
        }

    def _write(self, work: Callable[[sa.Connection], T], action: str, *, atomic: bool = False) -> T:
        """Run ``work`` on a pooled connection, retrying transient failures with backoff.

        Transient means SQLite reporting "database is locked"/"busy" (another writer held the lock past
        ``busy_timeout``) or a connection that dropped; every write is an idempotent upsert, so trying it
        again is safe. Waits are 0.05, 0.1, 0.2, 0.4, 0.8 s. ``atomic`` wraps ``work`` in one transaction.
        """
        self._check_open()
        tries = 0
        while True:
            try:
                with self._engine.connect() as conn:
                    if not atomic:
                        return work(conn)
                    with write_transaction(conn):
                        return work(conn)
            except DBAPIError as exc:
                if tries < WRITE_RETRIES and self._transient(exc):
                    self._sleep(min(0.05 * 2**tries, 1.0))
                    tries += 1
                    continue
                raise self._error(exc, action, tries) from exc
            except SQLAlchemyError as exc:
                raise self._error(exc, action, tries) from exc

    def _write_prepared(self, prepared: _Prepared, params: dict[str, Any], action: str) -> None:
        """Execute one prepared single-row write (autocommit: one statement, one commit); see ``_write``."""
        self._check_open()
        bound = prepared.bind(params)
        dialect = self._engine.dialect
        dbapi_error = dialect.loaded_dbapi.Error
        tries = 0
        while True:
            invalidated = False
            try:
                raw = self._engine.raw_connection()  # pooled; pre-pinged on PostgreSQL
                try:
                    cursor = raw.cursor()
                    try:
                        cursor.execute(prepared.sql, bound)
                    finally:
                        cursor.close()
                except dbapi_error as exc:
                    if dialect.is_disconnect(exc, raw.dbapi_connection, None):
                        raw.invalidate(exc)
                        invalidated = True
                    raise
                finally:
                    raw.close()  # back to the pool
                return
            except (dbapi_error, DBAPIError) as exc:
                if tries < WRITE_RETRIES and (invalidated or self._transient(exc)):
                    self._sleep(min(0.05 * 2**tries, 1.0))
                    tries += 1
                    continue
                raise self._error(exc, action, tries) from exc
            except SQLAlchemyError as exc:
                raise self._error(exc, action, tries) from exc

    def _transient(self, exc: BaseException) -> bool:
        """A connection that dropped, or SQLite still locked after busy_timeout: worth another try."""
        orig: BaseException | None = exc
        if isinstance(exc, DBAPIError):
            if exc.connection_invalidated:
                return True
            orig = exc.orig
        return (
            self._is_sqlite
            and type(orig).__name__ == "OperationalError"
            and bool(_TRANSIENT_SQLITE.search(str(orig)))
        )

    # -- reading -------------------------------------------------------------------------------------

    def runs(
        self,
        *,
        flow_name: str | Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        state: str | Sequence[str] | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """Flow runs as a DataFrame with exactly the ``flow_runs`` columns, oldest ``start_time`` first.

        ``since``/``until`` select runs whose **start_time** is in ``[since, until)`` (the moment the run
        really began; ``scheduled_start`` is empty for ad-hoc runs). Runs that never started have no
        ``start_time``: they are only returned without ``since``/``until``, and sort last. ``flow_name``
        and ``state`` take one value or a list. ``limit`` keeps the ``limit`` most recent runs. Times are
        ``datetime64[ns, UTC]``, ``parameters`` a ``dict``; a run still going (or killed) has state
        ``RUNNING`` and no ``end_time``.

        Example::

            >>> from datetime import datetime, timezone
            >>> store = TelemetryStore("sqlite://")
            >>> store.runs(flow_name="etl", since=datetime(2026, 1, 1, tzinfo=timezone.utc), limit=10).shape
            (0, 13)
        """
        stmt = self._runs_query(flow_name=flow_name, since=since, until=until, state=state, limit=limit)
        return self._select_frame(stmt, RUN_COLUMNS, "runs", newest_first=limit is not None)

    def attempts(
        self,
        *,
        flow_name: str | Sequence[str] | None = None,
        flow_run_id: str | Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        outcome: str | Sequence[str] | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """Task attempts as a DataFrame: the ``task_attempts`` columns plus their run's ``flow_name``.

        ``since``/``until`` select attempts whose **end_time** is in ``[since, until)`` (an attempt is
        recorded when it ends; the column is indexed). ``flow_name`` (joined from ``flow_runs``; ``None``
        for attempts outside a forewarn flow), ``flow_run_id`` and ``outcome`` take one value or a list.
        Rows are ordered by ``start_time`` then ``id``; ``limit`` keeps the most recent ones.

        Example::

            >>> TelemetryStore("sqlite://").attempts(outcome=["failure", "timeout"]).columns[-1]
            'flow_name'
        """
        stmt = self._attempts_query(
            flow_name=flow_name,
            flow_run_id=flow_run_id,
            since=since,
            until=until,
            outcome=outcome,
            limit=limit,
        )
        return self._select_frame(stmt, ATTEMPT_COLUMNS, "attempts", newest_first=limit is not None)

    def last_runs(self, flow_name: str, ended_before: datetime, n: int) -> pd.DataFrame:
        """The ``n`` runs of ``flow_name`` that ended most recently before ``ended_before``, oldest first.

        Runs without an end time (still running, or killed) are left out. Served by the
        ``(flow_name, end_time)`` index. Columns as :meth:`runs`.

        Example::

            >>> from datetime import datetime, timezone
            >>> TelemetryStore("sqlite://").last_runs("etl", datetime.now(timezone.utc), 5).empty
            True
        """
        stmt = self._last_runs_query(flow_name, ended_before, n)
        return self._select_frame(stmt, RUN_COLUMNS, "last_runs", newest_first=True)

    def recent_failures(self, since: datetime, until: datetime | None = None) -> pd.DataFrame:
        """Flow runs of every flow that ended in a failure state in ``[since, until)``, by ``end_time``.

        Failure states are those with ``RunState.is_failure`` (FAILED, CRASHED, TIMEDOUT). Served by the
        ``(state, end_time)`` index. Columns as :meth:`runs`.

        Example::

            >>> from datetime import datetime, timedelta, timezone
            >>> week_ago = datetime.now(timezone.utc) - timedelta(days=7)
            >>> TelemetryStore("sqlite://").recent_failures(week_ago).empty
            True
        """
        stmt = self._recent_failures_query(_aware(since, "since"), until)
        return self._select_frame(stmt, RUN_COLUMNS, "recent_failures")

    # The query builders are separate so tests can EXPLAIN exactly what the readers run. With a limit, they
    # order newest first (so LIMIT keeps the newest rows) and the reader turns the rows around.

    def _runs_query(
        self,
        *,
        flow_name: str | Sequence[str] | None,
        since: datetime | None,
        until: datetime | None,
        state: str | Sequence[str] | None,
        limit: int | None,
    ) -> sa.Select[Any]:
        c = flow_runs.c
        where = _where((c.flow_name, _one_or_many(flow_name)), (c.state, _one_or_many(state)))
        stmt = sa.select(flow_runs).where(*where, *_window(c.start_time, since, until))
        if limit is None:
            return stmt.order_by(c.start_time.asc().nulls_last(), c.flow_run_id.asc())
        _check_count(limit, "limit")
        return stmt.order_by(c.start_time.desc().nulls_first(), c.flow_run_id.desc()).limit(limit)

    def _attempts_query(
        self,
        *,
        flow_name: str | Sequence[str] | None,
        flow_run_id: str | Sequence[str] | None,
        since: datetime | None,
        until: datetime | None,
        outcome: str | Sequence[str] | None,
        limit: int | None,
    ) -> sa.Select[Any]:
        a = task_attempts.c
        where = _where(
            (flow_runs.c.flow_name, _one_or_many(flow_name)),
            (a.flow_run_id, _one_or_many(flow_run_id)),
            (a.outcome, _one_or_many(outcome)),
        )
        joined = task_attempts.outerjoin(flow_runs, flow_runs.c.flow_run_id == a.flow_run_id)
        stmt = (
            sa.select(task_attempts, flow_runs.c.flow_name)
            .select_from(joined)
            .where(*where, *_window(a.end_time, since, until))
        )
        if limit is None:
            return stmt.order_by(a.start_time.asc(), a.id.asc())
        _check_count(limit, "limit")
        return stmt.order_by(a.start_time.desc(), a.id.desc()).limit(limit)

    def _last_runs_query(self, flow_name: str, ended_before: datetime, n: int) -> sa.Select[Any]:
        _check_count(n, "n")
        c = flow_runs.c
        return (
            sa.select(flow_runs)
            .where(c.flow_name == flow_name, c.end_time < _aware(ended_before, "ended_before"))
            .order_by(c.end_time.desc(), c.flow_run_id.desc())
            .limit(n)
        )

    def _recent_failures_query(self, since: datetime, until: datetime | None) -> sa.Select[Any]:
        c = flow_runs.c
        return (
            sa.select(flow_runs)
            .where(c.state.in_(_FAILURE_STATES), *_window(c.end_time, since, until))
            .order_by(c.end_time.asc(), c.flow_run_id.asc())
        )

    def _select_frame(
        self, stmt: sa.Select[Any], columns: Sequence[str], action: str, *, newest_first: bool = False
    ) -> pd.DataFrame:
        rows = self._read(lambda conn: conn.execute(stmt).all(), action)
        return self._frame(rows[::-1] if newest_first else rows, columns)

    @staticmethod
    def _frame(rows: Sequence[Any], columns: Sequence[str]) -> pd.DataFrame:
        import pandas as pd

        # Built as object columns first so missing strings stay None (not NaN) on every pandas version.
        frame = pd.DataFrame([tuple(r) for r in rows], columns=list(columns), dtype=object)
        for name in columns:
            if name in _TIME_COLUMNS:
                frame[name] = pd.to_datetime(frame[name], utc=True).astype("datetime64[ns, UTC]")
            elif name == "parameters":
                frame[name] = pd.Series([json.loads(p) for p in frame[name]], index=frame.index, dtype=object)
            elif name in ("id", "attempt"):
                frame[name] = frame[name].astype("int64")
            elif name == "duration_seconds":
                frame[name] = frame[name].astype("float64")
            elif name == "used_fallback":
                frame[name] = frame[name].astype(bool)
            elif name == "retryable":
                frame[name] = frame[name].astype("boolean")
        return frame

    def _read(self, work: Callable[[sa.Connection], T], action: str) -> T:
        self._check_open()
        try:
            with self._engine.connect() as conn:
                return work(conn)
        except SQLAlchemyError as exc:
            raise self._error(exc, action, 0) from exc

    # -- errors --------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{self!r} was closed; open a new TelemetryStore", url=self._url)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return _URL_PASSWORD.sub(r"\1:***@", text)

    def _reason(self, exc: BaseException) -> str:
        orig = getattr(exc, "orig", None) or exc
        lines = [line.strip() for line in str(orig).splitlines() if line.strip()]
        return self._scrub(" ".join(lines[:2]) or type(orig).__name__)

    def _error(self, exc: BaseException, action: str, retries: int) -> StoreError:
        after = f" after {retries} retries" if retries else ""
        return StoreError(
            f"{action} failed on the telemetry store {self._url}{after}: {self._reason(exc)}", url=self._url
        )


def _parse_url(value: str, setting: str) -> URL:
    expected = (
        "a SQLAlchemy URL such as sqlite:///path/to/telemetry.db or "
        "postgresql+psycopg://user:password@host:5432/db"
    )
    try:
        url = make_url(value)
    except (ArgumentError, ValueError, TypeError):
        raise ConfigurationError(setting, _URL_PASSWORD.sub(r"\1:***@", str(value)), expected) from None
    shown = url.render_as_string(hide_password=True)
    if url.drivername in ("sqlite", "sqlite+pysqlite"):
        return url
    if url.drivername in ("postgresql", "postgresql+psycopg"):
        return url.set(drivername="postgresql+psycopg")
    raise ConfigurationError(setting, shown, expected + " (forewarn talks to PostgreSQL through psycopg 3)")


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # busy_timeout first: switching to WAL needs a moment of exclusive access, and other processes may be
    # writing. WAL lets readers and the one writer work at once; synchronous=NORMAL in WAL mode fsyncs at
    # checkpoints rather than every commit (a power cut can lose the last commits, never corrupt the file).
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _postgres_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Telemetry writes do not wait for the WAL flush: COMMIT returns once the server has the row in memory.
    # A crash of the *client* (a flow process) loses nothing the server acknowledged; only a crash of the
    # PostgreSQL server itself can lose the last few hundred milliseconds of commits (3 x wal_writer_delay)
    # — never corrupt them. In exchange each commit skips an fsync, which cuts write latency several-fold.
    cursor = dbapi_connection.cursor()
    cursor.execute("SET synchronous_commit TO OFF")
    cursor.close()
    if not dbapi_connection.autocommit:
        dbapi_connection.commit()


_LIVE_STORES: weakref.WeakSet[TelemetryStore] = weakref.WeakSet()


def _dispose_after_fork() -> None:
    """Drop (without closing) pooled connections a forked child inherited: they belong to the parent."""
    for store in list(_LIVE_STORES):
        if not store._closed:
            store._engine.dispose(close=False)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_dispose_after_fork)


__all__ = ["ATTEMPT_COLUMNS", "RUN_COLUMNS", "TelemetryStore", "encode_parameters"]
