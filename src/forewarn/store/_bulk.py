"""The store's write statements, built once per store, and whole frames turned into ``executemany`` chunks.

:class:`WriteStatements` holds the upserts and inserts of one dialect; its :class:`PreparedInsert` forms
run straight on DBAPI connections for ``record_attempt`` (the hot path of every task call) and the frame
writers, and its :class:`AttemptUpserts` writes many attempts (``record_attempts``, the spool's drainer)
as multi-row statements. :class:`BulkColumns` holds a runs or attempts frame converted a column at a time
(:func:`runs_bulk`, :func:`attempts_bulk`) and :func:`write_chunks` sends it. Checking a frame happens
here too, before anything is written, with messages naming the column.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite as sqlite_dialect

from forewarn.errors import InvalidRecordError
from forewarn.records import AttemptOutcome, RunState
from forewarn.store._codec import (
    encode_feature_columns,
    encode_parameter_column,
    encode_tag_column,
    forewarn_version,
    object_values,
)
from forewarn.store._rows import ATTEMPT_LENGTHS, RUN_LENGTHS
from forewarn.store.schema import flow_runs, predictions, task_attempts

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

_RUN_STATES = frozenset(s.value for s in RunState)
_OUTCOMES = frozenset(o.value for o in AttemptOutcome)
_FALLBACK_OUTCOMES = (AttemptOutcome.FALLBACK.value, AttemptOutcome.FALLBACK_FAILURE.value)

ATTEMPT_KEY = ("task_run_id", "execution_id", "attempt")
"""What identifies an attempt row (schema version 7): the unique key its upserts resolve conflicts on."""
_NOT_UPDATED = frozenset({"id", *ATTEMPT_KEY})


def upsert_on_attempt_key(stmt: Any) -> Any:
    """``stmt`` (a SQLite or PostgreSQL ``INSERT`` into ``task_attempts``) as an upsert on :data:`ATTEMPT_KEY`:
    a row already there takes every new value but its key and ``id``."""
    return stmt.on_conflict_do_update(
        index_elements=[task_attempts.c[key] for key in ATTEMPT_KEY],
        set_={c.name: stmt.excluded[c.name] for c in task_attempts.c if c.name not in _NOT_UPDATED},
    )


class PreparedInsert:
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


class WriteStatements:
    """The store's write statements for one dialect, built when it opens (SQLAlchemy caches their compiled form).

    Runs are upserted on ``flow_run_id`` and attempts on :data:`ATTEMPT_KEY` (``(task_run_id, execution_id,
    attempt)``), so writing a record again, or retrying a write whose outcome is unknown, leaves one row.
    Predictions are appended.
    """

    __slots__ = (
        "attempt_upserts",
        "end_run",
        "insert_prediction",
        "prepared_attempt",
        "prepared_run",
        "upsert_attempt",
        "upsert_run",
    )

    def __init__(self, dialect: sa.Dialect, *, sqlite: bool) -> None:
        insert = sqlite_dialect.insert if sqlite else postgresql.insert
        run = insert(flow_runs)
        self.upsert_run = run.on_conflict_do_update(
            index_elements=[flow_runs.c.flow_run_id],
            set_={c.name: run.excluded[c.name] for c in flow_runs.c if c.name != "flow_run_id"},
        )
        self.upsert_attempt = upsert_on_attempt_key(insert(task_attempts))
        attempt_keys = [c.name for c in task_attempts.c if c.name != "id"]
        self.prepared_attempt = PreparedInsert(self.upsert_attempt, task_attempts, attempt_keys, dialect)
        self.prepared_run = PreparedInsert(self.upsert_run, flow_runs, [c.name for c in flow_runs.c], dialect)
        self.attempt_upserts = AttemptUpserts(dialect, sqlite=sqlite)
        self.insert_prediction = sa.insert(predictions)
        self.end_run = (
            sa.update(flow_runs)
            .where(flow_runs.c.flow_run_id == sa.bindparam("b_flow_run_id"))
            .values(state=sa.bindparam("b_state"), end_time=sa.bindparam("b_end_time"))
        )


class AttemptUpserts:
    """Many ``task_attempts`` rows in a few statements: the upsert of :class:`WriteStatements`, set-based.

    The spool's drainer writes hundreds of attempts at a time in the task's own process. ``executemany``
    runs the statement once per row, and each run is a trip through the driver (on SQLite one step,
    which hands the interpreter lock to another thread and back; on PostgreSQL one message pair and
    psycopg's Python per row). Here one statement carries many rows:

    - SQLite: ``INSERT ... VALUES (...), (...), ... ON CONFLICT ...`` for up to :attr:`SQLITE_CHUNK` rows.
      Chunks are powers of two, so at most eight forms of the statement exist (each compiled once).
    - PostgreSQL: ``INSERT ... SELECT ... FROM unnest(%s::VARCHAR(255)[], ...) WITH ORDINALITY ... ORDER BY
      n ON CONFLICT ...``: one array per column, so the SQL is one short constant text that psycopg caches
      and the server prepares, whatever the number of rows (up to :attr:`POSTGRES_CHUNK`).

    Both are compiled by SQLAlchemy from Core expressions, with positional parameters. Values go in as the
    column types would bind them: times through :class:`~forewarn.store.schema.UTCDateTime`'s own bind
    processor; the float and the booleans as Python ``float`` and ``bool``, which
    :func:`~forewarn.store._rows.attempt_row` guarantees and both drivers bind as SQLAlchemy would.
    """

    SQLITE_CHUNK = 128
    """Most rows in one SQLite statement (13 parameters each; SQLite allows 32,766)."""

    POSTGRES_CHUNK = 5_000
    """Most rows in one PostgreSQL statement (one array element per row and column)."""

    __slots__ = ("_compiler", "_insert", "_sql", "_times", "keys", "sqlite")

    def __init__(self, dialect: sa.Dialect, *, sqlite: bool) -> None:
        self.sqlite = sqlite
        self._insert = sqlite_dialect.insert if sqlite else postgresql.insert
        # Positional parameters on PostgreSQL too (psycopg takes %s), so parameters are a list, not names.
        self._compiler = dialect if dialect.positional else type(dialect)(paramstyle="format")  # type: ignore[call-arg]
        self.keys = tuple(c.name for c in task_attempts.c if c.name != "id")
        self._times = tuple(
            (self.keys.index(name), task_attempts.c[name].type.dialect_impl(dialect).bind_processor(dialect))
            for name in ("start_time", "end_time")
        )
        self._sql: dict[int, str] = {}

    def statements(self, rows: Iterable[dict[str, Any]]) -> list[tuple[str, list[Any]]]:
        """``(sql, parameters)`` of each statement writing ``rows`` (values by column, as ``attempt_row`` gives them).

        Rows with the same :data:`ATTEMPT_KEY` become one, the last one's values at the first one's place:
        what upserting them one after another leaves (and PostgreSQL refuses a statement that would touch
        one row twice).
        """
        unique: dict[tuple[Any, Any, Any], tuple[Any, ...]] = {}
        for row in rows:
            unique[row["task_run_id"], row["execution_id"], row["attempt"]] = self._values(row)
        values = list(unique.values())
        out, start = [], 0
        while start < len(values):
            if self.sqlite:
                n = min(self.SQLITE_CHUNK, 1 << (len(values) - start).bit_length() - 1)  # largest power of 2 that fits
                chunk = values[start : start + n]
                out.append((self._statement(n), list(itertools.chain.from_iterable(chunk))))
            else:
                n = min(self.POSTGRES_CHUNK, len(values) - start)
                columns = [list(column) for column in zip(*values[start : start + n], strict=True)]
                out.append((self._statement(0), columns))
            start += n
        return out

    def _values(self, row: dict[str, Any]) -> tuple[Any, ...]:
        values = [row[key] for key in self.keys]
        for index, processor in self._times:
            if processor is not None:
                values[index] = processor(values[index])
        return tuple(values)

    def _statement(self, n: int) -> str:
        """The SQL for ``n`` rows on SQLite; for any number (``n`` = 0) on PostgreSQL."""
        sql = self._sql.get(n)
        if sql is None:
            if n:
                stmt = self._insert(task_attempts).values(
                    [{key: sa.bindparam(f"r{i}_{key}") for key in self.keys} for i in range(n)]
                )
                order = [f"r{i}_{key}" for i in range(n) for key in self.keys]  # row after row
            else:
                stmt = self._insert(task_attempts).from_select(self.keys, self._unnest())
                order = list(self.keys)  # one array per column
            compiled = upsert_on_attempt_key(stmt).compile(dialect=self._compiler)
            if list(compiled.positiontup or ()) != order:
                raise AssertionError(f"unexpected parameter order in the attempts upsert: {compiled.positiontup}")
            sql = self._sql[n] = str(compiled)
        return sql

    def _unnest(self) -> sa.Select[Any]:
        """``SELECT ... FROM unnest(<a typed array per column>) WITH ORDINALITY ... ORDER BY n``: rows in order."""
        arrays = [sa.bindparam(key, type_=postgresql.ARRAY(task_attempts.c[key].type)) for key in self.keys]
        rows = sa.func.unnest(*arrays).table_valued(*self.keys, with_ordinality="n").render_derived()
        return sa.select(*(rows.c[key] for key in self.keys)).order_by(rows.c.n)


class BulkColumns:
    """Columns of many rows made ready for the DBAPI once, then handed out in ``executemany`` chunks.

    Times become exactly what :class:`~forewarn.store.schema.UTCDateTime` binds (on SQLite the text
    ``2026-01-01 10:00:00.000000``, computed for the whole column at once; elsewhere aware UTC datetimes),
    so rows written in bulk compare and read back like rows written one at a time.
    """

    __slots__ = ("columns", "n", "prepared", "sqlite")

    def __init__(self, prepared: PreparedInsert, n: int, *, sqlite: bool) -> None:
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
            raise InvalidRecordError(
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


def check_chunk_rows(chunk_rows: int) -> None:
    """An :class:`InvalidRecordError` unless ``chunk_rows`` is a whole number >= 1."""
    if not isinstance(chunk_rows, int) or isinstance(chunk_rows, bool) or chunk_rows < 1:
        raise InvalidRecordError(f"chunk_rows={chunk_rows!r} is invalid: expected a whole number >= 1, e.g. 50_000")


def runs_bulk(runs: pd.DataFrame, prepared: PreparedInsert, *, source: str, sqlite: bool) -> BulkColumns:
    """The ``flow_runs`` values of every row of a runs frame, checked and converted a column at a time.

    Parameters become canonical JSON (their hash fills a missing ``parameters_hash``), the
    ``feature_<name>`` cells each row's ``features`` JSON, the ``tags`` lists sorted JSON lists, and a
    missing ``forewarn_version`` this one's.
    ``source`` is written as given (the caller checks it with :func:`~forewarn.store._rows.check_source`).
    """
    import numpy as np

    _require_columns(runs, ("flow_run_id", "flow_name", "state"), "runs")
    n, lengths = len(runs), RUN_LENGTHS
    bulk = BulkColumns(prepared, n, sqlite=sqlite)
    cols = bulk.columns
    for name in ("flow_run_id", "flow_name", "deployment", "flow_version", "host", "state"):
        cols[name] = object_values(runs, name, length=lengths[name])
    _require_values(cols, ("flow_run_id", "flow_name", "state"), "runs")
    _require_known(cols["state"], _RUN_STATES, "runs['state']", "RunState")
    parameters, digests = encode_parameter_column(object_values(runs, "parameters"))
    given_hash = object_values(runs, "parameters_hash", length=lengths["parameters_hash"])
    cols["parameters"] = parameters
    cols["parameters_hash"] = np.where(given_hash == None, digests, given_hash)  # noqa: E711 - elementwise
    for name in ("scheduled_start", "start_time", "end_time"):
        cols[name] = bulk.times(runs, name, label="runs")
    version = object_values(runs, "forewarn_version", length=lengths["forewarn_version"])
    version[version == None] = forewarn_version()  # noqa: E711 - elementwise
    cols["forewarn_version"] = version
    cols["source"] = np.full(n, source, dtype=object)
    cols["features"] = encode_feature_columns(runs)
    cols["tags"] = encode_tag_column(runs)
    return bulk


def attempts_bulk(attempts: pd.DataFrame, prepared: PreparedInsert, *, sqlite: bool) -> BulkColumns:
    """The ``task_attempts`` values of every row of an attempts frame, checked and converted a column at a time.

    ``duration_seconds`` is computed; ``used_fallback`` defaults to whether the outcome is a fallback one.
    """
    import numpy as np
    import pandas as pd

    required = ("task_run_id", "task_name", "attempt", "start_time", "end_time", "outcome")
    _require_columns(attempts, required, "attempts")
    n, lengths = len(attempts), ATTEMPT_LENGTHS
    bulk = BulkColumns(prepared, n, sqlite=sqlite)
    cols = bulk.columns
    for name in ("flow_run_id", "task_run_id", "task_name", "outcome", "exception_type", "exception_message"):
        cols[name] = object_values(attempts, name, length=lengths[name])
    cols["host"] = object_values(attempts, "host", length=lengths["host"])
    _require_values(cols, ("task_run_id", "task_name", "outcome"), "attempts")
    _require_known(cols["outcome"], _OUTCOMES, "attempts['outcome']", "AttemptOutcome")
    number = pd.to_numeric(attempts["attempt"], errors="coerce")
    if number.isna().any() or (number != np.floor(number)).any():
        raise InvalidRecordError("attempts['attempt'] must hold whole numbers, e.g. 1 for the first attempt")
    cols["attempt"] = number.astype(np.int64).tolist()
    cols["start_time"] = bulk.times(attempts, "start_time", label="attempts")
    cols["end_time"] = bulk.times(attempts, "end_time", label="attempts")
    _require_values(cols, ("start_time", "end_time"), "attempts")
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
    if "wait_seconds" in attempts.columns:
        waits = pd.to_numeric(attempts["wait_seconds"], errors="coerce")
        cols["wait_seconds"] = [None if pd.isna(v) else float(v) for v in waits.tolist()]
    else:
        cols["wait_seconds"] = np.full(n, None, dtype=object)
    cols["replica"] = _whole_or_none(attempts, "replica")
    cols["provider"] = object_values(attempts, "provider", length=lengths["provider"])
    execution = object_values(attempts, "execution_id", length=lengths["execution_id"])
    execution[execution == None] = ""  # noqa: E711 - elementwise; imported rows: no execution known
    cols["execution_id"] = execution
    return bulk


def _whole_or_none(frame: pd.DataFrame, name: str) -> list[int | None]:
    """A column of optional whole numbers (``replica``): missing column or empty cells are ``None``."""
    import numpy as np
    import pandas as pd

    if name not in frame.columns:
        return [None] * len(frame)
    number = pd.to_numeric(frame[name], errors="coerce")
    bad = number.notna() & (number != np.floor(number))
    if (frame[name].notna() & number.isna()).any() or bad.any():
        raise InvalidRecordError(f"attempts[{name!r}] must hold whole numbers or be empty, e.g. 2 for the second copy")
    return [None if pd.isna(v) else int(v) for v in number.tolist()]


def write_chunks(
    conn: sa.Connection, bulk: BulkColumns, chunk_rows: int, progress: Callable[[int, int], None] | None
) -> int:
    """Run ``bulk``'s statement chunk by chunk on ``conn`` (inside the caller's transaction); the row count.

    ``progress(done, total)`` is called before the first chunk and after each one.
    """
    if progress is not None:
        progress(0, bulk.n)
    for done, params in bulk.chunks(chunk_rows):
        conn.exec_driver_sql(bulk.prepared.sql, params)
        if progress is not None:
            progress(done, bulk.n)
    return bulk.n


def _require_columns(frame: pd.DataFrame, names: Sequence[str], label: str) -> None:
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise InvalidRecordError(
            f"the {label} frame has no column(s) {', '.join(missing)}; it needs at least {', '.join(names)}"
        )


def _require_values(cols: Mapping[str, Sequence[Any]], names: Sequence[str], label: str) -> None:
    for name in names:
        empty = [i for i, v in enumerate(cols[name]) if v is None]
        if empty:
            raise InvalidRecordError(
                f"{label}[{name!r}] is empty in {len(empty)} row(s), first at position {empty[0]}: every "
                f"{label[:-1]} needs a {name}"
            )


def _require_known(values: np.ndarray, known: frozenset[str], label: str, kind: str) -> None:
    bad = sorted({v for v in set(values.tolist()) if v not in known}, key=str)
    if bad:
        raise InvalidRecordError(
            f"{label} holds {', '.join(map(repr, bad[:5]))}: expected {kind} values ({', '.join(sorted(known))})"
        )
