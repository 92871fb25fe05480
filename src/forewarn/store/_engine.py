"""The store's database: its URL, its SQLAlchemy engine, and the errors it raises.

:class:`Database` parses and checks a store URL (SQLite or PostgreSQL through psycopg 3), creates the
engine with each backend's settings (SQLite pragmas and the WAL switch; PostgreSQL's connect, statement,
lock and socket timeouts of :mod:`forewarn.store._timeouts` and asynchronous commits), opens it once,
tells transient failures (a lock, a dropped connection) from the rest, and turns database errors into
:class:`~forewarn.errors.StoreError` messages whose URL and text are masked by
:func:`forewarn.masking.mask_url`, as everywhere in forewarn. A forked child drops the pooled connections
it inherited from its parent.

On PostgreSQL it also guards every use of the network: a connection that cannot be made, or an operation
cut off by its client-side deadline (:mod:`forewarn.store._deadline`), opens the store's circuit breaker,
and until :attr:`~forewarn.store._timeouts.StoreTimeouts.retry_interval` has passed every call is refused
with :class:`~forewarn.errors.StoreUnreachableError` without touching the network.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from forewarn.errors import CircuitOpenError, ConfigurationError, StoreError, StoreUnreachableError
from forewarn.masking import MASK, mask_url
from forewarn.resilience.breaker import CircuitBreaker
from forewarn.store._deadline import SocketDeadline
from forewarn.store._timeouts import StoreTimeouts, postgres_connect_args, postgres_session_sql

SQLITE_BUSY_TIMEOUT_MS = 30_000
"""How long a SQLite writer waits for another writer's lock before SQLite reports "database is locked".

