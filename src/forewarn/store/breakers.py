"""Circuit-breaker state shared through the telemetry store: one ``circuit_breakers`` row per breaker.

:class:`StoreBreakerState` is a :class:`~forewarn.resilience.breaker.BreakerBackend` over a
:class:`~forewarn.store.TelemetryStore`: reads are one ``SELECT`` under the store's read deadline, changes
one short transaction that locks the row (see :mod:`forewarn.store._breakers`). The store is opened on
first use through ``open_store``; if it cannot be opened, that is tried again only after
``retry_seconds``, so a dead database costs a task at most one bounded wait per interval.

The orchestration layer installs it in every ``scope="shared"`` breaker given to ``forewarn.task``
(:meth:`forewarn.resilience.breaker.CircuitBreaker.share_state`); a user can pass one as ``backend=``.

Example::

    >>> from forewarn.resilience.breaker import CircuitBreaker
    >>> from forewarn.store import TelemetryStore
    >>> store = TelemetryStore("sqlite://")
    >>> breaker = CircuitBreaker("payments", failure_threshold=1, backend=StoreBreakerState(store))
    >>> breaker.record_failure()
    >>> store.breaker_state("payments").state
    'open'
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from forewarn.errors import StoreError
from forewarn.resilience.breaker_rules import BreakerSnapshot
from forewarn.store.telemetry import TelemetryStore

T = TypeVar("T")

OPEN_RETRY_SECONDS = 30.0
"""After the store could not be opened, how long :class:`StoreBreakerState` waits before trying again."""


class StoreBreakerState:
    """Breaker state in the telemetry store: a store, or a function opening one on first use.

    ``description`` names the store in the breaker's log lines (give the masked URL).
    """

    def __init__(
        self,
        store: TelemetryStore | Callable[[], TelemetryStore],
        *,
        description: str | None = None,
        retry_seconds: float = OPEN_RETRY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store if isinstance(store, TelemetryStore) else None
        self._open_store = None if isinstance(store, TelemetryStore) else store
        self.description = description or (
            f"the telemetry store {self._store.url}" if self._store is not None else "the telemetry store"
        )
        self._retry_seconds = retry_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._failed_at: float | None = None
        self._open_error: StoreError | None = None

    def read(self, name: str) -> BreakerSnapshot:
        """The stored snapshot of breaker ``name``."""
        return self.store().breaker_state(name)

    def change(
        self, name: str, change: Callable[[BreakerSnapshot], tuple[BreakerSnapshot, T]]
    ) -> tuple[BreakerSnapshot, T]:
        """Apply ``change`` to breaker ``name``'s row atomically."""
        return self.store().change_breaker(name, change)

    def store(self) -> TelemetryStore:
        """The store, opened on first use; :class:`~forewarn.errors.StoreError` while it cannot be opened."""
        if self._store is not None:
            return self._store
        with self._lock:
            if self._store is None:
                now = self._clock()
                if self._failed_at is not None and now - self._failed_at < self._retry_seconds:
                    assert self._open_error is not None  # a new error each time: no traceback piles up
                    raise StoreError(str(self._open_error), url=self._open_error.url)
                assert self._open_store is not None
                try:
                    self._store = self._open_store()
                except StoreError as exc:
                    self._failed_at, self._open_error = now, exc
                    raise
            return self._store


__all__ = ["OPEN_RETRY_SECONDS", "StoreBreakerState"]
