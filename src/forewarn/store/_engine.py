"""The store's database: its URL, its SQLAlchemy engine, and the errors it raises.

:class:`Database` parses and checks a store URL (SQLite or PostgreSQL through psycopg 3), creates the
engine with each backend's settings (SQLite pragmas and the WAL switch, PostgreSQL's connect timeout and
asynchronous commits), opens it once, tells transient failures (a lock, a dropped connection) from the
rest, and turns database errors into :class:`~forewarn.errors.StoreError` messages whose URL and text are
masked by :func:`forewarn.masking.mask_url`, as everywhere in forewarn. A forked child drops the pooled
connections it inherited from its parent.
"""

from __future__ import annotations

import os
import re
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from forewarn.errors import ConfigurationError, StoreError, StoreUnreachableError
from forewarn.masking import MASK, mask_url

SQLITE_BUSY_TIMEOUT_MS = 30_000
"""How long a SQLite writer waits for another writer's lock before SQLite reports "database is locked"."""

PG_CONNECT_TIMEOUT_S = 5
"""Seconds before an unanswered PostgreSQL connection attempt fails (``StoreUnreachableError`` at open)."""

_TRANSIENT_SQLITE = re.compile(r"locked|busy", re.IGNORECASE)
_EXPECTED_URL = (
    "a SQLAlchemy URL such as sqlite:///path/to/telemetry.db or postgresql+psycopg://user:password@host:5432/db"
)


class Database:
    """One store's engine, and how to talk about it without showing a secret.

    ``url`` is parsed and checked at once (:func:`parse_url`); the engine connects lazily, first in
    :meth:`open`. :attr:`url` is the URL as shown, password masked.
    """

    def __init__(self, url: str, setting: str) -> None:
        sa_url = parse_url(url, setting)
        self.url = mask_url(sa_url.render_as_string(hide_password=False))
        self.is_sqlite = sa_url.get_backend_name() == "sqlite"
        self.closed = False
        self._address = f"{sa_url.host or 'localhost'}:{sa_url.port or 5432}"
        self._secrets = _secrets(sa_url)
        self.engine = _sqlite_engine(sa_url, self.url) if self.is_sqlite else _postgres_engine(sa_url)

    def open(self, setup: Callable[[sa.Connection], object]) -> None:
        """Connect and run ``setup`` (creating or upgrading the schema) on that first connection.

        On failure the engine is disposed and a :class:`~forewarn.errors.StoreError` raised: a connection
        that fails is the database not answering (:class:`~forewarn.errors.StoreUnreachableError` on
        PostgreSQL), a ``StoreError`` from ``setup`` goes up as it is, other database errors name the step.
        """
        try:
            conn = self.engine.connect()
        except SQLAlchemyError as exc:
            self.engine.dispose()
            raise self._open_error(exc) from None
        try:
            with conn:
                setup(conn)
        except StoreError:
            self.engine.dispose()
            raise
        except SQLAlchemyError as exc:
            self.engine.dispose()
            raise self.error(exc, "creating or upgrading the schema", 0) from exc
        _OPEN_DATABASES.add(self)

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

    def _open_error(self, exc: BaseException) -> StoreError:
        reason = self._reason(exc)
        if self.is_sqlite:
            return StoreError(
                f"cannot open the SQLite store {self.url}: {reason}; check that the file and its "
                "directory are writable and on a local disk, or set FOREWARN_DB_URL to another path",
                url=self.url,
            )
        return StoreUnreachableError(
            f"the telemetry store {self.url} does not answer: {reason}. Check that PostgreSQL is running "
            f"and reachable at {self._address} (firewall, VPN), and that the user, password and database name "
            "in FOREWARN_DB_URL are right",
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


def _postgres_engine(url: URL) -> sa.Engine:
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


_OPEN_DATABASES: weakref.WeakSet[Database] = weakref.WeakSet()


def _dispose_after_fork() -> None:
    """Drop (without closing) pooled connections a forked child inherited: they belong to the parent."""
    for database in list(_OPEN_DATABASES):
        if not database.closed:
            database.engine.dispose(close=False)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_dispose_after_fork)
