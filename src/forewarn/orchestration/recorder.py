"""The telemetry write path shared by ``forewarn.task`` and ``forewarn.flow``.

A business task must never fail, nor wait, because telemetry did: every write goes through a
:class:`TelemetryRecorder`. With a spool directory (``FOREWARN_SPOOL_DIR``, the default) a record is
appended to the local spool (:mod:`forewarn.store.spool`, microseconds, no database round trip) and a
background thread moves it into the store (:mod:`forewarn.store.spool_drainer`); a database that is down or
stalled delays the thread, never the flow, and the records reach the store when it answers again, or
from the next process if this one dies first. Without one, each record is written to the store at once,
as before. Either way a failure is logged once per kind of error, counted, and the flow carries on.

Reads through :class:`~forewarn.store.TelemetryStore` in the same process wait (at most 2 s) for the
spool to empty, so what a flow recorded is visible right after it; :meth:`TelemetryRecorder.flush` waits
explicitly, and at exit the process waits up to ``FOREWARN_SPOOL_EXIT_SECONDS``.

Example::

    >>> from forewarn.orchestration.recorder import TelemetryRecorder
    >>> recorder = TelemetryRecorder(url="sqlite:///:memory:")
    >>> recorder.errors, recorder.pending
    (0, 0)
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forewarn.records import AttemptRecord, FlowRunRecord, RunState
from forewarn.redaction import Redactor
from forewarn.settings import get_settings

if TYPE_CHECKING:
    from forewarn.store import TelemetryStore
    from forewarn.store.spool_drainer import SpoolDrainer

logger = logging.getLogger("forewarn.telemetry")


class TelemetryRecorder:
    """Writes records to a :class:`~forewarn.store.telemetry.TelemetryStore`, swallowing and counting failures.

    The store (and the spool in ``spool_dir``, a directory per store beneath it) is opened lazily on the
    first write, so importing a flow module touches neither, and one that cannot be opened costs one
    logged line, not a failed flow. A spool that cannot be opened falls back to writing synchronously.
    ``spool_max_bytes`` bounds the records waiting for the store; ``exit_seconds`` is the wait at exit.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        store: TelemetryStore | None = None,
        spool_dir: str | os.PathLike[str] | None = None,
        spool_max_bytes: int = 64 << 20,
        exit_seconds: float = 2.0,
    ) -> None:
        self._url = url
        self._store = store
        self._spool_dir = Path(spool_dir) if spool_dir is not None else None
        self._spool_max_bytes = spool_max_bytes
        self._exit_seconds = exit_seconds
        self._drainer: SpoolDrainer | None = None
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

    @property
    def pending(self) -> int:
        """Records of this process waiting in the spool for the store."""
        return self._drainer.spool.pending if self._drainer is not None else 0

    @property
    def dropped(self) -> int:
        """Records dropped because the spool was full, or refused by a store that answered."""
        drainer = self._drainer
        return 0 if drainer is None else drainer.spool.dropped + drainer.poisoned

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait up to ``timeout`` seconds until the store holds every spooled record; True if it does.

        That is every record of this process and those a crashed process left in the spool of this store
        (opening the spool replays them), so a tool or test can call it before reading.

        Example::

            >>> TelemetryRecorder(url="sqlite:///:memory:").flush(0.1)
            True
        """
        drainer = self._spool()
        return drainer is None or drainer.flush(timeout)

    def attempt(self, record: AttemptRecord) -> bool:
        """Record one task attempt. Returns False (after logging) if it was neither spooled nor written."""
        return self._safely("a task attempt", "attempt", record, lambda: self.store.record_attempt(record))

    def flow_run_started(self, record: FlowRunRecord) -> bool:
        """Record a flow run's start (idempotent: a retried flow run updates its row)."""
        return self._safely("a flow run start", "run_start", record, lambda: self.store.record_flow_run_start(record))

    def flow_run_ended(self, flow_run_id: str, state: RunState | str, end_time: datetime) -> bool:
        """Record a flow run's final state."""
        from forewarn.store.spool import RunEnd

        end = RunEnd(flow_run_id, RunState(state), end_time)
        return self._safely(
            "a flow run end", "run_end", end, lambda: self.store.record_flow_run_end(flow_run_id, state, end_time)
        )

    # -- writing -------------------------------------------------------------------------------------

    def _safely(self, what: str, kind: str, record: Any, write: Callable[[], object]) -> bool:
        try:
            drainer = self._spool()
            if drainer is None:
                write()
                return True
            return drainer.append(kind, record)
        except Exception as exc:  # telemetry must never fail a business task
            self._note_error(what, exc)
            return False

    def _spool(self) -> SpoolDrainer | None:
        """The spool's drainer, opened on first use; None without a spool directory or when it cannot open."""
        if self._drainer is not None or self._spool_dir is None:
            return self._drainer
        with self._lock:
            if self._drainer is None and self._spool_dir is not None:
                self._drainer = self._open_spool(self._spool_dir)
        return self._drainer

    def _open_spool(self, base: Path) -> SpoolDrainer | None:
        from forewarn.store.spool import Spool, spool_directory
        from forewarn.store.spool_drainer import SpoolDrainer

        url = self._url if self._url is not None else get_settings().db_url
        try:
            spool = Spool(spool_directory(base, url), max_bytes=self._spool_max_bytes)
        except Exception as exc:  # no spool: fall back to synchronous writes, as without one
            self._spool_dir = None
            self._note_error("the telemetry spool (records are written synchronously instead)", exc)
            return None
        return SpoolDrainer(
            spool,
            lambda: self.store,
            on_error=lambda exc: self._note_error("spooled telemetry (it stays in the spool)", exc),
            key=url,
            exit_seconds=self._exit_seconds,
        )

    def _note_error(self, what: str, exc: Exception) -> None:
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


_recorders: dict[tuple[int, str], TelemetryRecorder] = {}
_recorders_lock = threading.Lock()


def default_recorder() -> TelemetryRecorder | None:
    """The process-wide recorder for ``FOREWARN_DB_URL`` and ``FOREWARN_SPOOL_*``, or None when telemetry is disabled.

    Keyed by process id as well as URL: a forked worker must not share its parent's connections or spool.
    """
    settings = get_settings()
    if not settings.telemetry_enabled:
        return None
    key = (os.getpid(), settings.db_url)
    recorder = _recorders.get(key)
    if recorder is None:
        with _recorders_lock:
            recorder = _recorders.get(key)
            if recorder is None:
                recorder = _recorders[key] = TelemetryRecorder(
                    settings.db_url,
                    spool_dir=settings.spool_dir,
                    spool_max_bytes=int(settings.spool_max_mb * (1 << 20)),
                    exit_seconds=settings.spool_exit_seconds,
                )
    return recorder


__all__ = ["TelemetryRecorder", "default_recorder"]
