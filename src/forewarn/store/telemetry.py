"""The telemetry store: :class:`TelemetryStore`, the only class in forewarn that talks SQL.

It writes :class:`~forewarn.records.FlowRunRecord`, :class:`~forewarn.records.AttemptRecord` and
:class:`~forewarn.records.PredictionRecord` rows into the tables of :mod:`forewarn.store.schema` (one at a time,
or a whole imported history per transaction from a DataFrame) and reads them back as pandas DataFrames.
It runs on an embedded SQLite file (the default, ``~/.local/share/forewarn/telemetry.db``) or on PostgreSQL
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

import json
import os
import re
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
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
from forewarn.records import (
    FAILURE_STATES,
    FEATURE_PREFIX,
    PREDICTION_SOURCES,
    AttemptOutcome,
    AttemptRecord,
    FlowRunRecord,
    PredictionRecord,
    RunState,
    parameters_hash,
)
from forewarn.store.migrations import ensure_schema, read_version, write_transaction
from forewarn.store.schema import flow_runs, predictions, string_lengths, task_attempts

if TYPE_CHECKING:
    import numpy as np
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
"""The ``flow_runs`` columns in table order: :meth:`TelemetryStore.runs` and friends return these, then one
``feature_<name>`` column per pre-run feature found in the rows' ``features``."""

ATTEMPT_COLUMNS: tuple[str, ...] = (*task_attempts.c.keys(), "flow_name")
"""Columns of :meth:`TelemetryStore.attempts`: the ``task_attempts`` columns, then the run's ``flow_name``."""

PREDICTION_COLUMNS: tuple[str, ...] = tuple(predictions.c.keys())
"""Columns of :meth:`TelemetryStore.predictions`, in table order."""

_TIME_COLUMNS = frozenset({"scheduled_start", "start_time", "end_time", "predicted_at"})
_FAILURE_STATES = tuple(sorted(FAILURE_STATES))
_RUN_STATES = frozenset(s.value for s in RunState)
_OUTCOMES = frozenset(o.value for o in AttemptOutcome)
_FALLBACK_OUTCOMES = (AttemptOutcome.FALLBACK.value, AttemptOutcome.FALLBACK_FAILURE.value)
_RUN_LENGTHS = string_lengths(flow_runs)
_ATTEMPT_LENGTHS = string_lengths(task_attempts)
_PREDICTION_LENGTHS = string_lengths(predictions)
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


def _check_chunk_rows(chunk_rows: int) -> None:
    if not isinstance(chunk_rows, int) or isinstance(chunk_rows, bool) or chunk_rows < 1:
        raise ValueError(f"chunk_rows={chunk_rows!r} is invalid: expected a whole number >= 1, e.g. 50_000")


def _forewarn_version() -> str:
    from forewarn._version import __version__

    return __version__


def encode_parameters(parameters: dict[str, Any]) -> tuple[str, str]:
    """JSON text of flow parameters as stored, and their :func:`~forewarn.records.parameters_hash`.

    Keys are sorted so equal parameters give equal text and hash; values JSON cannot represent are
    written as their ``str()``. The hash is the one ``forewarn.flow`` and the importer record, so a run
    has the same ``parameters_hash`` whichever path wrote it.

    Example::

        >>> encode_parameters({"b": 1, "a": "x"})
        ('{"a": "x", "b": 1}', 'cdab067e9f3beb32')
    """
    return json.dumps(parameters, sort_keys=True, default=str, ensure_ascii=False), parameters_hash(parameters)


def encode_features(features: Mapping[str, Any]) -> str | None:
    """JSON text of a run's pre-run features (sorted keys), or ``None`` for none.

    Names carry no ``feature_`` prefix. Values JSON cannot represent are written as their ``str()``.

    Example::

        >>> encode_features({"source_system": "sap", "input_rows": 1200})
        '{"input_rows": 1200, "source_system": "sap"}'
        >>> print(encode_features({}))
        None
    """
    if not features:
        return None
    return json.dumps(dict(features), sort_keys=True, default=str, ensure_ascii=False)


def _feature_column(values: list[Any]) -> pd.Series:
    """One ``feature_<name>`` column from decoded JSON values (``None`` where a run lacks the feature).

    Numbers give ``int64`` (all present and whole) or ``float64`` (NaN where missing); booleans present in
    every row give ``bool``; anything else is an object column with ``None`` where missing.
    """
    import pandas as pd

    present = [v for v in values if v is not None]
    complete = len(present) == len(values)
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        if complete and all(isinstance(v, int) for v in present):
            try:
                return pd.Series(values, dtype="int64")
            except OverflowError:  # beyond int64: float64 keeps the magnitude
                pass
        return pd.Series([float("nan") if v is None else float(v) for v in values], dtype="float64")
    if present and complete and all(isinstance(v, bool) for v in present):
        return pd.Series(values, dtype=bool)
    return pd.Series(values, dtype=object)


