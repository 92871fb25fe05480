"""Totals for metrics exporters: every figure aggregated by the database, never rows pulled into Python.

:meth:`TelemetryStore.totals` runs these ``GROUP BY`` queries in one read; each returns a few rows per
flow and task whatever the size of the store, so only the totals cross the wire. Two kinds of cost:

* the **windowed** figures read only ``[since, until)`` through an index: breaker refusals
  (``task_attempts (outcome, end_time)``), the newest risk (``predictions.predicted_at``) and the live
  figures, which count per flow the runs that **ended** in the window (``flow_runs (state, end_time)``)
  with a prediction made before they ended;
* the **whole-store counters** (attempts, retries, runs per state) scan their table: about 1-5 ms of
  database CPU per thousand attempts, so an exporter reads them less often (``counts=False`` skips them).

Example::

    >>> from datetime import datetime, timezone
    >>> from forewarn.store import TelemetryStore
    >>> totals = TelemetryStore("sqlite://").totals(since=datetime(2026, 1, 1, tzinfo=timezone.utc))
    >>> totals.attempts, totals.live
    ([], [])
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from forewarn.records import FAILURE_STATES, FINAL_STATES
from forewarn.store.schema import flow_runs, predictions, task_attempts

BREAKER_REFUSAL = "CircuitOpenError"
"""The ``exception_type`` of an attempt an open circuit breaker refused."""

FALLBACK_OUTCOMES = ("fallback", "fallback_failure")


@dataclass(frozen=True, slots=True)
class StoreTotals:
    """What :meth:`TelemetryStore.totals` returns; each list holds plain tuples, one per group.

    * ``attempts``: ``(flow, task, outcome, attempts, retries)``; ``retries`` are the attempts after the
      first of their task run, whichever execution made them (fallback rows excluded); ``flow`` is ``""``
      outside a forewarn flow.
    * ``runs``: ``(flow, state, runs)``.
    * ``breaker_refusals``: ``(flow, task, refusals, last refusal time)``: attempts an open breaker refused
      that ended in the window.
    * ``latest_risk``: ``(flow, deployment or "", risk, threshold, predicted_at)``: the newest prediction
      per flow and deployment made in the window.
    * ``live``: ``(flow, labelled, failures, warnings, true_warnings)`` over the runs that ended in the
      window, not ``CANCELLED``, with a prediction made before they ended (of ``model_version`` if given).
    """

    attempts: list[tuple[str, str, str, int, int]]
    runs: list[tuple[str, str, int]]
    breaker_refusals: list[tuple[str, str, int, datetime | None]]
    latest_risk: list[tuple[str, str, float, float, datetime]]
    live: list[tuple[str, int, int, int, int]]


def _count_if(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[Any]:
    return sa.func.sum(sa.case((condition, 1), else_=0))


def attempts_totals() -> sa.Select[Any]:
    """Attempts and retries per flow, task and outcome, retries counted as ``attempt > 1``.

    That is every retry of a task run executed once. The first attempts of the later executions of a task
    run Dask executed again (:func:`rerun_task_runs`, :func:`later_first_attempts`) are retries too, added
    by :func:`read_totals`.
    """
    a = task_attempts.c
    flow = sa.func.coalesce(flow_runs.c.flow_name, "")
    retry = sa.and_(a.attempt > 1, a.outcome.not_in(FALLBACK_OUTCOMES))
    joined = task_attempts.outerjoin(flow_runs, flow_runs.c.flow_run_id == a.flow_run_id)
    return (
        sa.select(flow, a.task_name, a.outcome, sa.func.count(), _count_if(retry))
        .select_from(joined)
        .group_by(flow, a.task_name, a.outcome)
    )


def rerun_task_runs() -> sa.Select[Any]:
    """The task runs with more than one first attempt: executed more than once (schema version 7).

    Dask re-runs a task whose worker died under the same ``task_run_id``, and the re-run numbers its
    attempts from 1 again, under its own ``execution_id``. Read from the ``(task_run_id, execution_id,
    attempt)`` index alone, in its order: one index scan, and usually no row.
    """
    a = task_attempts.c
    return sa.select(a.task_run_id).where(a.attempt == 1).group_by(a.task_run_id).having(sa.func.count() > 1)


def later_first_attempts() -> sa.Select[Any]:
    """The first attempts of every execution but the first of the task runs in the expanding parameter
    ``task_run_ids``, per flow, task and outcome (fallback rows excluded): retries that ``attempt > 1`` misses.

    The first execution is the one whose first attempt started first.
    """
    a = task_attempts.c
    other = task_attempts.alias("other_attempts")
    ids: sa.BindParameter[str] = sa.bindparam("task_run_ids", expanding=True)
    first = (
        sa.select(other.c.task_run_id, sa.func.min(other.c.start_time).label("first_start"))
        .where(other.c.attempt == 1, other.c.task_run_id.in_(ids))
        .group_by(other.c.task_run_id)
        .subquery("first_executions")
    )
    flow = sa.func.coalesce(flow_runs.c.flow_name, "")
    joined = task_attempts.join(first, first.c.task_run_id == a.task_run_id).outerjoin(
        flow_runs, flow_runs.c.flow_run_id == a.flow_run_id
    )
    return (
        sa.select(flow, a.task_name, a.outcome, sa.func.count())
        .select_from(joined)
        .where(a.attempt == 1, a.start_time > first.c.first_start, a.outcome.not_in(FALLBACK_OUTCOMES))
        .group_by(flow, a.task_name, a.outcome)
    )


def _attempts(conn: sa.Connection) -> list[tuple[str, str, str, int, int]]:
    """:func:`attempts_totals` with the later executions' first attempts added to the retries."""
    totals = {(f, t, o): [int(n), int(x or 0)] for f, t, o, n, x in conn.execute(attempts_totals())}
    reruns = list(conn.execute(rerun_task_runs()).scalars())
    for start in range(0, len(reruns), _IDS_PER_QUERY):
        chunk = reruns[start : start + _IDS_PER_QUERY]
        for f, t, o, n in conn.execute(later_first_attempts(), {"task_run_ids": chunk}):
            # a group that is new since the first read (the statements are not one snapshot): its rows here
            totals.setdefault((f, t, o), [int(n), 0])[1] += int(n)
    return [(f, t, o, n, x) for (f, t, o), (n, x) in totals.items()]


