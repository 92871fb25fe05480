"""The SELECT statements of the telemetry store's readers.

One builder per reader (:func:`runs_query`, :func:`attempts_query`, :func:`predictions_query`,
:func:`last_runs_query`, :func:`recent_failures_query`), kept apart from running them so tests can
``EXPLAIN`` exactly what the readers run. With a ``limit`` they order newest first, so ``LIMIT`` keeps the
newest rows, and the reader turns the rows around. The lean selects of live scoring
(:func:`ended_select`, :func:`count_ended_select`) are built once per process. Times are selected as the
driver returns them (:func:`raw_time`) and parsed a column at a time by :mod:`forewarn.store._frames`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from forewarn.errors import InvalidRecordError
from forewarn.records import FAILURE_STATES
from forewarn.store._codec import TIME_COLUMNS, aware
from forewarn.store.schema import flow_runs, forewarn_meta, predictions, task_attempts

RUN_COLUMNS: tuple[str, ...] = tuple(flow_runs.c.keys())
"""The ``flow_runs`` columns in table order: :meth:`TelemetryStore.runs` and friends return these, then one
``feature_<name>`` column per pre-run feature found in the rows' ``features``."""

ATTEMPT_COLUMNS: tuple[str, ...] = (*task_attempts.c.keys(), "flow_name")
"""Columns of :meth:`TelemetryStore.attempts`: the ``task_attempts`` columns, then the run's ``flow_name``."""

PREDICTION_COLUMNS: tuple[str, ...] = tuple(predictions.c.keys())
"""Columns of :meth:`TelemetryStore.predictions`, in table order."""

ENDED_RUN_COLUMNS: tuple[str, ...] = (
    "flow_run_id",
    "flow_name",
    "parameters_hash",
    "flow_version",
    "scheduled_start",
    "start_time",
    "end_time",
    "state",
    "features",
)
"""Columns of :meth:`TelemetryStore.ended_runs`: what :func:`forewarn.learning.features.build_features` reads."""

ENDED_ATTEMPT_COLUMNS: tuple[str, ...] = (
    "flow_run_id",
    "flow_name",
    "run_scheduled_start",
    "run_start_time",
    "end_time",
    "outcome",
    "exception_type",
)
"""Columns of :meth:`TelemetryStore.ended_attempts`: the attempt, its run's flow name and start times."""

_FAILURE_STATES = tuple(sorted(FAILURE_STATES))
_ENDED_TABLES = ("flow_runs", "task_attempts")


_ID_COLUMNS = {"flow_runs": flow_runs.c.flow_run_id, "task_attempts": task_attempts.c.task_run_id}


def known_ids_select(table: str) -> sa.Select[Any]:
    """The distinct ids of ``table`` (``flow_runs``: ``flow_run_id``; ``task_attempts``: ``task_run_id``)
    among the expanding bound parameter ``ids``."""
    if table not in _ID_COLUMNS:
        raise InvalidRecordError(f"table={table!r} is invalid: expected one of {', '.join(_ID_COLUMNS)}")
    column = _ID_COLUMNS[table]
    return sa.select(column).distinct().where(column.in_(sa.bindparam("ids", expanding=True)))


def flow_names_select() -> sa.Select[Any]:
    """The distinct ``flow_name`` values of ``flow_runs``."""
    return sa.select(flow_runs.c.flow_name).distinct()


def state_counts_select() -> sa.Select[Any]:
    """``(state, runs)`` for every state in ``flow_runs``."""
    return sa.select(flow_runs.c.state, sa.func.count()).group_by(flow_runs.c.state)


def meta_value_select(key: str) -> sa.Select[Any]:
    """The ``forewarn_meta`` value stored under ``key`` (a bound parameter)."""
    return sa.select(forewarn_meta.c.value).where(forewarn_meta.c.key == key)


def runs_query(
    *,
    flow_name: str | Sequence[str] | None,
    since: datetime | None,
    until: datetime | None,
    state: str | Sequence[str] | None,
    limit: int | None,
) -> sa.Select[Any]:
    """Flow runs filtered by name and state, with ``start_time`` in ``[since, until)``; never-started last."""
    c = flow_runs.c
    where = _where((c.flow_name, _one_or_many(flow_name)), (c.state, _one_or_many(state)))
    stmt = sa.select(flow_runs).where(*where, *_window(c.start_time, since, until))
    return _ordered(stmt, limit, c.start_time, c.flow_run_id, nulls_last=True)


def attempts_query(
    *,
    flow_name: str | Sequence[str] | None,
    flow_run_id: str | Sequence[str] | None,
    since: datetime | None,
    until: datetime | None,
    outcome: str | Sequence[str] | None,
    limit: int | None,
) -> sa.Select[Any]:
    """Attempts plus their run's ``flow_name`` (outer join), with ``end_time`` in ``[since, until)``."""
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
    return _ordered(stmt, limit, a.start_time, a.id)


