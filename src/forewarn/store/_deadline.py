"""A client-side deadline on PostgreSQL socket operations: a server that stops answering cannot hang a caller.

``statement_timeout`` is enforced by the server, and TCP keepalives and ``tcp_user_timeout`` only notice a
peer whose kernel stops acknowledging. A PostgreSQL (or a proxy in front of it) that is alive but frozen
(stopped process, stuck disk, wedged pooler) keeps acknowledging packets while never answering, and psycopg
then waits forever. :class:`SocketDeadline` bounds that wait: while an operation runs inside
:meth:`SocketDeadline.guard`, one watchdog thread per store shuts the connection's socket down if the
operation outlives the deadline. psycopg then sees the connection closed, raises ``OperationalError``,
and SQLAlchemy invalidates the connection; :attr:`SocketDeadline.expired` tells the caller why.

``shutdown`` (not ``close``) is used on purpose: it is safe from another thread, it wakes the thread
blocked on the socket, and the descriptor stays owned by psycopg, which closes it as usual.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
import time
from collections.abc import Iterator


class SocketDeadline:
    """Shuts a socket down when an operation guarded on it runs longer than its deadline.

    Deadlines are real time (``time.monotonic``): they bound real waits on a socket. The watchdog thread
    starts with the first guard and sleeps while nothing is guarded.

    Example::

        >>> deadline = SocketDeadline()
        >>> with deadline.guard(-1, 5.0):  # nothing to shut down: the operation ends in time
        ...     pass
        >>> deadline.expired()
        False
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._guarded: dict[int, tuple[float, int]] = {}  # token -> (deadline, fd)
        self._next_token = 0
        self._wake_at = math.inf  # when the watchdog next looks; inf while it sleeps with nothing guarded
        self._thread: threading.Thread | None = None
        self._local = threading.local()

    @contextlib.contextmanager
    def guard(self, fd: int, seconds: float) -> Iterator[None]:
        """Run the block with socket ``fd`` shut down if the block is still running after ``seconds``."""
        self._local.expired = False
        with self._cond:
            token = self._next_token
            self._next_token += 1
            deadline = time.monotonic() + seconds
            self._guarded[token] = (deadline, fd)
            self._start_watchdog()
            if deadline < self._wake_at:  # else the watchdog wakes in time anyway: no thread switch per write
                self._cond.notify()
        try:
            yield
        finally:
            with self._cond:
                # Still registered means the watchdog did not fire; gone means it shut the socket down.
                if self._guarded.pop(token, None) is None:
                    self._local.expired = True

    def expired(self) -> bool:
        """Whether the last block this thread guarded was cut off by the deadline."""
        return getattr(self._local, "expired", False)

    def _start_watchdog(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._watch, name="forewarn-store-deadline", daemon=True)
            self._thread.start()

    def _watch(self) -> None:
        with self._cond:
            while True:
                if not self._guarded:
                    self._wake_at = math.inf
                    self._cond.wait()
                    continue
                token, (deadline, fd) = min(self._guarded.items(), key=lambda item: item[1][0])
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._wake_at = deadline
                    self._cond.wait(wait)
                    continue
                del self._guarded[token]
                shutdown_socket(fd)


def shutdown_socket(fd: int) -> None:
    """Shut socket ``fd`` down for reading and writing without closing it; a descriptor already gone is fine."""
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already disconnected
    finally:
        sock.close()  # closes the duplicate only