def _object_values(frame: pd.DataFrame, name: str, *, length: int | None = None) -> np.ndarray:
    """A column as an object array of ``str`` (or the value as is, when not text) with ``None`` for missing.

    An absent column is all ``None``. Strings longer than ``length`` are cut to it.
    """
    import numpy as np
    import pandas as pd

    if name not in frame.columns:
        return np.full(len(frame), None, dtype=object)
    values = frame[name].to_numpy(dtype=object, copy=True)
    values[pd.isna(values)] = None
    if length is not None:
        try:
            lengths = pd.Series(values, dtype=object).str.len().to_numpy(dtype=float, na_value=0)
        except AttributeError:  # not all text: .str refuses, so look at each value
            lengths = np.asarray([len(v) if isinstance(v, str) else 0 for v in values.tolist()], dtype=float)
        long = np.flatnonzero(lengths > length)
        for i in long:
            values[i] = values[i][:length]
    return values


def _require_columns(frame: pd.DataFrame, names: Sequence[str], label: str) -> None:
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise ValueError(
            f"the {label} frame has no column(s) {', '.join(missing)}; it needs at least {', '.join(names)}"
        )


def _require_values(frame: pd.DataFrame, cols: Mapping[str, Sequence[Any]], names: Sequence[str], label: str) -> None:
    for name in names:
        empty = [i for i, v in enumerate(cols[name]) if v is None]
        if empty:
            raise ValueError(
                f"{label}[{name!r}] is empty in {len(empty)} row(s), first at position {empty[0]}: every "
                f"{label[:-1]} needs a {name}"
            )


