"""How long the telemetry store waits for its database before giving up.

:class:`StoreTimeouts` holds the bounds a caller may tune; :func:`postgres_connect_args` turns them into
psycopg connect parameters (connect timeout, TCP keepalives, ``tcp_user_timeout``) and
:func:`postgres_session_sql` into the ``SET`` statements run on every new connection
(``statement_timeout``, ``lock_timeout``). Together with the client-side deadline of
:mod:`forewarn.store._deadline` and the store's circuit breaker, a PostgreSQL that does not answer costs a
flow one bounded wait per :attr:`StoreTimeouts.retry_interval`, never an unbounded one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from forewarn.errors import ConfigurationError

# A dead peer or network path is noticed by the kernel: keepalive probes start after KEEPALIVES_IDLE_S of
# silence and give up after KEEPALIVES_COUNT probes KEEPALIVES_INTERVAL_S apart (about 20 s on an idle
# pooled connection, instead of the kernel default of over two hours), and data left unacknowledged for
# TCP_USER_TIMEOUT_MS fails the socket (instead of about 15 minutes of retransmissions).
KEEPALIVES_IDLE_S = 10
KEEPALIVES_INTERVAL_S = 3
KEEPALIVES_COUNT = 3
TCP_USER_TIMEOUT_MS = 10_000


@dataclass(frozen=True)
class StoreTimeouts:
    """Bounds, in seconds, on every wait of the telemetry store for PostgreSQL.

    - ``connect``: a new connection, up to the end of authentication (libpq's ``connect_timeout``: whole
      seconds, at least 2). A ``connect_timeout`` in the URL's query wins.
    - ``statement``: the server's ``statement_timeout``: no statement runs longer (a report over a large
      history included); telemetry writes take milliseconds.
    - ``lock``: the server's ``lock_timeout``: a write waiting on another session's row lock gives up.
    - ``write``: the client-side deadline of one single-row write (see :mod:`forewarn.store._deadline`):
      catches a server that accepted the connection and stopped answering, which no server-side timeout
      can. Multi-row and frame writes are bounded by ``statement`` and the socket timeouts instead.
    - ``read``: the client-side deadline of one read (the statement plus streaming its rows).
    - ``retry_interval``: after the database did not answer (connect failed or a deadline expired), the
      store refuses at once with :class:`~forewarn.errors.StoreUnreachableError` for this long, then lets
      one call try again (a :class:`~forewarn.resilience.breaker.CircuitBreaker`).

    SQLite ignores them: its wait on a locked file is ``busy_timeout``
    (:data:`forewarn.store._engine.SQLITE_BUSY_TIMEOUT_MS`).

    Example::

        >>> StoreTimeouts(write=2.0).write
        2.0
        >>> StoreTimeouts(lock=float("inf"))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        forewarn.errors.ConfigurationError: StoreTimeouts.lock=inf is invalid: expected finite seconds > 0, ...
    """

    connect: float = 5.0
    statement: float = 30.0
    lock: float = 5.0
    write: float = 10.0
    read: float = 60.0
    retry_interval: float = 30.0

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ConfigurationError(
                    f"StoreTimeouts.{field.name}",
                    value,
                    f"finite seconds > 0, e.g. StoreTimeouts({field.name}={field.default!r})",
                )


def postgres_connect_args(timeouts: StoreTimeouts, query: Any) -> dict[str, Any]:
    """psycopg connect parameters bounding connection set-up and a dead peer; those in the URL ``query`` win.

    Example::

        >>> postgres_connect_args(StoreTimeouts(), {"connect_timeout": "3"})["tcp_user_timeout"]
        10000
    """
    wanted = {
        "connect_timeout": max(2, math.ceil(timeouts.connect)),  # libpq takes whole seconds, at least 2
        "keepalives": 1,
        "keepalives_idle": KEEPALIVES_IDLE_S,
        "keepalives_interval": KEEPALIVES_INTERVAL_S,
        "keepalives_count": KEEPALIVES_COUNT,
        "tcp_user_timeout": TCP_USER_TIMEOUT_MS,
    }
    return {name: value for name, value in wanted.items() if name not in query}


def postgres_session_sql(timeouts: StoreTimeouts, *, bounded: bool = True) -> str:
    """The ``SET`` statements run once on each new PostgreSQL connection; ``bounded=False`` lifts the
    statement and lock timeouts (0: none) for creating or upgrading the schema.

    ``synchronous_commit`` is off: telemetry writes do not wait for the WAL flush. COMMIT returns once
    the server has the row in memory; a crash of a flow process loses nothing the server acknowledged,
    only a crash of the PostgreSQL server itself can lose the last few hundred milliseconds of commits
    (3 x wal_writer_delay), never corrupt them, and each commit skips an fsync.

    Example::

        >>> postgres_session_sql(StoreTimeouts(statement=30, lock=5))
        'SET synchronous_commit TO OFF; SET statement_timeout = 30000; SET lock_timeout = 5000'
        >>> postgres_session_sql(StoreTimeouts(), bounded=False)
        'SET synchronous_commit TO OFF; SET statement_timeout = 0; SET lock_timeout = 0'
    """
    statement, lock = (_milliseconds(timeouts.statement), _milliseconds(timeouts.lock)) if bounded else (0, 0)
    return f"SET synchronous_commit TO OFF; SET statement_timeout = {statement}; SET lock_timeout = {lock}"


def _milliseconds(seconds: float) -> int:
    return max(1, round(seconds * 1000))