def predictions_query(
    *,
    flow_name: str | Sequence[str] | None,
    flow_run_id: str | Sequence[str] | None,
    since: datetime | None,
    until: datetime | None,
    source: str | Sequence[str] | None,
    limit: int | None,
) -> sa.Select[Any]:
    """Predictions filtered by flow, run and source, with ``predicted_at`` in ``[since, until)``."""
    c = predictions.c
    where = _where(
        (c.flow_name, _one_or_many(flow_name)),
        (c.flow_run_id, _one_or_many(flow_run_id)),
        (c.source, _one_or_many(source)),
    )
    stmt = sa.select(predictions).where(*where, *_window(c.predicted_at, since, until))
    return _ordered(stmt, limit, c.predicted_at, c.id)


def last_runs_query(flow_name: str, ended_before: datetime, n: int) -> sa.Select[Any]:
    """The ``n`` runs of ``flow_name`` that ended last before ``ended_before``, newest first."""
    _check_count(n, "n")
    c = flow_runs.c
    return (
        sa.select(flow_runs)
        .where(c.flow_name == flow_name, c.end_time < aware(ended_before, "ended_before"))
        .order_by(c.end_time.desc(), c.flow_run_id.desc())
        .limit(n)
    )


def recent_failures_query(since: datetime, until: datetime | None) -> sa.Select[Any]:
    """Runs of every flow in a failure state with ``end_time`` in ``[since, until)``, by ``end_time``."""
    c = flow_runs.c
    return (
        sa.select(flow_runs)
        .where(c.state.in_(_FAILURE_STATES), *_window(c.end_time, since, until))
        .order_by(c.end_time.asc(), c.flow_run_id.asc())
    )


def with_raw_times(stmt: sa.Select[Any]) -> sa.Select[Any]:
    """``stmt`` selecting its time columns as the driver returns them (text on SQLite)."""
    return stmt.with_only_columns(
        *[raw_time(c) if c.name in TIME_COLUMNS else c for c in stmt.selected_columns],
        maintain_column_froms=True,
    )


def raw_time(column: sa.ColumnElement[Any], name: str | None = None) -> sa.ColumnElement[Any]:
    """A time column fetched as the driver returns it (text on SQLite), parsed later a column at a time."""
    return sa.type_coerce(column, sa.String).label(name or column.name)


# --- lean reads for live scoring (forewarn.scoring.live) ------------------------------------------------

_ENDED_STATEMENTS: dict[tuple[str, bool], sa.Select[Any]] = {}


def ended_select(table: str, *, bounded: bool) -> tuple[sa.Select[Any], tuple[str, ...]]:
    """The lean select of ``table`` (``"flow_runs"`` or ``"task_attempts"``) on ``end_time >= :since``
    (and ``< :until`` when ``bounded``), in ``end_time`` order, and the names of its columns."""
    _check_ended_table(table)
    if table == "flow_runs":
        return _ended_statement("runs", bounded=bounded), ENDED_RUN_COLUMNS
    return _ended_statement("attempts", bounded=bounded), ENDED_ATTEMPT_COLUMNS


def count_ended_select(table: str) -> sa.Select[Any]:
    """``count(*)`` of ``table``'s rows with ``end_time`` in ``[:since, :until)``: an index-only count."""
    _check_ended_table(table)
    return _ended_statement(f"count_{table}", bounded=True)


def ended_params(since: datetime, until: datetime | None) -> dict[str, datetime]:
    """The bound ``since`` (and ``until``) of :func:`ended_select`, checked to be timezone-aware."""
    params = {"since": aware(since, "since")}
    if until is not None:
        params["until"] = aware(until, "until")
    return params


def _check_ended_table(table: str) -> None:
    if table not in _ENDED_TABLES:
        raise InvalidRecordError(f"table={table!r} is invalid: expected 'flow_runs' or 'task_attempts'")


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
        columns = [getattr(r, n) for n in ENDED_RUN_COLUMNS]
        end_time = r.end_time
        stmt = sa.select(*[raw_time(c) if c.name in TIME_COLUMNS else c for c in columns])
    elif kind == "attempts":
        end_time = a.end_time
        stmt = sa.select(
            a.flow_run_id,
            r.flow_name,
            raw_time(r.scheduled_start, "run_scheduled_start"),
            raw_time(r.start_time, "run_start_time"),
            raw_time(a.end_time),
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


# --- filters and order ----------------------------------------------------------------------------------


def _ordered(
    stmt: sa.Select[Any],
    limit: int | None,
    time: sa.ColumnElement[Any],
    tie_break: sa.ColumnElement[Any],
    *,
    nulls_last: bool = False,
) -> sa.Select[Any]:
    """``stmt`` oldest first; with a ``limit``, newest first so ``LIMIT`` keeps the newest (the reader turns
    the rows around). ``nulls_last`` puts rows without a time after the others either way round."""
    if limit is None:
        oldest = time.asc().nulls_last() if nulls_last else time.asc()
        return stmt.order_by(oldest, tie_break.asc())
    _check_count(limit, "limit")
    newest = time.desc().nulls_first() if nulls_last else time.desc()
    return stmt.order_by(newest, tie_break.desc()).limit(limit)


def _one_or_many(value: str | Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):  # includes the str Enums RunState and AttemptOutcome
        return [getattr(value, "value", value)]
    return [getattr(v, "value", v) for v in value]


def _check_count(value: int, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidRecordError(f"{name}={value!r} is invalid: expected a whole number >= 0")


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
        clauses.append(column >= aware(since, "since"))
    if until is not None:
        clauses.append(column < aware(until, "until"))
    return clauses
