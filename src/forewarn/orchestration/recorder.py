"""The telemetry write path shared by ``forewarn.task`` and ``forewarn.flow``.

A business task must never fail because telemetry did: every write goes through a
:class:`TelemetryRecorder`, which logs a failed write once per kind of error, counts it, and carries on.

Example::

    >>> from forewarn.orchestration.recorder import TelemetryRecorder
    >>> recorder = TelemetryRecorder(url="sqlite:///:memory:")
    >>> recorder.errors
    0
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from forewarn.records import AttemptRecord, FlowRunRecord, RunState
from forewarn.redaction import Redactor
from forewarn.settings import get_settings

if TYPE_CHECKING:
    from forewarn.store import TelemetryStore

logger = logging.getLogger("forewarn.telemetry")


class TelemetryRecorder:
    """Writes records to a :class:`~forewarn.store.telemetry.TelemetryStore`, swallowing and counting failures.

    The store is opened lazily on the first write, so importing a flow module never touches the
    database, and a store that cannot be opened costs one logged line, not a failed flow.
    """

    def __init__(self, url: str | None = None, *, store: TelemetryStore | None = None) -> None:
        self._url = url
        self._store = store
        self._lock = threading.Lock()
        self._logged: set[str] = set()
        self.errors = 0
        self.redactor = Redactor.from_settings()

    @property
    def store(self) -> TelemetryStore:
        """The store, opened on first use (raises if it cannot be opened)."""
        if self._store is None:
            with self._lock:
                if self._store is None:
                    from forewarn.store import TelemetryStore

                    self._store = TelemetryStore(self._url)
        return self._store

    def _safely(self, what: str, write: Callable[[], object]) -> bool:
        try:
            write()
        except Exception as exc:  # telemetry must never fail a business task
            self.errors += 1
            key = f"{what}:{type(exc).__name__}"
            if key not in self._logged:
                self._logged.add(key)
                logger.warning(
                    "forewarn could not record %s (%s: %s); the flow goes on, and further %s errors "
                    "of this kind are counted, not logged",
                    what,
                    type(exc).__name__,
                    exc,
                    what,
                )
            return False
        return True

    def attempt(self, record: AttemptRecord) -> bool:
        """Record one task attempt. Returns False (after logging) if the write failed."""
        return self._safely("a task attempt", lambda: self.store.record_attempt(record))

    def flow_run_started(self, record: FlowRunRecord) -> bool:
        """Record a flow run's start (idempotent: a retried flow run updates its row)."""
        return self._safely("a flow run start", lambda: self.store.record_flow_run_start(record))

    def flow_run_ended(self, flow_run_id: str, state: RunState | str, end_time: datetime) -> bool:
        """Record a flow run's final state."""
        return self._safely("a flow run end", lambda: self.store.record_flow_run_end(flow_run_id, state, end_time))


_recorders: dict[tuple[int, str], TelemetryRecorder] = {}
_recorders_lock = threading.Lock()


def default_recorder() -> TelemetryRecorder | None:
    """The process-wide recorder for ``FOREWARN_DB_URL``, or None when telemetry is disabled.

    Keyed by process id as well as URL: a forked worker must not share its parent's connections.
    """
    settings = get_settings()
    if not settings.telemetry_enabled:
        return None
    key = (os.getpid(), settings.db_url)
    recorder = _recorders.get(key)
    if recorder is None:
        with _recorders_lock:
            recorder = _recorders.setdefault(key, TelemetryRecorder(settings.db_url))
    return recorder


__all__ = ["TelemetryRecorder", "default_recorder"]
