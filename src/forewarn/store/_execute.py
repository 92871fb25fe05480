"""Running the store's reads and writes on pooled connections, retrying transient write failures.

A write that meets SQLite locked past ``busy_timeout``, or a connection that dropped, is tried again up to
:data:`WRITE_RETRIES` times, waiting :func:`forewarn.resilience.retry.backoff_seconds` (0.05 s doubling,
capped at 1 s, no jitter) with the store's injectable ``sleep``. Every write is an idempotent upsert or
runs in one transaction, so trying it again is safe. Any database error that remains becomes a
:class:`~forewarn.errors.StoreError` built by :meth:`~forewarn.store._engine.Database.error`.

Each try first asks :meth:`~forewarn.store._engine.Database.admit`: once PostgreSQL did not answer (a
connection that could not be made, an operation past its deadline) the store raises
:class:`~forewarn.errors.StoreUnreachableError` at once, without retrying, until its retry interval passed.
Single-row writes and reads run under the client-side deadlines of
:class:`~forewarn.store._timeouts.StoreTimeouts`; multi-row writes, which may import a whole history in
one transaction, are bounded by the server's ``statement_timeout`` and the socket timeouts instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from forewarn.resilience.retry import backoff_seconds
from forewarn.store._bulk import PreparedInsert
from forewarn.store._engine import Database
from forewarn.store.migrations import write_transaction

T = TypeVar("T")

WRITE_RETRIES = 5
"""Extra tries of a write that failed with a transient error (SQLite locked/busy, dropped connection)."""

WRITE_WAIT_INITIAL = 0.05
"""Seconds before the first retry of a write; each further retry waits twice as long."""

WRITE_WAIT_MAX = 1.0
"""The longest wait between two tries of a write."""


def retry_wait(retries: int) -> float:
    """Seconds to wait before retry number ``retries + 1`` of a write: 0.05, 0.1, 0.2, 0.4, 0.8.

    Example::

        >>> [retry_wait(n) for n in range(WRITE_RETRIES)]
        [0.05, 0.1, 0.2, 0.4, 0.8]
    """
    return backoff_seconds(retries + 1, initial=WRITE_WAIT_INITIAL, maximum=WRITE_WAIT_MAX)


def write_retrying(
    db: Database,
    work: Callable[[sa.Connection], T],
    action: str,
    *,
    sleep: Callable[[float], None],
    atomic: bool = False,
    bounded: bool | None = None,
) -> T:
    """Run ``work`` on a pooled connection, retrying transient failures; ``atomic`` makes it one transaction.

    A non-atomic write is one statement and runs under the write deadline; an atomic one has none unless
    ``bounded`` (a short transaction of a few statements, such as a breaker's change).
    """
    under_deadline = not atomic if bounded is None else bounded

    def once() -> T:
        with db.connect() as conn:
            dbapi = conn.connection.dbapi_connection
            seconds = db.timeouts.write if under_deadline else None
            with db.bounded(dbapi, seconds, action):
                if not atomic:
                    return work(conn)
                with write_transaction(conn):
                    return work(conn)

    return _retrying(once, db, action, sleep=sleep, errors=(DBAPIError,), transient=db.is_transient)


def write_prepared_retrying(
    db: Database, prepared: PreparedInsert, params: dict[str, Any], action: str, *, sleep: Callable[[float], None]
) -> None:
    """Execute one prepared single-row write (autocommit: one statement, one commit), retried as
    :func:`write_retrying`."""
    write_raw_retrying(db, [(prepared.sql, prepared.bind(params))], action, sleep=sleep)


def write_raw_retrying(
    db: Database, statements: list[tuple[str, Any]], action: str, *, sleep: Callable[[float], None]
) -> None:
    """Execute ``(sql, DBAPI parameters)`` statements straight on a pooled DBAPI connection, retried as
    :func:`write_retrying`: one statement alone (autocommit) under the write deadline, several in one
    transaction with none (like any multi-row write)."""
    raw_write = _RawWrite(db, statements, action)
    errors = (raw_write.driver_error, DBAPIError)
    _retrying(raw_write, db, action, sleep=sleep, errors=errors, transient=raw_write.transient)


def read_once(db: Database, work: Callable[[sa.Connection], T], action: str) -> T:
    """Run ``work`` on a pooled connection under the read deadline; a database error becomes a StoreError
    naming ``action``. A pooled connection found dead is replaced and the read tried once more."""

    def once() -> T:
        with db.connect() as conn, db.bounded(conn.connection.dbapi_connection, db.timeouts.read, action):
            return work(conn)

    def dropped(exc: BaseException) -> bool:
        return isinstance(exc, DBAPIError) and exc.connection_invalidated

    return _retrying(once, db, action, sleep=lambda _: None, errors=(DBAPIError,), transient=dropped, retries=1)


class _RawWrite:
    """Statements run straight on a pooled DBAPI connection, skipping ``Connection.execute``: one alone in
    autocommit, several between ``BEGIN`` (``BEGIN IMMEDIATE`` on SQLite, as
    :func:`~forewarn.store.migrations.write_transaction`) and ``COMMIT``.

    A connection the driver reports as gone is invalidated here (``Connection.execute`` would do it), and
    the write counts as transient, so it is tried again on a fresh connection.
    """

    def __init__(self, db: Database, statements: list[tuple[str, Any]], action: str) -> None:
        self.db = db
        self.statements = statements
        self.action = action
        self.atomic = len(statements) > 1
        self.driver_error = db.engine.dialect.loaded_dbapi.Error  # the driver's own base error class
        self.invalidated = False

    def __call__(self) -> None:
        self.invalidated = False
        raw = self.db.raw_connection()  # pooled
        deadline = None if self.atomic else self.db.timeouts.write
        try:
            with self.db.bounded(raw.dbapi_connection, deadline, self.action):
                self._execute(raw)
        finally:
            raw.close()  # back to the pool

    def _execute(self, raw: Any) -> None:
        try:
            cursor = raw.cursor()
            try:
                self._run(cursor)
            finally:
                cursor.close()
        except self.driver_error as exc:
            if self.db.engine.dialect.is_disconnect(exc, raw.dbapi_connection, None):
                raw.invalidate(exc)
                self.invalidated = True
            raise

    def _run(self, cursor: Any) -> None:
        if not self.atomic:
            sql, params = self.statements[0]
            cursor.execute(sql, params)
            return
        cursor.execute("BEGIN IMMEDIATE" if self.db.is_sqlite else "BEGIN")
        try:
            for sql, params in self.statements:
                cursor.execute(sql, params)
        except BaseException:
            with contextlib.suppress(self.driver_error):  # a dropped connection cannot roll back; the server does
                cursor.execute("ROLLBACK")
            raise
        cursor.execute("COMMIT")

    def transient(self, exc: BaseException) -> bool:
        """The last try dropped its connection, or failed with a transient error."""
        return self.invalidated or self.db.is_transient(exc)


def _retrying(
    once: Callable[[], T],
    db: Database,
    action: str,
    *,
    sleep: Callable[[float], None],
    errors: tuple[type[BaseException], ...],
    transient: Callable[[BaseException], bool],
    retries: int = WRITE_RETRIES,
) -> T:
    """``once()``, tried again after :func:`retry_wait` while it raises one of ``errors`` that is transient,
    at most ``retries`` times; any database error left becomes a StoreError naming ``action``.

    Each try is first admitted by the store's breaker; a try the database answered, even with an error,
    closes it. :class:`~forewarn.errors.StoreUnreachableError` (connect failed, deadline expired, breaker
    open) goes up at once: another try would cost another timeout.
    """
    tries = 0
    while True:
        db.admit()
        try:
            result = once()
        except errors as exc:
            if tries < retries and transient(exc):
                sleep(retry_wait(tries))
                tries += 1
                continue
            db.reached()
            raise db.error(exc, action, tries) from exc
        except SQLAlchemyError as exc:
            db.reached()
            raise db.error(exc, action, tries) from exc
        db.reached()
        return result