def _encode_parameter_column(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Canonical JSON text and SHA-256 of each row's parameters (a dict, JSON text, or ``None`` for none).

    Histories repeat a handful of parameter sets, and a parsed frame shares one dict between the rows with
    equal text, so each distinct object (or text) is encoded once.
    """
    import numpy as np

    texts = np.empty(len(values), dtype=object)
    digests = np.empty(len(values), dtype=object)
    cache: dict[int | str, tuple[str, str]] = {}
    for i, value in enumerate(values.tolist()):
        key = value if isinstance(value, str) else id(value)
        encoded = cache.get(key)
        if encoded is None:
            if value is None:
                params: Any = {}
            elif isinstance(value, str):
                params = json.loads(value)
            else:
                params = value
            if not isinstance(params, Mapping):
                raise ValueError(f"parameters {value!r} is not a dict (or JSON object text) at position {i}")
            encoded = cache[key] = encode_parameters(dict(params))
        texts[i], digests[i] = encoded
    return texts, digests


def _encode_feature_columns(runs: pd.DataFrame) -> np.ndarray:
    """Each row's ``features`` JSON object from its non-missing ``feature_<name>`` cells (``None`` if none).

    The text is exactly :func:`encode_features` of the row's features, built a column at a time: each
    distinct value is JSON-encoded once and the ``"name": value`` pieces are joined with numpy.
    """
    import numpy as np
    import pandas as pd

    names = sorted(
        c for c in runs.columns if isinstance(c, str) and c.startswith(FEATURE_PREFIX) and c != FEATURE_PREFIX
    )
    out = np.full(len(runs), "", dtype=object)
    for name in names:
        values = runs[name].to_numpy(dtype=object)  # numpy numbers become Python numbers
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        key = json.dumps(name[len(FEATURE_PREFIX) :], ensure_ascii=False) + ": "
        pieces = [key + json.dumps(u, default=str, ensure_ascii=False) for u in uniques.tolist()]
        piece = np.asarray([*pieces, ""], dtype=object)[codes]
        present = codes >= 0
        joined = present & (out != "")
        out[joined] = out[joined] + ", " + piece[joined]
        first = present & ~joined
        out[first] = piece[first]
    some = out != ""
    out[some] = "{" + out[some] + "}"
    out[~some] = None
    return out


class _Bulk:
    """Columns of many rows made ready for the DBAPI once, then handed out in ``executemany`` chunks.

    Times become exactly what :class:`~forewarn.store.schema.UTCDateTime` binds (on SQLite the text
    ``2026-01-01 10:00:00.000000``, computed for the whole column at once; elsewhere aware UTC datetimes),
    so rows written in bulk compare and read back like rows written one at a time.
    """

    __slots__ = ("columns", "n", "prepared", "sqlite")

    def __init__(self, prepared: _Prepared, n: int, *, sqlite: bool) -> None:
        self.prepared = prepared
        self.n = n
        self.sqlite = sqlite
        self.columns: dict[str, Any] = {}  # column name -> ndarray or list of DBAPI values

    def times(self, frame: pd.DataFrame, name: str, *, label: str) -> np.ndarray:
        """DBAPI values of a timezone-aware time column of ``frame`` (all ``None`` when it is absent)."""
        import numpy as np
        import pandas as pd

        if name not in frame.columns or frame.empty:
            return np.full(len(frame), None, dtype=object)
        col = frame[name]
        if not isinstance(col.dtype, pd.DatetimeTZDtype):
            if col.isna().all():
                return np.full(len(frame), None, dtype=object)
            raise ValueError(
                f"{label}[{name!r}] holds {col.dtype} values: expected timezone-aware times "
                "(datetime64[ns, UTC]); forewarn never guesses a timezone, e.g. pd.to_datetime(col, utc=True)"
            )
        utc = col.dt.tz_convert("UTC")
        missing = utc.isna().to_numpy()
        if self.sqlite:
            micro = utc.dt.tz_localize(None).to_numpy().astype("datetime64[us]")
            out = np.char.replace(np.datetime_as_string(micro, unit="us"), "T", " ").astype(object)
        else:
            out = utc.dt.to_pydatetime().to_numpy(dtype=object, copy=True)
        out[missing] = None
        return out

    def chunks(self, chunk_rows: int) -> Iterable[tuple[int, list[Any]]]:
        """``(rows done after this chunk, DBAPI parameters of the chunk)`` in order."""
        keys = self.prepared.positional or tuple(self.columns)
        columns = [self.columns[key] for key in keys]
        for start in range(0, self.n, chunk_rows):
            stop = min(start + chunk_rows, self.n)
            rows = zip(*(col[start:stop] for col in columns), strict=True)
            if self.prepared.positional is not None:
                yield stop, list(rows)
            else:
                yield stop, [dict(zip(keys, row, strict=True)) for row in rows]


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
    file's directory, connects, and creates or upgrades the schema (see :mod:`forewarn.store.migrations`);
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
        2
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
        run_keys = [c.name for c in flow_runs.c]
        self._run_raw = _Prepared(self._upsert_run, flow_runs, run_keys, self._engine.dialect)
        self._insert_prediction = sa.insert(predictions)
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
        """The SQLAlchemy ``Engine`` (AUTOCOMMIT; use :func:`~forewarn.store.migrations.write_transaction`).

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
            2
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
        is filled with :func:`~forewarn.records.parameters_hash` and a missing ``forewarn_version`` with
        this forewarn's. ``features`` are stored as a JSON object (null when empty). ``source`` is
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
        updated = self._write(lambda conn: conn.execute(self._end_run, params).rowcount, "record_flow_run_end")
        if updated == 0:
            raise StoreError(
                f"no flow run {flow_run_id!r} in {self._url}: record_flow_run_start(...) must record it before its end",
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
            self._write(lambda conn: conn.execute(self._upsert_attempt, params), "record_attempts", atomic=True)
        return len(params)

    def record_runs_frame(
        self,
        runs: pd.DataFrame,
        *,
        source: str = "import",
        chunk_rows: int = 50_000,
        progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Upsert every row of a runs frame in **one** transaction, ``chunk_rows`` rows per ``executemany``.

        This is the bulk path of :meth:`record_flow_runs` for imported histories. ``runs`` has the columns
        of a runs frame: ``flow_run_id``, ``flow_name`` and ``state`` (a :class:`RunState` value) are
        required; ``deployment``, ``parameters`` (dicts, or ``None`` for none), ``parameters_hash`` (filled
        in from ``parameters`` where missing, as :meth:`record_flow_run_start` does),
        ``flow_version``, ``scheduled_start``, ``start_time``, ``end_time`` (timezone-aware),
        ``host``, ``forewarn_version`` and any ``feature_<name>`` columns are optional. Each row's
        non-missing ``feature_*`` values become its ``features`` JSON object. Values are checked and
        converted a column at a time; either every row is written or none (a failure rolls back).
        ``progress(done, total)`` is called before the first chunk and after each one. Returns the number of
        rows written.

        Example::

            >>> import pandas as pd
            >>> frame = pd.DataFrame({"flow_run_id": ["r1"], "flow_name": ["etl"], "state": ["COMPLETED"],
            ...     "end_time": pd.to_datetime(["2026-01-01T00:05:00Z"]), "feature_input_rows": [1200]})
            >>> store = TelemetryStore("sqlite://")
            >>> store.record_runs_frame(frame)
            1
            >>> store.runs()[["source", "feature_input_rows"]].to_dict("records")
            [{'source': 'import', 'feature_input_rows': 1200}]
        """
        import numpy as np

        if source not in SOURCES:
            raise ValueError(f"source={source!r} is invalid: expected one of {', '.join(SOURCES)}")
        _check_chunk_rows(chunk_rows)
        _require_columns(runs, ("flow_run_id", "flow_name", "state"), "runs")
        n, lengths = len(runs), _RUN_LENGTHS
        bulk = _Bulk(self._run_raw, n, sqlite=self._is_sqlite)
        cols = bulk.columns
        for name in ("flow_run_id", "flow_name", "deployment", "flow_version", "host", "state"):
            cols[name] = _object_values(runs, name, length=lengths[name])
        _require_values(runs, cols, ("flow_run_id", "flow_name", "state"), "runs")
        bad = sorted({v for v in set(cols["state"].tolist()) if v not in _RUN_STATES}, key=str)
        if bad:
            raise ValueError(
                f"runs['state'] holds {', '.join(map(repr, bad[:5]))}: expected RunState values "
                f"({', '.join(sorted(_RUN_STATES))})"
            )
        parameters, digests = _encode_parameter_column(_object_values(runs, "parameters"))
        given_hash = _object_values(runs, "parameters_hash", length=lengths["parameters_hash"])
        cols["parameters"] = parameters
        cols["parameters_hash"] = np.where(given_hash == None, digests, given_hash)  # noqa: E711 - elementwise
        for name in ("scheduled_start", "start_time", "end_time"):
            cols[name] = bulk.times(runs, name, label="runs")
        version = _object_values(runs, "forewarn_version", length=lengths["forewarn_version"])
        version[version == None] = _forewarn_version()  # noqa: E711 - elementwise
        cols["forewarn_version"] = version
        cols["source"] = np.full(n, source, dtype=object)
        cols["features"] = _encode_feature_columns(runs)
        return self._write_bulk(bulk, chunk_rows, progress, "record_runs_frame")

    def record_attempts_frame(
        self,
        attempts: pd.DataFrame,
        *,
        chunk_rows: int = 50_000,
        progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Upsert every row of an attempts frame in **one** transaction, ``chunk_rows`` rows per ``executemany``.

        The bulk path of :meth:`record_attempts`. Required columns: ``task_run_id``, ``task_name``,
        ``attempt``, ``start_time``, ``end_time`` (timezone-aware) and ``outcome`` (an
        :class:`AttemptOutcome` value); optional: ``flow_run_id``, ``exception_type``,
        ``exception_message``, ``retryable``, ``used_fallback`` (default: the outcome is ``fallback`` or
        ``fallback_failure``) and ``host``. ``duration_seconds`` is computed. All rows or none are written;
        ``progress(done, total)`` as in :meth:`record_runs_frame`. Returns the number of rows written.

        Example::

            >>> import pandas as pd
            >>> t = pd.to_datetime(["2026-01-01T00:00:00Z", "2026-01-01T00:00:02Z"])
            >>> frame = pd.DataFrame({"flow_run_id": "r1", "task_run_id": "r1:load", "task_name": "load",
            ...     "attempt": [1, 2], "start_time": t, "end_time": t + pd.Timedelta(seconds=1),
            ...     "outcome": ["failure", "fallback"]})
            >>> store = TelemetryStore("sqlite://")
            >>> store.record_attempts_frame(frame)
            2
            >>> store.attempts()["used_fallback"].tolist()
            [False, True]
        """
        import numpy as np
        import pandas as pd

        _check_chunk_rows(chunk_rows)
        required = ("task_run_id", "task_name", "attempt", "start_time", "end_time", "outcome")
        _require_columns(attempts, required, "attempts")
        n, lengths = len(attempts), _ATTEMPT_LENGTHS
        bulk = _Bulk(self._attempt_raw, n, sqlite=self._is_sqlite)
        cols = bulk.columns
        for name in ("flow_run_id", "task_run_id", "task_name", "outcome", "exception_type", "exception_message"):
            cols[name] = _object_values(attempts, name, length=lengths[name])
        cols["host"] = _object_values(attempts, "host", length=lengths["host"])
        _require_values(attempts, cols, ("task_run_id", "task_name", "outcome"), "attempts")
        bad = sorted({v for v in set(cols["outcome"].tolist()) if v not in _OUTCOMES}, key=str)
        if bad:
            raise ValueError(
                f"attempts['outcome'] holds {', '.join(map(repr, bad[:5]))}: expected AttemptOutcome values "
                f"({', '.join(sorted(_OUTCOMES))})"
            )
        number = pd.to_numeric(attempts["attempt"], errors="coerce")
        if number.isna().any() or (number != np.floor(number)).any():
            raise ValueError("attempts['attempt'] must hold whole numbers, e.g. 1 for the first attempt")
        cols["attempt"] = number.astype(np.int64).tolist()
        cols["start_time"] = bulk.times(attempts, "start_time", label="attempts")
        cols["end_time"] = bulk.times(attempts, "end_time", label="attempts")
        _require_values(attempts, cols, ("start_time", "end_time"), "attempts")
        seconds = (attempts["end_time"] - attempts["start_time"]).dt.total_seconds()
        cols["duration_seconds"] = seconds.to_numpy(dtype=np.float64).tolist()
        if "retryable" in attempts.columns:
            cols["retryable"] = [None if pd.isna(v) else bool(v) for v in attempts["retryable"].tolist()]
        else:
            cols["retryable"] = np.full(n, None, dtype=object)
        if "used_fallback" in attempts.columns:
            cols["used_fallback"] = attempts["used_fallback"].fillna(False).astype(bool).tolist()
        else:
            cols["used_fallback"] = np.isin(cols["outcome"], _FALLBACK_OUTCOMES).tolist()
        return self._write_bulk(bulk, chunk_rows, progress, "record_attempts_frame")

    def _write_bulk(
        self, bulk: _Bulk, chunk_rows: int, progress: Callable[[int, int], None] | None, action: str
    ) -> int:
        """Run ``bulk``'s upsert chunk by chunk inside one write transaction (see :meth:`_write`)."""
        if bulk.n == 0:
            return 0

        def work(conn: sa.Connection) -> int:
            if progress is not None:
                progress(0, bulk.n)
            for done, params in bulk.chunks(chunk_rows):
                conn.exec_driver_sql(bulk.prepared.sql, params)
                if progress is not None:
                    progress(done, bulk.n)
            return bulk.n

        return self._write(work, action, atomic=True)

    def record_prediction(self, rec: PredictionRecord) -> None:
        """Append one ``predictions`` row (one statement, one commit).

        A run may be scored many times (every forecast scores it again), so predictions are appended, never
        merged. ``reasons`` are stored as a JSON list; ``warned`` and ``lead_seconds`` come from the record.

        Example::

            >>> from datetime import datetime, timezone
            >>> now = datetime(2026, 1, 1, tzinfo=timezone.utc)
            >>> store = TelemetryStore("sqlite://")
            >>> store.record_prediction(PredictionRecord("f1", "etl", now, risk=0.7, threshold=0.5,
            ...                                          model_version="m1", reasons=("3 failures in a row",)))
            >>> store.predictions()[["flow_run_id", "warned", "reasons"]].to_dict("records")
            [{'flow_run_id': 'f1', 'warned': True, 'reasons': ['3 failures in a row']}]
        """
        params = self._prediction_params(rec)
        self._write(lambda conn: conn.execute(self._insert_prediction, params), "record_prediction")

    def record_predictions(self, recs: Iterable[PredictionRecord]) -> int:
        """Append many predictions in one transaction (one ``executemany``); return how many.

        Example::

            >>> from datetime import datetime, timedelta, timezone
            >>> now = datetime(2026, 1, 1, tzinfo=timezone.utc)
            >>> recs = [PredictionRecord(f"f{i}", "etl", now, 0.1, 0.5, "m1", scheduled_start=now + timedelta(hours=i),
            ...                          source="forecast") for i in (1, 2)]
            >>> TelemetryStore("sqlite://").record_predictions(recs)
            2
        """
        params = [self._prediction_params(rec) for rec in recs]
        if params:
            self._write(lambda conn: conn.execute(self._insert_prediction, params), "record_predictions", atomic=True)
        return len(params)

    @staticmethod
    def _prediction_params(rec: PredictionRecord) -> dict[str, Any]:
        if rec.source not in PREDICTION_SOURCES:
            raise ValueError(
                f"PredictionRecord.source={rec.source!r} is invalid: expected one of {', '.join(PREDICTION_SOURCES)}"
            )
        if isinstance(rec.reasons, str):
            raise TypeError(
                f"PredictionRecord.reasons must be a sequence of strings, not one string: reasons=({rec.reasons!r},)"
            )
        n = _PREDICTION_LENGTHS
        _aware(rec.predicted_at, "PredictionRecord.predicted_at")
        _aware_or_none(rec.scheduled_start, "PredictionRecord.scheduled_start")
        return {
            "flow_run_id": _cut(rec.flow_run_id, n["flow_run_id"]),
            "flow_name": _cut(rec.flow_name, n["flow_name"]),
            "deployment": _cut(rec.deployment, n["deployment"]),
            "scheduled_start": rec.scheduled_start,
            "predicted_at": rec.predicted_at,
            "lead_seconds": rec.lead_seconds,
            "risk": float(rec.risk),
            "threshold": float(rec.threshold),
            "warned": bool(rec.warned),
            "model_version": _cut(rec.model_version, n["model_version"]),
            "reasons": json.dumps([str(r) for r in rec.reasons], ensure_ascii=False),
            "source": rec.source,
        }

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
            "features": encode_features(rec.features),
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
            self._is_sqlite and type(orig).__name__ == "OperationalError" and bool(_TRANSIENT_SQLITE.search(str(orig)))
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
        """Flow runs as a DataFrame: the ``flow_runs`` columns, then ``feature_*`` columns; oldest first.

        ``since``/``until`` select runs whose **start_time** is in ``[since, until)`` (the moment the run
        really began; ``scheduled_start`` is empty for ad-hoc runs). Runs that never started have no
        ``start_time``: they are only returned without ``since``/``until``, and sort last. ``flow_name``
        and ``state`` take one value or a list. ``limit`` keeps the ``limit`` most recent runs. Times are
        ``datetime64[ns, UTC]``, ``parameters`` and ``features`` are ``dict``; a run still going (or killed)
        has state ``RUNNING`` and no ``end_time``.

        Each pre-run feature found in the selected rows' ``features`` becomes a ``feature_<name>`` column after
        the table columns, sorted by name, as :func:`forewarn.learning.features.build_features` expects: numbers stay
        numbers (``int64``, or ``float64`` with NaN where a run lacks the feature), text stays text (object,
        ``None`` where missing). :meth:`last_runs` and :meth:`recent_failures` return the same shape.

        Example::

            >>> from datetime import datetime, timezone
            >>> store = TelemetryStore("sqlite://")
            >>> t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
            >>> store.record_flow_run_start(FlowRunRecord("f1", "etl", t0, features={"input_rows": 1200}))
            >>> store.record_flow_run_start(FlowRunRecord("f2", "etl", t0, features={"source_system": "sap"}))
            >>> store.runs().iloc[:, -3:]
                               features  feature_input_rows feature_source_system
            0      {'input_rows': 1200}              1200.0                  None
            1  {'source_system': 'sap'}                 NaN                   sap
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

    def history(self) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        """Every run and every attempt, as the learning code takes them: attempts ``None`` when there are
        none (a history imported at run level only).

        Example::

            >>> runs, attempts = TelemetryStore("sqlite://").history()
            >>> len(runs), attempts
            (0, None)
        """
        attempts = self.attempts()
        return self.runs(), (attempts if not attempts.empty else None)

    def predictions(
        self,
        *,
        flow_name: str | Sequence[str] | None = None,
        flow_run_id: str | Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        source: str | Sequence[str] | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """Recorded predictions as a DataFrame with the ``predictions`` columns, oldest ``predicted_at`` first.

        ``since``/``until`` select predictions whose **predicted_at** is in ``[since, until)``.
        ``flow_name``, ``flow_run_id`` and ``source`` (``hook`` or ``forecast``) take one value or a list;
        ``limit`` keeps the most recent. ``reasons`` is a ``list`` of strings, ``warned`` a ``bool``,
        ``risk``/``threshold``/``lead_seconds`` ``float64`` and the times ``datetime64[ns, UTC]``.

        Example::

            >>> TelemetryStore("sqlite://").predictions(source="forecast", limit=20).columns[:3].tolist()
            ['id', 'flow_run_id', 'flow_name']
        """
        stmt = self._predictions_query(
            flow_name=flow_name, flow_run_id=flow_run_id, since=since, until=until, source=source, limit=limit
        )
        return self._select_frame(stmt, PREDICTION_COLUMNS, "predictions", newest_first=limit is not None)

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

    def _predictions_query(
        self,
        *,
        flow_name: str | Sequence[str] | None,
        flow_run_id: str | Sequence[str] | None,
        since: datetime | None,
        until: datetime | None,
        source: str | Sequence[str] | None,
        limit: int | None,
    ) -> sa.Select[Any]:
        c = predictions.c
        where = _where(
            (c.flow_name, _one_or_many(flow_name)),
            (c.flow_run_id, _one_or_many(flow_run_id)),
            (c.source, _one_or_many(source)),
        )
        stmt = sa.select(predictions).where(*where, *_window(c.predicted_at, since, until))
        if limit is None:
            return stmt.order_by(c.predicted_at.asc(), c.id.asc())
        _check_count(limit, "limit")
        return stmt.order_by(c.predicted_at.desc(), c.id.desc()).limit(limit)

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
        # Times come as the driver returns them (text on SQLite) and are parsed a column at a time in _frame.
        raw = stmt.with_only_columns(
            *[_raw_time(c) if c.name in _TIME_COLUMNS else c for c in stmt.selected_columns],
            maintain_column_froms=True,
        )
        rows = self._read(lambda conn: conn.execute(raw).all(), action)
        return self._frame(rows[::-1] if newest_first else rows, columns, sqlite=self._is_sqlite)

    @staticmethod
    def _frame(rows: Sequence[Any], columns: Sequence[str], *, sqlite: bool) -> pd.DataFrame:
        import pandas as pd

        # Built as object columns first so missing strings stay None (not NaN) on every pandas version.
        frame = pd.DataFrame([tuple(r) for r in rows], columns=list(columns), dtype=object)
        for name in columns:
            if name in _TIME_COLUMNS:
                times = _parse_times(frame[name].to_numpy(dtype=object), sqlite=sqlite)
                frame[name] = pd.DatetimeIndex(times).tz_localize("UTC").array
            elif name in ("parameters", "reasons", "features"):
                decoded = _decode_json_cells(frame[name].tolist())
                if name == "features":
                    decoded = [{} if value is None else value for value in decoded]
                frame[name] = pd.Series(decoded, index=frame.index, dtype=object)
            elif name in ("id", "attempt"):
                frame[name] = frame[name].astype("int64")
            elif name in ("duration_seconds", "lead_seconds", "risk", "threshold"):
                frame[name] = frame[name].astype("float64")
            elif name in ("used_fallback", "warned"):
                frame[name] = frame[name].astype(bool)
            elif name == "retryable":
                frame[name] = frame[name].astype("boolean")
        if "features" in columns:
            frame = _with_feature_columns(frame)
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

    # -- lean reads for live scoring (forewarn.scoring.live) ----------------------------------------------

    ENDED_RUN_COLUMNS: tuple[str, ...] = (
        "flow_run_id",
        "flow_name",
        "parameters_hash",
        "flow_version",
        "scheduled_start",
        "start_time",
        "end_time",
        "state",
    )
    """Columns of :meth:`ended_runs`: what :func:`forewarn.learning.features.build_features` reads from history."""

    ENDED_ATTEMPT_COLUMNS: tuple[str, ...] = (
        "flow_run_id",
        "flow_name",
        "run_scheduled_start",
        "run_start_time",
        "end_time",
        "outcome",
        "exception_type",
    )
    """Columns of :meth:`ended_attempts`: the attempt, its run's flow name and its run's start times."""

    def ended_runs(self, since: datetime, until: datetime | None = None) -> pd.DataFrame:
        """Runs whose ``end_time`` is in ``[since, until)``, with only the columns features read from history.

        The history read of live scoring (:mod:`forewarn.scoring.live`): one parameterised query on the indexed
        ``end_time`` that selects :attr:`ENDED_RUN_COLUMNS` (no parameters JSON, no feature JSON), fetches
        the rows without per-value type conversion and decodes each time column at once (SQLite keeps
        times as ``YYYY-MM-DD HH:MM:SS.ffffff`` text, which pandas parses in C). For the same rows it costs
        about a third of :meth:`runs`. Text columns are object dtype with ``None`` for missing, times
        ``datetime64[ns, UTC]``; rows come in ``end_time`` order.

        Example::

            >>> from datetime import datetime, timezone
            >>> t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
            >>> store = TelemetryStore("sqlite://")
            >>> store.record_flow_run_start(FlowRunRecord("f1", "etl", t0, RunState.COMPLETED, end_time=t0))
            >>> store.ended_runs(t0)[["flow_run_id", "state"]].to_dict("records")
            [{'flow_run_id': 'f1', 'state': 'COMPLETED'}]
        """
        return _ended_frame(self._ended_rows("flow_runs", since, until, "ended_runs"))

    def ended_attempts(self, since: datetime, until: datetime | None = None) -> pd.DataFrame:
        """Task attempts whose ``end_time`` is in ``[since, until)``, lean, as :meth:`ended_runs` reads runs.

        Columns :attr:`ENDED_ATTEMPT_COLUMNS`: the attempt's ``flow_run_id``, ``end_time``, ``outcome``
        and ``exception_type``, and from its run's row (``None`` when it has none) ``flow_name``,
        ``run_scheduled_start`` and ``run_start_time``. Served by the ``end_time`` index and the
        ``flow_runs`` primary key.

        Example::

            >>> from datetime import datetime, timezone
            >>> TelemetryStore("sqlite://").ended_attempts(datetime(2026, 1, 1, tzinfo=timezone.utc)).shape
            (0, 7)
        """
        return _ended_frame(self._ended_rows("task_attempts", since, until, "ended_attempts"))

    def count_ended(self, table: str, since: datetime, until: datetime) -> int:
        """How many rows of ``table`` (``"flow_runs"`` or ``"task_attempts"``) ended in ``[since, until)``.

        An index-only count on ``end_time``: :class:`forewarn.scoring.live.HistoryCache` compares it with the rows
        it holds to notice history written or rewritten behind it.

        Example::

            >>> from datetime import datetime, timezone
            >>> t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
            >>> TelemetryStore("sqlite://").count_ended("flow_runs", t0, t0)
            0
        """
        if table not in ("flow_runs", "task_attempts"):
            raise ValueError(f"table={table!r} is invalid: expected 'flow_runs' or 'task_attempts'")
        stmt = _ended_statement(f"count_{table}", bounded=True)
        params = {"since": _aware(since, "since"), "until": _aware(until, "until")}
        return int(self._read(lambda conn: conn.execute(stmt, params).scalar_one(), f"count_ended({table})"))

    def ended_rows(self, table: str, since: datetime, until: datetime | None = None) -> dict[str, np.ndarray]:
        """:meth:`ended_runs` (``table="flow_runs"``) or :meth:`ended_attempts` (``"task_attempts"``) as
        numpy columns: text as object arrays with ``None`` for missing, times as naive-UTC
        ``datetime64[ns]`` arrays.

        The read of live scoring's cache (:class:`forewarn.scoring.live.HistoryCache`), which prepares the rows at
        once (:class:`forewarn.learning.features.RunIndex`): for the few rows that ended since its last look, building
        a DataFrame would cost several times the query.

        Example::

            >>> from datetime import datetime, timezone
            >>> columns = TelemetryStore("sqlite://").ended_rows("flow_runs", datetime(2026, 1, 1, tzinfo=timezone.utc))
            >>> columns["end_time"].dtype, len(columns["flow_run_id"])
            (dtype('<M8[ns]'), 0)
        """
        return self._ended_rows(table, since, until, f"ended_rows({table})")

    def _ended_rows(self, table: str, since: datetime, until: datetime | None, action: str) -> dict[str, np.ndarray]:
        """The lean select of ``table`` as numpy columns: object text, each time column parsed in one call."""
        import numpy as np

        kinds = {
            "flow_runs": ("runs", self.ENDED_RUN_COLUMNS),
            "task_attempts": ("attempts", self.ENDED_ATTEMPT_COLUMNS),
        }
        if table not in kinds:
            raise ValueError(f"table={table!r} is invalid: expected 'flow_runs' or 'task_attempts'")
        kind, columns = kinds[table]
        stmt = _ended_statement(kind, bounded=until is not None)
        params = {"since": _aware(since, "since")}
        if until is not None:
            params["until"] = _aware(until, "until")
        rows = self._read(lambda conn: conn.execute(stmt, params).all(), action)
        n = len(rows)
        cells = list(zip(*rows, strict=True)) if n else [()] * len(columns)
        out: dict[str, np.ndarray] = {}
        for name, values in zip(columns, cells, strict=True):
            array = np.empty(n, dtype=object)
            array[:] = values
            out[name] = _parse_times(array, sqlite=self._is_sqlite) if _is_time(name) else array
        return out


def _ended_frame(columns: dict[str, np.ndarray]) -> pd.DataFrame:
    """:meth:`TelemetryStore.ended_rows`' columns as a frame, times ``datetime64[ns, UTC]``."""
    import pandas as pd

    data: dict[str, Any] = {
        name: pd.DatetimeIndex(values).tz_localize("UTC").array if _is_time(name) else values
        for name, values in columns.items()
    }
    return pd.DataFrame(data, copy=False)


_ENDED_STATEMENTS: dict[tuple[str, bool], sa.Select[Any]] = {}


def _ended_statement(kind: str, *, bounded: bool) -> sa.Select[Any]:
    """The lean select of ``kind`` on ``end_time >= :since`` (and ``< :until``), built once per process.

    Built once so that a read of "what ended since" costs the query, not SQLAlchemy's statement building.
    """
    key = (kind, bounded)
    stmt = _ENDED_STATEMENTS.get(key)
    if stmt is not None:
        return stmt
    r, a = flow_runs.c, task_attempts.c
    if kind == "runs":
        columns = [getattr(r, n) for n in TelemetryStore.ENDED_RUN_COLUMNS]
        end_time = r.end_time
        stmt = sa.select(*[_raw_time(c) if c.name in _TIME_COLUMNS else c for c in columns])
    elif kind == "attempts":
        end_time = a.end_time
        stmt = sa.select(
            a.flow_run_id,
            r.flow_name,
            _raw_time(r.scheduled_start, "run_scheduled_start"),
            _raw_time(r.start_time, "run_start_time"),
            _raw_time(a.end_time),
            a.outcome,
            a.exception_type,
        ).select_from(task_attempts.outerjoin(flow_runs, r.flow_run_id == a.flow_run_id))
    else:  # count_flow_runs, count_task_attempts
        table = flow_runs if kind == "count_flow_runs" else task_attempts
        end_time = table.c.end_time
        stmt = sa.select(sa.func.count()).select_from(table)
    stmt = stmt.where(end_time >= sa.bindparam("since"))
    if bounded:
        stmt = stmt.where(end_time < sa.bindparam("until"))
    if not kind.startswith("count_"):
        stmt = stmt.order_by(end_time)
    _ENDED_STATEMENTS[key] = stmt
    return stmt


def _is_time(name: str) -> bool:
    return name in _TIME_COLUMNS or name in ("run_scheduled_start", "run_start_time")


def _raw_time(column: sa.ColumnElement[Any], name: str | None = None) -> sa.ColumnElement[Any]:
    """A time column fetched as the driver returns it (text on SQLite), for :func:`_parse_times`."""
    return sa.type_coerce(column, sa.String).label(name or column.name)


def _parse_times(cells: np.ndarray, *, sqlite: bool) -> np.ndarray:
    """Stored times (SQLite text, PostgreSQL aware datetimes) as one naive-UTC ``datetime64[ns]`` array."""
    import pandas as pd

    if sqlite:  # UTCDateTime writes naive UTC text, YYYY-MM-DD HH:MM:SS.ffffff: numpy parses it in C
        text = cells.copy()
        text[pd.isna(text)] = "NaT"
        try:
            return text.astype("datetime64[us]").astype("datetime64[ns]")
        except (ValueError, TypeError):  # text written by another tool: any ISO 8601 form
            return _naive_utc(pd.to_datetime(cells, format="ISO8601", utc=True))
    return _naive_utc(pd.to_datetime(cells, utc=True))


def _naive_utc(times: pd.DatetimeIndex) -> np.ndarray:
    return times.tz_convert("UTC").tz_localize(None).as_unit("ns").to_numpy()


def _decode_json_cells(cells: list[str | None]) -> list[Any]:
    """Decode many JSON texts (``None`` → ``None``) in one ``json.loads`` of the JSON array they make.

    One call parses 400,000 cells several times faster than 400,000 calls. forewarn writes each cell with
    ``json.dumps``, so the array has one element per cell; if text written by another tool breaks that
    (invalid JSON, or a cell such as ``1, 2`` that would count as two elements), each cell is decoded alone.
    """
    if not cells:
        return []
    try:
        values = json.loads("[" + ",".join("null" if c is None else c for c in cells) + "]")
    except json.JSONDecodeError:
        values = None
    if not isinstance(values, list) or len(values) != len(cells):
        values = [None if c is None else json.loads(c) for c in cells]
    return values


def _with_feature_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` plus one ``feature_<name>`` column per name in its decoded ``features`` dicts, sorted."""
    import pandas as pd

    dicts: list[dict[str, Any]] = frame["features"].tolist()
    names = sorted({name for features in dicts for name in features})
    if not names:
        return frame
    expanded = {FEATURE_PREFIX + name: _feature_column([f.get(name) for f in dicts]) for name in names}
    extra = pd.DataFrame(expanded)
    extra.index = frame.index
    return pd.concat([frame, extra], axis=1)


def _parse_url(value: str, setting: str) -> URL:
    expected = (
        "a SQLAlchemy URL such as sqlite:///path/to/telemetry.db or postgresql+psycopg://user:password@host:5432/db"
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


def _switch_to_wal(cursor: Any, *, sleep: Callable[[float], Any] = time.sleep) -> None:
    """``PRAGMA journal_mode = WAL``, retried while another opener holds the file.

    SQLite does not call the busy handler for this pragma on a brand-new file while a second connection
    is creating it, so processes opening one empty store at once can see "database is locked" here even
    with busy_timeout set (seen with four openers on a loaded 2-core machine).
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    wait = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except Exception as exc:
            if not _TRANSIENT_SQLITE.search(str(exc)) or time.monotonic() >= deadline:
                raise
            sleep(wait)
            wait = min(wait * 2, 0.2)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # busy_timeout first: switching to WAL needs a moment of exclusive access, and other processes may be
    # writing. WAL lets readers and the one writer work at once; synchronous=NORMAL in WAL mode fsyncs at
    # checkpoints rather than every commit (a power cut can lose the last commits, never corrupt the file).
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    _switch_to_wal(cursor)
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


__all__ = [
    "ATTEMPT_COLUMNS",
    "FEATURE_PREFIX",
    "PREDICTION_COLUMNS",
    "RUN_COLUMNS",
    "TelemetryStore",
    "encode_features",
    "encode_parameters",
]
