"""The telemetry store: :class:`TelemetryStore`, the only class in forewarn that talks SQL.

It writes :class:`~forewarn.records.FlowRunRecord`, :class:`~forewarn.records.AttemptRecord` and
:class:`~forewarn.records.PredictionRecord` rows into the tables of :mod:`forewarn.store.schema` (one at a time,
or a whole imported history per transaction from a DataFrame) and reads them back as pandas DataFrames.
It runs on an embedded SQLite file (the default, ``~/.local/share/forewarn/telemetry.db``) or on PostgreSQL
(``postgresql+psycopg://``); ``docs/store.md`` describes both.

:class:`TelemetryStore` is a facade: the engine, URL and errors live in ``_engine``, retried execution in
``_execute``, value codecs in ``_codec``, records as rows in ``_rows``, the write statements and frame
writes in ``_bulk``, the SELECT statements in ``_queries`` and rows as DataFrames in ``_frames``.

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

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from forewarn.errors import InvalidRecordError, StoreError
from forewarn.records import (
    FEATURE_PREFIX,
    AttemptRecord,
    FlowRunRecord,
    PredictionRecord,
    RunState,
)
from forewarn.resilience.breaker_rules import BreakerSnapshot
from forewarn.store._breakers import change_breaker, read_breaker
from forewarn.store._bulk import BulkColumns, WriteStatements, attempts_bulk, check_chunk_rows, runs_bulk, write_chunks
from forewarn.store._codec import aware, cut, encode_features, encode_parameters, state_value
from forewarn.store._engine import Database
from forewarn.store._execute import read_once, write_prepared_retrying, write_raw_retrying, write_retrying
from forewarn.store._frames import ended_columns, ended_frame, rows_frame
from forewarn.store._preflight import check_sqlite_file
from forewarn.store._queries import (
    ATTEMPT_COLUMNS,
    ENDED_ATTEMPT_COLUMNS,
    ENDED_RUN_COLUMNS,
    PREDICTION_COLUMNS,
    RUN_COLUMNS,
    attempts_query,
    count_ended_select,
    ended_params,
    ended_select,
    flow_names_select,
    known_ids_select,
    last_runs_query,
    meta_value_select,
    predictions_query,
    recent_failures_query,
    runs_query,
    state_counts_select,
    with_raw_times,
)
from forewarn.store._rows import RUN_LENGTHS, attempt_row, check_source, prediction_row, run_row
from forewarn.store._timeouts import StoreTimeouts
from forewarn.store.aggregates import StoreTotals, read_totals
from forewarn.store.migrations import VERSION_KEY, ensure_schema, read_version, write_meta
from forewarn.store.spool_drainer import flush_pending
from forewarn.timeutil import utc_now

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import sqlalchemy as sa

T = TypeVar("T")


class TelemetryStore:
    """Reads and writes forewarn's telemetry in a SQL database.

    ``url`` is a SQLAlchemy URL, ``sqlite:///PATH`` or ``postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB``
    (default: ``FOREWARN_DB_URL``, see :func:`forewarn.settings.get_settings`). Opening creates the SQLite
    file's directory, connects, and creates or upgrades the schema (see :mod:`forewarn.store.migrations`).
    Readers pass ``create=False``: a missing SQLite file or an empty database is then an error, never a new
    store. ``setting`` names where an explicit ``url`` came from (e.g. ``"--db"``), so that errors say what
    to fix; it defaults to ``"url"`` (``FOREWARN_DB_URL`` when ``url`` is not given). A database that holds
    other tables but no forewarn version marker is refused either way, before anything is written to it.
    ``sleep`` is the pause between retries of a write that hit a locked SQLite
    database (tests pass a fake). ``timeouts`` (:class:`~forewarn.store.StoreTimeouts`) bounds every wait on
    PostgreSQL; after the database did not answer, calls raise :class:`~forewarn.errors.StoreUnreachableError`
    at once until ``timeouts.retry_interval`` seconds of ``clock`` have passed (docs/store.md, "Timeouts").

    Raises :class:`~forewarn.errors.StoreUnreachableError` when the database does not answer,
    :class:`~forewarn.errors.SchemaVersionError` when a newer forewarn wrote it,
    :class:`~forewarn.errors.StoreError` for anything else that keeps it from opening, and
    :class:`~forewarn.errors.ConfigurationError` for a URL that is not SQLite or PostgreSQL. The
    password never appears in a message: :attr:`url` and every error show it as ``***``.

    One store may be shared by every thread of a process (it holds a connection pool); open one per
    process. Every database error is raised as :class:`~forewarn.errors.StoreError`; a record, frame or
    argument the store cannot take raises :class:`~forewarn.errors.InvalidRecordError` (a ``ValueError``
    and a ``TypeError``) before anything is written.

    Example::

        >>> from forewarn.store.schema import SCHEMA_VERSION
        >>> store = TelemetryStore("sqlite://")
        >>> store.schema_version == SCHEMA_VERSION
        True
        >>> store.close()
    """

    ENDED_RUN_COLUMNS: tuple[str, ...] = ENDED_RUN_COLUMNS
    """Columns of :meth:`ended_runs`: what :func:`forewarn.learning.features.build_features` reads from history."""

    ENDED_ATTEMPT_COLUMNS: tuple[str, ...] = ENDED_ATTEMPT_COLUMNS
    """Columns of :meth:`ended_attempts`: the attempt, its run's flow name and its run's start times."""

    def __init__(
        self,
        url: str | None = None,
        *,
        create: bool = True,
        sleep: Callable[[float], None] = time.sleep,
        timeouts: StoreTimeouts | None = None,
        clock: Callable[[], float] = time.monotonic,
        setting: str = "url",
    ) -> None:
        if url is None:
            from forewarn.settings import get_settings

            url, setting = get_settings().db_url, "FOREWARN_DB_URL"
        check_sqlite_file(url, setting, create=create)  # before the engine, which may create or alter the file
        self._db = Database(url, setting, timeouts=timeouts, clock=clock)
        self._spool_key = url  # this process's spooled writes to this URL are flushed before each read
        self._sleep = sleep
        self._db.open(lambda conn: ensure_schema(conn, url=self._db.url, create=create))
        self._statements = WriteStatements(self._db.engine.dialect, sqlite=self._db.is_sqlite)

    # -- properties ----------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The store's URL with its password shown as ``***``.

        Example::

            >>> TelemetryStore("sqlite://").url
            'sqlite://'
        """
        return self._db.url

    @property
    def engine(self) -> sa.Engine:
        """The SQLAlchemy ``Engine`` (AUTOCOMMIT; use :func:`~forewarn.store.migrations.write_transaction`).

        Example::

            >>> TelemetryStore("sqlite://").engine.dialect.name
            'sqlite'
        """
        return self._db.engine

    @property
    def schema_version(self) -> int:
        """The schema version recorded in the store.

        Example::

            >>> from forewarn.store.schema import SCHEMA_VERSION
            >>> TelemetryStore("sqlite://").schema_version == SCHEMA_VERSION
            True
        """
        version = self._read(read_version, "read the schema version")
        if version is None:  # the tables were dropped under us
            raise StoreError(f"{self.url} no longer holds a forewarn store", url=self.url)
        return version

    def __repr__(self) -> str:
        """``TelemetryStore('sqlite:///…')`` with the password masked."""
        state = ", closed" if self._db.closed else ""
        return f"{type(self).__name__}({self.url!r}{state})"

    def close(self) -> None:
        """Close every pooled connection. The store cannot be used afterwards; closing twice is fine.

        Example::

            >>> store = TelemetryStore("sqlite://")
            >>> store.close()
            >>> store
            TelemetryStore('sqlite://', closed)
        """
        self._db.close()

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
        this forewarn's. ``features`` are stored as a JSON object (null when empty), ``tags`` as a sorted JSON list
        (null when none). ``source`` is
        ``"forewarn"`` for live runs or ``"import"`` for imported history.

        Example::

            >>> from datetime import datetime, timezone
            >>> store = TelemetryStore("sqlite://")
            >>> rec = FlowRunRecord("f1", "etl", start_time=datetime(2026, 1, 1, tzinfo=timezone.utc))
            >>> store.record_flow_run_start(rec); store.record_flow_run_start(rec)
            >>> len(store.runs())
            1
        """
        params = run_row(rec, source)
        self._write(lambda conn: conn.execute(self._statements.upsert_run, params), "record_flow_run_start")

    def record_flow_runs(self, recs: Iterable[FlowRunRecord], *, source: str = "forewarn") -> int:
        """Upsert many ``flow_runs`` rows in one transaction (as :meth:`record_flow_run_start`); their count.

        Example::

            >>> from datetime import datetime, timezone
            >>> t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
            >>> runs = [FlowRunRecord(f"r{i}", "etl", t0, RunState.COMPLETED, end_time=t0) for i in range(3)]
            >>> TelemetryStore("sqlite://").record_flow_runs(runs, source="import")
            3
        """
        params = [run_row(rec, source) for rec in recs]
        if params:
            upsert = self._statements.upsert_run
            self._write(lambda conn: conn.execute(upsert, params), "record_flow_runs", atomic=True)
        return len(params)

    def record_flow_run_end(self, flow_run_id: str, state: RunState | str, end_time: datetime) -> None:
        """Set the final ``state`` and ``end_time`` of a flow run recorded by :meth:`record_flow_run_start`.

        Raises :class:`~forewarn.errors.StoreError` when no run has that id (its start was never
        recorded), :class:`~forewarn.errors.InvalidRecordError` (a ``ValueError``) for an unknown state or a
        naive ``end_time``.

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
            "b_flow_run_id": cut(flow_run_id, RUN_LENGTHS["flow_run_id"]),  # the id as record_flow_run_start stored it
            "b_state": state_value(state),
            "b_end_time": aware(end_time, "end_time"),
        }
        end_run = self._statements.end_run
        updated = self._write(lambda conn: conn.execute(end_run, params).rowcount, "record_flow_run_end")
        if updated == 0:
            raise StoreError(
                f"no flow run {flow_run_id!r} in {self.url}: record_flow_run_start(...) must record it before its end",
                url=self.url,
            )

    def record_attempt(self, rec: AttemptRecord) -> None:
        """Write one ``task_attempts`` row (a task's hot path: one statement, one commit).

        A second record with the same ``(task_run_id, execution_id, attempt)`` overwrites the first, so retrying
        a write whose outcome is unknown is safe. Strings longer than their column are cut to fit.

        Example::

            >>> from datetime import datetime, timezone
            >>> from forewarn.records import AttemptOutcome
            >>> t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
            >>> store = TelemetryStore("sqlite://")
            >>> store.record_attempt(AttemptRecord(None, "t1", "load", 1, t0, t0, AttemptOutcome.SUCCESS))
            >>> store.attempts()["outcome"].tolist()
            ['success']
        """
        params = attempt_row(rec)
        self._check_open()
        prepared = self._statements.prepared_attempt
        write_prepared_retrying(self._db, prepared, params, "record_attempt", sleep=self._sleep)

    def record_attempts(self, recs: Iterable[AttemptRecord]) -> int:
        """Write many attempts in one transaction (a multi-row upsert per 128 rows); return how many.

        Records with the same ``(task_run_id, execution_id, attempt)`` leave one row, the last one's values.

        Example::

            >>> from datetime import datetime, timezone
            >>> from forewarn.records import AttemptOutcome
            >>> t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
            >>> recs = [AttemptRecord(None, "t1", "load", n, t0, t0, AttemptOutcome.FAILURE) for n in (1, 2)]
            >>> TelemetryStore("sqlite://").record_attempts(recs)
            2
        """
        rows = [attempt_row(rec) for rec in recs]
        if rows:
            self._check_open()
            statements = self._statements.attempt_upserts.statements(rows)
            write_raw_retrying(self._db, statements, "record_attempts", sleep=self._sleep)
        return len(rows)

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
        ``host``, ``forewarn_version``, ``tags`` (lists of strings, or ``None``) and any ``feature_<name>`` columns
        are optional. Each row's
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
        check_source(source)
        check_chunk_rows(chunk_rows)
        bulk = runs_bulk(runs, self._statements.prepared_run, source=source, sqlite=self._db.is_sqlite)
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
        check_chunk_rows(chunk_rows)
        bulk = attempts_bulk(attempts, self._statements.prepared_attempt, sqlite=self._db.is_sqlite)
        return self._write_bulk(bulk, chunk_rows, progress, "record_attempts_frame")

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
        params = prediction_row(rec)
        self._write(lambda conn: conn.execute(self._statements.insert_prediction, params), "record_prediction")

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
        params = [prediction_row(rec) for rec in recs]
        if params:
            insert = self._statements.insert_prediction
            self._write(lambda conn: conn.execute(insert, params), "record_predictions", atomic=True)
        return len(params)

    def record_history(
        self,
        runs: Iterable[FlowRunRecord],
        attempts: Iterable[AttemptRecord] = (),
        *,
        source: str,
        meta: Mapping[str, str] | None = None,
    ) -> tuple[int, int]:
        """Upsert imported runs and their attempts, and set ``meta`` keys, all in **one** transaction.

        What an importer that reads another system page by page writes per page: either the page's runs,
        attempts and bookkeeping (``meta``: ``forewarn_meta`` keys, e.g. an import watermark) are all
        written, or none. Returns ``(runs written, attempts written)``. The key ``schema_version`` is refused.

        Example::

            >>> from datetime import datetime, timezone
            >>> t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
            >>> store = TelemetryStore("sqlite://")
            >>> run = FlowRunRecord("r1", "etl", t0, RunState.COMPLETED, end_time=t0)
            >>> store.record_history([run], source="prefect", meta={"import_mark": "2026-01-01"})
            (1, 0)
            >>> store.meta_value("import_mark")
            '2026-01-01'
        """
        run_params = [run_row(rec, source) for rec in runs]
        attempt_params = [attempt_row(rec) for rec in attempts]
        meta = dict(meta or {})
        if VERSION_KEY in meta:
            raise InvalidRecordError(f"meta key {VERSION_KEY!r} is the store's own; choose another key")

        def write(conn: sa.Connection) -> tuple[int, int]:
            if run_params:
                conn.execute(self._statements.upsert_run, run_params)
            if attempt_params:
                conn.execute(self._statements.upsert_attempt, attempt_params)
            for key, value in meta.items():
                write_meta(conn, key, value)
            return len(run_params), len(attempt_params)

        return self._write(write, "record_history", atomic=True)

    # -- reading -------------------------------------------------------------------------------------

    # -- circuit breakers ----------------------------------------------------------------------------

    def breaker_state(self, name: str) -> BreakerSnapshot:
        """The shared state of circuit breaker ``name`` (closed and empty if it has none yet).

        One read under the read deadline; unlike the telemetry reads it does not wait for the spool.

        Example::

            >>> TelemetryStore("sqlite://").breaker_state("payments").state
            'closed'
        """
        self._check_open()
        return read_once(self._db, lambda conn: read_breaker(conn, name, self.url), "breaker_state")

    def change_breaker(
        self, name: str, change: Callable[[BreakerSnapshot], tuple[BreakerSnapshot, T]]
    ) -> tuple[BreakerSnapshot, T]:
        """Apply ``change`` to breaker ``name``'s state atomically: no other process's change interleaves.

        ``change(current)`` returns ``(new snapshot, result)``; it may run more than once if the
        transaction is retried, so it must be pure. Returns the stored snapshot and the result.

        Example::

            >>> from dataclasses import replace
            >>> store = TelemetryStore("sqlite://")
            >>> store.change_breaker("db", lambda s: (replace(s, state="open", since=1.0), "opened"))[1]
            'opened'
            >>> store.breaker_state("db").state
            'open'
        """
        self._check_open()
        return write_retrying(
            self._db,
            lambda conn: change_breaker(conn, name, change, self.url),
            "change_breaker",
            sleep=self._sleep,
            atomic=True,
            bounded=True,
        )

    def known_ids(self, table: str, ids: Iterable[str], *, chunk: int = 500) -> set[str]:
        """Which of ``ids`` the store already holds: run ids (``table="flow_runs"``) or task run ids
        (``"task_attempts"``). Asked ``chunk`` ids per query.

        Example::

            >>> from datetime import datetime, timezone
            >>> store = TelemetryStore("sqlite://")
            >>> store.record_flow_run_start(FlowRunRecord("f1", "etl", datetime(2026, 1, 1, tzinfo=timezone.utc)))
            >>> store.known_ids("flow_runs", ["f1", "f2"])
            {'f1'}
        """
        stmt = known_ids_select(table)
        wanted = list(dict.fromkeys(str(i) for i in ids))
        found: set[str] = set()
        for start in range(0, len(wanted), chunk):
            found.update(self._read(_ids_reader(stmt, wanted[start : start + chunk]), f"known_ids({table})"))
        return found

    def flow_names(self) -> set[str]:
        """The names of the flows the store holds runs of.

        Example::

            >>> from datetime import datetime, timezone
            >>> store = TelemetryStore("sqlite://")
            >>> store.record_flow_run_start(FlowRunRecord("f1", "etl", datetime(2026, 1, 1, tzinfo=timezone.utc)))
            >>> store.flow_names()
            {'etl'}
        """
        stmt = flow_names_select()
        return set(self._read(lambda conn: [str(n) for n in conn.execute(stmt).scalars()], "flow_names"))

    def state_counts(self) -> dict[str, int]:
        """How many runs the store holds in each state (one grouped count), e.g. to see if training can start.

        Example::

            >>> from datetime import datetime, timezone
            >>> t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
            >>> store = TelemetryStore("sqlite://")
            >>> store.record_flow_runs([FlowRunRecord("a", "etl", t0, RunState.FAILED, end_time=t0)])
            1
            >>> store.state_counts()
            {'FAILED': 1}
        """
        stmt = state_counts_select()
        rows = self._read(lambda conn: conn.execute(stmt).all(), "state_counts")
        return {str(state): int(n) for state, n in rows}

    def meta_value(self, key: str) -> str | None:
        """The ``forewarn_meta`` value under ``key`` (``None`` when unset), e.g. an importer's watermark.

        Example::

            >>> print(TelemetryStore("sqlite://").meta_value("prefect_import"))
            None
        """
        stmt = meta_value_select(key)
        value = self._read(lambda conn: conn.execute(stmt).scalar_one_or_none(), "meta_value")
        return None if value is None else str(value)

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
        ``datetime64[ns, UTC]``, ``parameters`` and ``features`` are ``dict``, ``tags`` a sorted ``list`` of strings
        (empty for none, and for runs stored before schema version 6); a run still going (or killed)
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
            >>> store.record_flow_run_start(FlowRunRecord("f2", "etl", t0, features={"source_system": "sap"},
            ...                                           tags=("nightly", "etl")))
            >>> store.runs()[["features", "tags", "feature_input_rows", "feature_source_system"]]
                               features            tags  feature_input_rows feature_source_system
            0      {'input_rows': 1200}              []              1200.0                  None
            1  {'source_system': 'sap'}  [etl, nightly]                 NaN                   sap
        """
        stmt = runs_query(flow_name=flow_name, since=since, until=until, state=state, limit=limit)
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
        stmt = attempts_query(
            flow_name=flow_name, flow_run_id=flow_run_id, since=since, until=until, outcome=outcome, limit=limit
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
        stmt = predictions_query(
            flow_name=flow_name, flow_run_id=flow_run_id, since=since, until=until, source=source, limit=limit
        )
        return self._select_frame(stmt, PREDICTION_COLUMNS, "predictions", newest_first=limit is not None)

    def totals(
        self, *, since: datetime, until: datetime | None = None, model_version: str | None = None, counts: bool = True
    ) -> StoreTotals:
        """Aggregates for a metrics exporter, computed by the database (:mod:`forewarn.store.aggregates`).

        Attempt, retry and run totals over the whole store (only with ``counts``: they scan their tables);
        breaker refusals that ended in ``[since, until)`` (``until`` default now), the newest risk per flow
        and deployment predicted in it, and live warning figures over the runs that ended in it, of
        ``model_version``'s predictions if given.

        Example::

            >>> from datetime import datetime, timezone
            >>> TelemetryStore("sqlite://").totals(since=datetime(2026, 1, 1, tzinfo=timezone.utc)).runs
            []
        """
        end = until if until is not None else utc_now()
        return self._read(lambda conn: read_totals(conn, since, end, model_version, counts=counts), "totals")

    def last_runs(self, flow_name: str, ended_before: datetime, n: int) -> pd.DataFrame:
        """The ``n`` runs of ``flow_name`` that ended most recently before ``ended_before``, oldest first.

        Runs without an end time (still running, or killed) are left out. Served by the
        ``(flow_name, end_time)`` index. Columns as :meth:`runs`.

        Example::

            >>> from datetime import datetime, timezone
            >>> TelemetryStore("sqlite://").last_runs("etl", datetime.now(timezone.utc), 5).empty
            True
        """
        stmt = last_runs_query(flow_name, ended_before, n)
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
        stmt = recent_failures_query(aware(since, "since"), until)
        return self._select_frame(stmt, RUN_COLUMNS, "recent_failures")

    # -- lean reads for live scoring (forewarn.scoring.live) ----------------------------------------------

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
        return ended_frame(self._ended_rows("flow_runs", since, until, "ended_runs"))

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
        return ended_frame(self._ended_rows("task_attempts", since, until, "ended_attempts"))

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
        stmt = count_ended_select(table)
        params = {"since": aware(since, "since"), "until": aware(until, "until")}
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

    # -- running statements --------------------------------------------------------------------------

    def _ended_rows(self, table: str, since: datetime, until: datetime | None, action: str) -> dict[str, np.ndarray]:
        """The lean select of ``table`` as numpy columns: object text, each time column parsed in one call."""
        stmt, columns = ended_select(table, bounded=until is not None)
        params = ended_params(since, until)
        rows = self._read(lambda conn: conn.execute(stmt, params).all(), action)
        return ended_columns(rows, columns, sqlite=self._db.is_sqlite)

    def _select_frame(
        self, stmt: sa.Select[Any], columns: Sequence[str], action: str, *, newest_first: bool = False
    ) -> pd.DataFrame:
        """Run a reader's select and return its rows as a typed frame, oldest first."""
        raw = with_raw_times(stmt)
        rows = self._read(lambda conn: conn.execute(raw).all(), action)
        return rows_frame(rows[::-1] if newest_first else rows, columns, sqlite=self._db.is_sqlite)

    def _write_bulk(
        self, bulk: BulkColumns, chunk_rows: int, progress: Callable[[int, int], None] | None, action: str
    ) -> int:
        """Write ``bulk`` chunk by chunk inside one write transaction."""
        if bulk.n == 0:
            return 0
        return self._write(lambda conn: write_chunks(conn, bulk, chunk_rows, progress), action, atomic=True)

    def _write(self, work: Callable[[sa.Connection], T], action: str, *, atomic: bool = False) -> T:
        """Run ``work`` on a pooled connection, retrying transient failures (see :mod:`forewarn.store._execute`)."""
        self._check_open()
        return write_retrying(self._db, work, action, sleep=self._sleep, atomic=atomic)

    def _read(self, work: Callable[[sa.Connection], T], action: str) -> T:
        """Run a read once, after waiting (bounded) for this process's spooled telemetry to reach the store."""
        self._check_open()
        flush_pending(self._spool_key)
        return read_once(self._db, work, action)

    def _check_open(self) -> None:
        if self._db.closed:
            raise StoreError(f"{self!r} was closed; open a new TelemetryStore", url=self.url)


def _ids_reader(stmt: sa.Select[Any], ids: list[str]) -> Callable[[sa.Connection], list[str]]:
    """A read that runs ``stmt`` with the expanding parameter ``ids`` and returns the first column."""
    return lambda conn: [str(value) for value in conn.execute(stmt, {"ids": ids}).scalars()]


__all__ = [
    "ATTEMPT_COLUMNS",
    "FEATURE_PREFIX",
    "PREDICTION_COLUMNS",
    "RUN_COLUMNS",
    "TelemetryStore",
    "encode_features",
    "encode_parameters",
]