_IDS_PER_QUERY = 500


def runs_totals() -> sa.Select[Any]:
    """Runs per flow and state."""
    c = flow_runs.c
    return sa.select(c.flow_name, c.state, sa.func.count()).group_by(c.flow_name, c.state)


def breaker_totals(since: datetime, until: datetime) -> sa.Select[Any]:
    """Attempts refused by an open circuit breaker that ended in ``[since, until)``, and the last, per flow and task.

    A refusal is recorded as a ``failure`` outcome, so the ``(outcome, end_time)`` index bounds the read.
    """
    a = task_attempts.c
    flow = sa.func.coalesce(flow_runs.c.flow_name, "")
    joined = task_attempts.outerjoin(flow_runs, flow_runs.c.flow_run_id == a.flow_run_id)
    return (
        sa.select(flow, a.task_name, sa.func.count(), sa.func.max(a.end_time))
        .select_from(joined)
        .where(a.outcome == "failure", a.end_time >= since, a.end_time < until, a.exception_type == BREAKER_REFUSAL)
        .group_by(flow, a.task_name)
    )


def latest_risk(since: datetime, until: datetime) -> sa.Select[Any]:
    """The newest prediction per flow and deployment with ``predicted_at`` in ``[since, until)``."""
    p = predictions.c
    window = sa.and_(p.predicted_at >= since, p.predicted_at < until)
    deployment = sa.func.coalesce(p.deployment, "")
    newest = (
        sa.select(p.flow_name, deployment.label("deployment"), sa.func.max(p.predicted_at).label("last"))
        .where(window)
        .group_by(p.flow_name, deployment)
        .subquery()
    )
    return (
        sa.select(p.flow_name, newest.c.deployment, sa.func.max(p.risk), sa.func.max(p.threshold), newest.c.last)
        .join(newest, sa.and_(p.flow_name == newest.c.flow_name, deployment == newest.c.deployment))
        .where(window, p.predicted_at == newest.c.last)
        .group_by(p.flow_name, newest.c.deployment, newest.c.last)  # two scores at the same instant: the higher
    )


def live_totals(since: datetime, until: datetime, model_version: str | None) -> sa.Select[Any]:
    """Labelled runs, failures, warnings and true warnings per flow, over runs that ended in the window."""
    p, r = predictions.c, flow_runs.c
    counted = [p.predicted_at < r.end_time, r.end_time >= since, r.end_time < until]
    if model_version is not None:
        counted.append(p.model_version == model_version)
    per_run = (
        sa.select(
            r.flow_run_id,
            r.flow_name,
            r.state,
            sa.func.max(sa.case((p.warned, 1), else_=0)).label("warned"),
        )
        .join(predictions, p.flow_run_id == r.flow_run_id)
        .where(*counted, r.state.in_(sorted(FINAL_STATES - {"CANCELLED"})))
        .group_by(r.flow_run_id, r.flow_name, r.state)
        .subquery()
    )
    failed = per_run.c.state.in_(sorted(FAILURE_STATES))
    warned = per_run.c.warned == 1
    return sa.select(
        per_run.c.flow_name,
        sa.func.count(),
        _count_if(failed),
        _count_if(warned),
        _count_if(sa.and_(failed, warned)),
    ).group_by(per_run.c.flow_name)


def read_totals(
    conn: sa.Connection, since: datetime, until: datetime, model_version: str | None, *, counts: bool = True
) -> StoreTotals:
    """Run the aggregates on ``conn`` (the whole-store counters only with ``counts``); times are aware UTC."""
    attempts = _attempts(conn) if counts else []
    return StoreTotals(
        attempts=attempts,
        runs=[(f, s, int(n)) for f, s, n in conn.execute(runs_totals())] if counts else [],
        breaker_refusals=[(f, t, int(n), last) for f, t, n, last in conn.execute(breaker_totals(since, until))],
        latest_risk=[(f, d, float(r), float(th), at) for f, d, r, th, at in conn.execute(latest_risk(since, until))],
        live=[
            (f, int(n), int(x or 0), int(w or 0), int(tw or 0))
            for f, n, x, w, tw in conn.execute(live_totals(since, until, model_version))
        ],
    )


__all__ = [
    "BREAKER_REFUSAL",
    "StoreTotals",
    "attempts_totals",
    "breaker_totals",
    "later_first_attempts",
    "latest_risk",
    "live_totals",
    "read_totals",
    "rerun_task_runs",
    "runs_totals",
]
