"""The telemetry store's tables: every ``Table`` forewarn uses, on one :data:`metadata`.

Schema version :data:`SCHEMA_VERSION` (stored in ``forewarn_meta``; see :mod:`forewarn.store.migrations`):

``forewarn_meta``
    ``key`` → ``value``; today only ``schema_version``.
``flow_runs``
    One row per flow run, written when the run starts and updated when it ends. ``parameters`` is JSON
    text. ``source`` is ``forewarn`` (recorded live) or ``import`` (loaded from another scheduler's
    history). ``features`` (version 2) is a JSON object of the run's pre-run attributes, or null.
    ``tags`` (version 6) is a JSON list of the run's Prefect tags (sorted, no repeats), or null for none.
``task_attempts``
    One row per attempt of a task run (and one for its fallback call), unique on
    ``(task_run_id, execution_id, attempt)``. ``replica`` (version 5) numbers the redundant copies of a
    hedged or replicated call (null otherwise); ``provider`` (version 5) names the provider a failover task
    used. ``execution_id`` (version 7) tells apart the executions of one task run (Dask re-runs a task whose
    worker died under the same ``task_run_id``, numbering its attempts from 1 again): random per call of
    the task wrapper, ``''`` for imported rows and rows from before version 7. A task run's tries are its
    rows, not its highest ``attempt``.
``predictions`` (version 2)
    One row per failure-risk score of a flow run, made by the pre-run hook or by the forecast of
    scheduled runs. A run may be scored many times (each forecast scores it again, with less lead).
``circuit_breakers`` (version 4)
    One row per shared circuit breaker, keyed by its name: the state every process using the store
    sees (:mod:`forewarn.store.breakers`). ``version`` grows by one with each change.

Times are ``DateTime(timezone=True)`` through :class:`UTCDateTime`, which stores UTC and hands back
timezone-aware UTC values on every backend (SQLite keeps no offset, so the conversion happens here).

There is deliberately no foreign key from ``task_attempts.flow_run_id`` (or ``predictions.flow_run_id``)
to ``flow_runs``: a forewarn task may run inside a plain ``@prefect.flow`` (or outside any flow), whose run
has no ``flow_runs`` row, and a forecast scores runs that have not started yet.

Example::

    >>> from forewarn.store.schema import metadata, task_attempts
    >>> sorted(metadata.tables)
    ['circuit_breakers', 'flow_runs', 'forewarn_meta', 'predictions', 'task_attempts']
    >>> task_attempts.c.outcome.type.length
    32
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from forewarn.errors import InvalidRecordError

SCHEMA_VERSION = 7
"""The schema this forewarn writes and reads. Bump it together with a step in ``migrations.MIGRATIONS``."""

ID_LENGTH = 255
NAME_LENGTH = 255
MESSAGE_LENGTH = 10_000  # the upper bound of FOREWARN_MESSAGE_MAX_CHARS
EXECUTION_ID_LENGTH = 64  # forewarn writes 16 hex digits; room for a uuid given by hand


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that stores UTC and returns timezone-aware UTC datetimes.

    A naive datetime is refused with ``ValueError``: forewarn never guesses a timezone.

    Example::

        >>> from sqlalchemy.dialects import sqlite
        >>> from datetime import timedelta
        >>> t = datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
        >>> UTCDateTime().process_bind_param(t, sqlite.dialect())
        datetime.datetime(2026, 1, 1, 10, 0)
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidRecordError(
                f"naive datetime {value!r}: forewarn stores UTC and needs timezone-aware times, "
                "e.g. datetime(2026, 1, 1, tzinfo=timezone.utc)"
            )
        if value.tzinfo is not timezone.utc:
            value = value.astimezone(timezone.utc)
        # SQLite has no timezone type; all values are UTC so plain text comparison stays correct.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def bind_processor(self, dialect: Dialect) -> Any:
        """On SQLite, render SQLAlchemy's own storage format (``2026-01-01 10:00:00.000000``) directly.

        ``datetime.isoformat`` is C code; SQLAlchemy's SQLite ``DATETIME`` formats through a Python dict,
        which would be most of the cost of binding a task attempt. The text is identical, so comparisons
        and SQLAlchemy's own parsing of results are unaffected.
        """
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        to_utc = self.process_bind_param

        def process(value: datetime | None) -> str | None:
            utc = to_utc(value, dialect)
            return None if utc is None else utc.isoformat(" ", "microseconds")

        return process

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)

    @property
    def python_type(self) -> type[datetime]:
        return datetime


metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "pk": "pk_%(table_name)s",
    }
)
"""The one ``MetaData`` holding every forewarn table."""

forewarn_meta = sa.Table(
    "forewarn_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(255), nullable=False),
    comment="forewarn's own bookkeeping; key schema_version holds the schema version as text",
)

flow_runs = sa.Table(
    "flow_runs",
    metadata,
    sa.Column("flow_run_id", sa.String(ID_LENGTH), primary_key=True),
    sa.Column("flow_name", sa.String(NAME_LENGTH), nullable=False),
    sa.Column("deployment", sa.String(NAME_LENGTH)),
    sa.Column("parameters", sa.Text, nullable=False, server_default="{}", comment="JSON object"),
    sa.Column("parameters_hash", sa.String(64)),
    sa.Column("flow_version", sa.String(NAME_LENGTH)),
    sa.Column("scheduled_start", UTCDateTime),
    sa.Column("start_time", UTCDateTime),
    sa.Column("end_time", UTCDateTime),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("host", sa.String(NAME_LENGTH)),
    sa.Column("forewarn_version", sa.String(64)),
    sa.Column("source", sa.String(16), nullable=False, server_default="forewarn"),
    # version 2; last, where the migration's ADD COLUMN puts it
    sa.Column("features", sa.Text, comment="JSON object of pre-run feature_<name> attributes, names unprefixed"),
    # version 6; last, where the migration's ADD COLUMN puts it
    sa.Column("tags", sa.Text, comment="JSON list of the run's Prefect tags, sorted; null: none known"),
    # "last N runs of flow F that ended before T": equality on flow_name, range + order on end_time.
    sa.Index(None, "flow_name", "end_time"),
    # "recent failures across all flows": state IN (failure states) and a range on end_time.
    sa.Index(None, "state", "end_time"),
    # time-window scans over every flow (reports, feature building).
    sa.Index(None, "end_time"),
)

task_attempts = sa.Table(
    "task_attempts",
    metadata,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),  # INTEGER PRIMARY KEY is SQLite's rowid
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("flow_run_id", sa.String(ID_LENGTH)),
    sa.Column("task_run_id", sa.String(ID_LENGTH), nullable=False),
    sa.Column("task_name", sa.String(NAME_LENGTH), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("start_time", UTCDateTime, nullable=False),
    sa.Column("end_time", UTCDateTime, nullable=False),
    sa.Column("duration_seconds", sa.Float, nullable=False),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("exception_type", sa.String(NAME_LENGTH)),
    sa.Column("exception_message", sa.String(MESSAGE_LENGTH)),
    sa.Column("retryable", sa.Boolean(create_constraint=False)),
    sa.Column("used_fallback", sa.Boolean(create_constraint=False), nullable=False, server_default=sa.false()),
    sa.Column("host", sa.String(NAME_LENGTH)),
    # version 3: seconds spent waiting for a Prefect concurrency slot or rate limit; NULL without a limit
    sa.Column("wait_seconds", sa.Float),
    # version 5, added last by the migration step, so migrated and new stores match
    sa.Column("replica", sa.Integer, comment="1, 2, ... for redundant copies of one call; null otherwise"),
    sa.Column("provider", sa.String(NAME_LENGTH), comment="the failover provider that served the attempt"),
    # version 7, added last; '' (not null) so that one plain unique constraint covers old and new rows
    sa.Column(
        "execution_id",
        sa.String(EXECUTION_ID_LENGTH),
        nullable=False,
        server_default="",
        comment="one execution of the task run in a process (random per call); '' for imported and pre-7 rows",
    ),
    sa.UniqueConstraint("task_run_id", "execution_id", "attempt"),
    # all attempts of one flow run
    sa.Index(None, "flow_run_id"),
    # "recent failed attempts across all tasks": outcome IN (...) and a range on end_time.
    sa.Index(None, "outcome", "end_time"),
    # time-window scans
    sa.Index(None, "end_time"),
)


predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("flow_run_id", sa.String(ID_LENGTH), nullable=False),
    sa.Column("flow_name", sa.String(NAME_LENGTH), nullable=False),
    sa.Column("deployment", sa.String(NAME_LENGTH)),
    sa.Column("scheduled_start", UTCDateTime),
    sa.Column("predicted_at", UTCDateTime, nullable=False),
    sa.Column("lead_seconds", sa.Float, comment="scheduled_start - predicted_at"),
    sa.Column("risk", sa.Float, nullable=False),
    sa.Column("threshold", sa.Float, nullable=False),
    sa.Column("warned", sa.Boolean(create_constraint=False), nullable=False),
    sa.Column("model_version", sa.String(NAME_LENGTH), nullable=False),
    sa.Column("reasons", sa.Text, nullable=False, server_default="[]", comment="JSON list of short strings"),
    sa.Column("source", sa.String(16), nullable=False, comment="hook | forecast"),
    # every score of one run
    sa.Index(None, "flow_run_id"),
    # time-window scans ("warnings of the last week")
    sa.Index(None, "predicted_at"),
    # the scores of one flow's runs in a scheduled-time window (forecast tables, backtest comparisons)
    sa.Index(None, "flow_name", "scheduled_start"),
)


circuit_breakers = sa.Table(
    "circuit_breakers",
    metadata,
    sa.Column("name", sa.String(NAME_LENGTH), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False, comment="closed | open | half_open"),
    sa.Column("since", sa.Float, comment="clock seconds of the last transition; null: never"),
    sa.Column("trials", sa.Integer, nullable=False, comment="trial calls let through in this half-open period"),
    sa.Column("trial_successes", sa.Integer, nullable=False),
    sa.Column("trial_at", sa.Float, comment="clock seconds the last trial was let through; null: never"),
    sa.Column("outcomes", sa.Text, nullable=False, comment="count window: one character (SFsf) per call"),
    sa.Column("buckets", sa.Text, nullable=False, comment="time window: JSON [[index, calls, failures, slow]]"),
    sa.Column("version", sa.BigInteger, nullable=False, comment="one more with every change"),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)


def string_lengths(table: sa.Table) -> dict[str, int]:
    """The declared length of every bounded string column of ``table``, for truncating values.

    Example::

        >>> string_lengths(flow_runs)["state"]
        32
    """
    lengths: dict[str, int] = {}
    for column in table.columns:
        length: Any = getattr(column.type, "length", None)
        if isinstance(column.type, sa.String) and isinstance(length, int):
            lengths[column.name] = length
    return lengths


__all__ = [
    "SCHEMA_VERSION",
    "UTCDateTime",
    "circuit_breakers",
    "flow_runs",
    "forewarn_meta",
    "metadata",
    "predictions",
    "string_lengths",
    "task_attempts",
]