Deliberately long: SQLite is local, so a lock is always another forewarn writer that will finish (an
import's transaction, a WAL checkpoint), never a dead peer; giving up early would lose the row, waiting
costs only this writer. With :data:`~forewarn.store._execute.WRITE_RETRIES` retries on top, a write gives
up only when the file stays locked for minutes (a stuck process holding it).
"""

_TRANSIENT_SQLITE = re.compile(r"locked|busy", re.IGNORECASE)
_EXPECTED_URL = (
    "a SQLAlchemy URL such as sqlite:///path/to/telemetry.db or postgresql+psycopg://user:password@host:5432/db"
)


class Database:
    """One store's engine, and how to talk about it without showing a secret.

    ``url`` is parsed and checked at once (:func:`parse_url`); the engine connects lazily, first in
    :meth:`open`. :attr:`url` is the URL as shown, password masked.
    """

    def __init__(
        self,
        url: str,
        setting: str,
        *,
        timeouts: StoreTimeouts | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        sa_url = parse_url(url, setting)
        self.setting = setting  # where the URL came from, for the messages: "FOREWARN_DB_URL", "--db", "url"
        self.url = mask_url(sa_url.render_as_string(hide_password=False))
        self.is_sqlite = sa_url.get_backend_name() == "sqlite"
        self.timeouts = timeouts or StoreTimeouts()
        self.closed = False
        self._address = f"{sa_url.host or 'localhost'}:{sa_url.port or 5432}"
        self._secrets = _secrets(sa_url)
        self._deadline = SocketDeadline()
        # One failure opens it: that failure already cost a whole timeout, and the next would cost another.
        self._breaker = CircuitBreaker(
            "telemetry store",
            failure_threshold=1,
            reset_timeout=self.timeouts.retry_interval,
            scope="process",  # the store's own guard: it cannot keep its state in the store it guards
            clock=clock,
        )
        if self.is_sqlite:
            self.engine = _sqlite_engine(sa_url, self.url)
        else:
            self.engine = _postgres_engine(sa_url, self.timeouts, self._on_postgres_connect)
        self._driver_error: type[Exception] = self.engine.dialect.loaded_dbapi.Error

    def open(self, setup: Callable[[sa.Connection], object]) -> None:
        """Connect and run ``setup`` (creating or upgrading the schema) on that first connection.

        On failure the engine is disposed and a :class:`~forewarn.errors.StoreError` raised: a connection
        that fails is the database not answering (:class:`~forewarn.errors.StoreUnreachableError` on
        PostgreSQL), a ``StoreError`` from ``setup`` goes up as it is, other database errors name the step.

        On PostgreSQL ``setup`` runs without the session's statement and lock timeouts: an upgrade may build
        an index over a long history, and a second opener waits on the first one's migration lock. A dead
        peer is still caught by the socket timeouts, a silent one by the connect timeout and the deadline
        on the connection's first statement.
        """
        try:
            conn = self.engine.connect()
        except SQLAlchemyError as exc:
            self.engine.dispose()
            raise self._open_error(exc) from None
        try:
            with conn:
                if not self.is_sqlite:
                    conn.exec_driver_sql(postgres_session_sql(self.timeouts, bounded=False))
                setup(conn)
                if not self.is_sqlite:
                    conn.exec_driver_sql(postgres_session_sql(self.timeouts))
        except StoreError:
            self.engine.dispose()
            raise
        except SQLAlchemyError as exc:
            self.engine.dispose()
            raise self.error(exc, "creating or upgrading the schema", 0) from exc
        _OPEN_DATABASES.add(self)

    def admit(self) -> None:
        """Return if the database may be tried now; :class:`~forewarn.errors.StoreUnreachableError` at once if
        it did not answer less than ``retry_interval`` seconds ago (nothing touches the network)."""
        if self.is_sqlite:
            return
        try:
            self._breaker.before_call()
        except CircuitOpenError as exc:
            raise StoreUnreachableError(
                f"the telemetry store {self.url} did not answer a moment ago; not trying again for another "
                f"{exc.retry_after:.1f}s (StoreTimeouts.retry_interval={self.timeouts.retry_interval:g}s)",
                url=self.url,
            ) from None

    def reached(self) -> None:
        """Record that the database answered: the store stops refusing calls."""
        if not self.is_sqlite:
            self._breaker.record_success()

    def connect(self) -> sa.Connection:
        """A pooled connection; on PostgreSQL, failing to connect is :meth:`unreachable`."""
        if self.is_sqlite:
            return self.engine.connect()
        try:
            return self.engine.connect()
        except (DBAPIError, self._driver_error) as exc:
            raise self.unreachable(exc) from exc

    def raw_connection(self) -> Any:
        """A pooled DBAPI connection (SQLAlchemy's proxy); on PostgreSQL, failing to connect is :meth:`unreachable`."""
        if self.is_sqlite:
            return self.engine.raw_connection()
        try:
            return self.engine.raw_connection()
        except (DBAPIError, self._driver_error) as exc:  # the pool raises the driver's own error unwrapped
            raise self.unreachable(exc) from exc

    @contextlib.contextmanager
    def bounded(self, dbapi_connection: Any, seconds: float | None, action: str) -> Iterator[None]:
        """Run the block under a client-side deadline of ``seconds`` on ``dbapi_connection``'s socket.

        ``None`` or SQLite: no deadline. If the deadline cuts the block off, the socket is shut down, the
        driver's error is replaced by :meth:`unreachable`'s and the store refuses calls for a while.
        """
        if self.is_sqlite or seconds is None:
            yield
            return
        try:
            with self._deadline.guard(dbapi_connection.fileno(), seconds):
                yield
        except Exception as exc:
            if not self._deadline.expired():
                raise
            raise self.unreachable(exc, f"{action} got no answer within {seconds:g}s") from exc

    def unreachable(self, exc: BaseException, what: str | None = None) -> StoreUnreachableError:
        """The database did not answer: open the breaker and describe it (``what`` happened, else ``exc``)."""
        self._breaker.record_failure()
        error = self._open_error(exc, what)
        assert isinstance(error, StoreUnreachableError)
        return error

    def close(self) -> None:
        """Close every pooled connection; closing twice is fine."""
        if not self.closed:
            self.closed = True
            self.engine.dispose()

    def is_transient(self, exc: BaseException) -> bool:
        """A connection that dropped, or SQLite still locked after busy_timeout: worth another try."""
        orig: BaseException | None = exc
        if isinstance(exc, DBAPIError):
            if exc.connection_invalidated:
                return True
            orig = exc.orig
        return (
            self.is_sqlite and type(orig).__name__ == "OperationalError" and bool(_TRANSIENT_SQLITE.search(str(orig)))
        )

    def error(self, exc: BaseException, action: str, retries: int) -> StoreError:
        """The :class:`~forewarn.errors.StoreError` for ``action`` failing with ``exc``, secrets masked."""
        after = f" after {retries} retries" if retries else ""
        return StoreError(
            f"{action} failed on the telemetry store {self.url}{after}: {self._reason(exc)}", url=self.url
        )

    def _on_postgres_connect(self, dbapi_connection: Any, _record: Any) -> None:
        """Set the session's timeouts (:func:`~forewarn.store._timeouts.postgres_session_sql`), under the
        write deadline: a server that completes the handshake and then stalls is cut off here too."""
        with self._deadline.guard(dbapi_connection.fileno(), self.timeouts.write):
            cursor = dbapi_connection.cursor()
            cursor.execute(postgres_session_sql(self.timeouts))
            cursor.close()
            if not dbapi_connection.autocommit:
                dbapi_connection.commit()

    def _open_error(self, exc: BaseException, what: str | None = None) -> StoreError:
        reason = what or self._reason(exc)
        if self.is_sqlite:
            return StoreError(
                f"cannot open the SQLite store {self.url}: {reason}; check that the file and its "
                f"directory are writable and on a local disk, or set {self.setting} to another path",
                url=self.url,
            )
        return StoreUnreachableError(
            f"the telemetry store {self.url} does not answer: {reason}. Check that PostgreSQL is running "
            f"and reachable at {self._address} (firewall, VPN), and that the user, password and database name "
            f"in {self.setting} are right",
            url=self.url,
        )

    def _reason(self, exc: BaseException) -> str:
        """The driver's first two lines about ``exc``, with this URL's secrets and any URL password masked."""
        orig = getattr(exc, "orig", None) or exc
        lines = [line.strip() for line in str(orig).splitlines() if line.strip()]
        text = " ".join(lines[:2]) or type(orig).__name__
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return mask_url(text)


def parse_url(value: str, setting: str) -> URL:
    """``value`` as a SQLAlchemy URL of SQLite or PostgreSQL (read as psycopg 3); else a
    :class:`~forewarn.errors.ConfigurationError` naming ``setting`` and showing the value masked.

    Example::

        >>> parse_url("postgresql://u:pw@db/telemetry", "url").drivername
        'postgresql+psycopg'
    """
    try:
        url = make_url(value)
    except (ArgumentError, ValueError, TypeError):
        raise ConfigurationError(setting, mask_url(str(value)), _EXPECTED_URL) from None
    if url.drivername in ("sqlite", "sqlite+pysqlite"):
        return url
    if url.drivername in ("postgresql", "postgresql+psycopg"):
        return url.set(drivername="postgresql+psycopg")
    shown = mask_url(url.render_as_string(hide_password=False))
    raise ConfigurationError(setting, shown, _EXPECTED_URL + " (forewarn talks to PostgreSQL through psycopg 3)")


def _secrets(url: URL) -> list[str]:
    """The password and a ``?password=`` query value, replaced wherever a driver message repeats them."""
    query_password = url.query.get("password")
    if isinstance(query_password, tuple):
        query_password = query_password[0] if query_password else None
    return [s for s in (url.password, query_password) if s]


def _sqlite_engine(url: URL, shown: str) -> sa.Engine:
    database = url.database or ""
    kwargs: dict[str, Any] = {}
    if database in ("", ":memory:"):
        kwargs["poolclass"] = StaticPool  # one shared connection, or each would see its own DB
    else:
        path = Path(database).expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the directory of the SQLite store {shown}: {exc.strerror or exc} "
                f"({path.parent}); set FOREWARN_DB_URL to a path you can write, "
                "e.g. sqlite:///$HOME/forewarn/telemetry.db",
                url=shown,
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


def _postgres_engine(url: URL, timeouts: StoreTimeouts, on_connect: Callable[[Any, Any], None]) -> sa.Engine:
    engine = sa.create_engine(
        url,
        # No pre-ping: it would cost a round trip per write and could hang on a stalled server outside any
        # deadline. A pooled connection found dead by its statement is invalidated and the write retried.
        pool_pre_ping=False,
        # One statement per write is its own transaction: one round trip, one commit. Multi-statement
        # writes open an explicit transaction (write_transaction).
        isolation_level="AUTOCOMMIT",
        connect_args=postgres_connect_args(timeouts, url.query),
    )
    event.listen(engine, "connect", on_connect)
    return engine


def switch_to_wal(cursor: Any, *, sleep: Callable[[float], Any] = time.sleep) -> None:
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
    switch_to_wal(cursor)
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


_OPEN_DATABASES: weakref.WeakSet[Database] = weakref.WeakSet()


def _dispose_after_fork() -> None:
    """Drop (without closing) pooled connections a forked child inherited: they belong to the parent.

    The deadline's watchdog thread did not survive the fork, and its lock may have been held when it
    happened, so the child starts a new one.
    """
    for database in list(_OPEN_DATABASES):
        if not database.closed:
            database.engine.dispose(close=False)
            database._deadline = SocketDeadline()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_dispose_after_fork)
