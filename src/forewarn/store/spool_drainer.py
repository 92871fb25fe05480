"""The background writer that moves a :class:`~forewarn.store.spool.Spool` into a store, in batches.

A :class:`SpoolDrainer` owns one daemon thread per process and store. The first entry appended wakes it;
it then gathers entries for up to ``linger`` seconds, or until ``batch_records`` are waiting (or a reader
or the exit flushes), and writes every pending entry with the store's idempotent batch writes
(consecutive attempts as one ``record_attempts``, run starts as one ``record_flow_runs``, run ends one by
one), oldest first. The thread runs in the task's own process and competes with it for the interpreter
lock, so it wakes rarely and writes much at a time: a few writes a second, not one per attempt. A
database that is down or stalled only delays the thread: it backs off (50 ms doubling to 5 s) and the
entries wait in the spool. An entry the store refuses while it is
reachable (an invalid record, the end of a run whose start was never recorded) would block every later
one, so it is dropped, counted and logged once.

:func:`flush_pending` lets a reader in the same process see what this process recorded
(:class:`~forewarn.store.TelemetryStore` calls it before every read), and at exit every drainer gets up to
its ``exit_seconds`` to empty its spool.

Example::

    >>> import tempfile
    >>> from datetime import datetime, timezone
    >>> from forewarn.records import FlowRunRecord
    >>> from forewarn.store import TelemetryStore
    >>> from forewarn.store.spool import Spool
    >>> store = TelemetryStore("sqlite://")
    >>> drainer = SpoolDrainer(Spool(tempfile.mkdtemp() + "/s"), lambda: store, linger=0)
    >>> drainer.append("run_start", FlowRunRecord("f1", "etl", datetime(2026, 1, 1, tzinfo=timezone.utc)))
    True
    >>> drainer.flush(5.0), len(store.runs())
    (True, 1)
    >>> drainer.close()
"""

from __future__ import annotations

import atexit
import itertools
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Protocol

from forewarn.errors import InvalidRecordError, StoreError, StoreUnreachableError
from forewarn.records import AttemptRecord, FlowRunRecord
from forewarn.store.spool import Entry, Spool

logger = logging.getLogger("forewarn.telemetry")

_BACKOFF_FIRST, _BACKOFF_MAX = 0.05, 5.0


class BatchStore(Protocol):
    """What the drainer writes through: the idempotent writes of :class:`~forewarn.store.TelemetryStore`."""

    @property
    def schema_version(self) -> int: ...

    def record_attempts(self, recs: Iterable[AttemptRecord]) -> int: ...

    def record_flow_runs(self, recs: Iterable[FlowRunRecord]) -> int: ...

    def record_flow_run_end(self, flow_run_id: str, state: Any, end_time: datetime) -> None: ...


class SpoolDrainer:
    """Drains ``spool`` into the store ``open_store()`` returns (called in the thread, retried until it opens).

    ``on_error(exc)`` hears of every failed pass (the entries stay in the spool); ``key`` (the store's
    URL) registers the drainer for :func:`flush_pending`; a pass writes what gathered in ``linger`` seconds
    after the first entry, or sooner once ``batch_records`` entries wait; ``idle_seconds`` after the last
    entry the thread ends, and the next append starts it again.
    """

    def __init__(
        self,
        spool: Spool,
        open_store: Callable[[], BatchStore],
        *,
        on_error: Callable[[Exception], None] | None = None,
        key: str | None = None,
        linger: float = 0.5,
        batch_records: int = 512,
        idle_seconds: float = 5.0,
        exit_seconds: float = 2.0,
    ) -> None:
        self.spool = spool
        self.poisoned = 0
        self.exit_seconds = exit_seconds
        self._open_store = open_store
        self._on_error = on_error or (lambda exc: None)
        self._linger = linger
        self._batch_records = batch_records
        self._idle_seconds = idle_seconds
        self._wake = threading.Event()  # an entry waits: the thread starts gathering
        self._hurry = threading.Event()  # write now: batch_records wait, or a flush or close asks
        self._stop = threading.Event()
        self._drained = threading.Condition()
        self._thread: threading.Thread | None = None
        self._orphans_due = True
        if key is not None:
            _registry[key] = self
        _live.add(self)

    def append(self, kind: str, record: Any) -> bool:
        """Spool one entry and wake the thread; False when the spool is full (the entry is dropped)."""
        accepted = self.spool.append(kind, record)
        if self.spool.pending >= self._batch_records and not self._hurry.is_set():
            self._hurry.set()
        self.notify()
        return accepted

    def notify(self) -> None:
        """Wake the thread (starting it if it ended while idle). Nothing to do while it is awake already:
        this runs on the task's thread after every append."""
        if self._wake.is_set() and self._thread is not None:
            return
        self._wake.set()
        thread = self._thread
        if thread is None or not thread.is_alive():
            self._start()

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until the store holds every entry of this process; True if it does."""
        if not self.spool.pending and not self._orphans_due:
            return True
        if threading.current_thread() is self._thread:
            return False
        deadline = time.monotonic() + timeout
        with self._drained:
            while self.spool.pending or self._orphans_due:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stop.is_set():
                    return False
                self._hurry.set()
                self.notify()
                self._drained.wait(min(remaining, 0.5))
        return True

    def close(self, timeout: float = 0.0) -> None:
        """Flush for up to ``timeout`` seconds, stop the thread and close the spool (undrained entries stay in it)."""
        if timeout > 0:
            self.flush(timeout)
        self._stop.set()
        self._wake.set()
        self._hurry.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)
        self.spool.close()
        _live.discard(self)

    # -- the thread ------------------------------------------------------------------------------------

    def _start(self) -> None:
        with _start_lock:
            if self._stop.is_set() or (self._thread is not None and self._thread.is_alive()):
                return
            self._thread = threading.Thread(target=self._run, name="forewarn-spool-drainer", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            self._loop()
        finally:  # however it ends, the next notify() starts a new thread
            with _start_lock:
                if self._thread is threading.current_thread():
                    self._thread = None

    def _loop(self) -> None:
        backoff = 0.0
        while not self._stop.is_set():
            if not self._wake.wait(timeout=self._idle_seconds) and self._retire_if_idle():
                return
            self._wake.clear()
            if self._linger and not backoff:
                self._hurry.wait(self._linger)  # gather a batch: one transaction for many entries
            self._hurry.clear()
            try:
                # Every pass looks for segments of dead processes, not only the first: a process of the same
                # directory may die while this one lives (a Dask worker killed beside another). With a few
                # live processes sharing the directory this is a listing and an open and a lock tried per
                # segment, some tens of microseconds a pass, and passes are at most a few a second.
                self.spool.drain(self._write)
                self._orphans_due, backoff = False, 0.0
            except Exception as exc:  # the store is down or stalled: the entries wait in the spool
                self._on_error(exc)
                backoff = min(max(backoff * 2, _BACKOFF_FIRST), _BACKOFF_MAX)
                self._stop.wait(backoff)
                self._wake.set()
            with self._drained:
                self._drained.notify_all()

    def _retire_if_idle(self) -> bool:
        """End the thread if nothing is pending; under the start lock, so an append meanwhile starts a new one."""
        with _start_lock:
            if self.spool.pending or self._wake.is_set():
                return False
            self._thread = None
            return True

    def _write(self, entries: list[Entry]) -> None:
        store = self._open_store()
        for kind, group in itertools.groupby(entries, key=lambda entry: entry[0]):
            records = [record for _, record in group]
            try:
                _write_group(store, kind, records)
            except (InvalidRecordError, StoreError) as exc:
                if isinstance(exc, StoreUnreachableError):
                    raise
                self._write_one_by_one(store, kind, records)

    def _write_one_by_one(self, store: BatchStore, kind: str, records: list[Any]) -> None:
        """Write ``records`` singly, dropping any the store refuses while it answers (it would block the rest)."""
        for record in records:
            try:
                _write_group(store, kind, [record])
            except (InvalidRecordError, StoreError) as exc:
                if isinstance(exc, StoreUnreachableError) or not _answers(store):
                    raise
                self.poisoned += 1
                logger.warning(
                    "forewarn dropped a spooled %s the store refuses (%s: %s)%s",
                    kind,
                    type(exc).__name__,
                    exc,
                    "" if self.poisoned == 1 else f"; {self.poisoned} dropped so far",
                )


def _write_group(store: BatchStore, kind: str, records: list[Any]) -> None:
    if kind == "attempt":
        store.record_attempts(records)
    elif kind == "run_start":
        store.record_flow_runs(records)
    else:
        for end in records:
            store.record_flow_run_end(end.flow_run_id, end.state, end.end_time)


def _answers(store: BatchStore) -> bool:
    try:
        store.schema_version  # noqa: B018 - a read that only tells whether the database answers
    except Exception:  # any failure means it does not
        return False
    return True


_registry: weakref.WeakValueDictionary[str, SpoolDrainer] = weakref.WeakValueDictionary()
_live: weakref.WeakSet[SpoolDrainer] = weakref.WeakSet()
_start_lock = threading.Lock()


def flush_pending(key: str, timeout: float = 2.0) -> bool:
    """Wait up to ``timeout`` seconds for the drainer registered under ``key`` (a store URL) to empty; True
    when there is none or it emptied.

    Example::

        >>> flush_pending("sqlite:///nothing-spooled-here.db")
        True
    """
    drainer = _registry.get(key)
    return drainer is None or drainer.flush(timeout)


@atexit.register
def _flush_at_exit() -> None:
    """Give every drainer up to its ``exit_seconds`` (in all, the largest) to empty its spool, then close it."""
    drainers = list(_live)
    deadline = time.monotonic() + max((d.exit_seconds for d in drainers), default=0.0)
    for drainer in drainers:
        drainer.close(timeout=max(0.0, deadline - time.monotonic()))


__all__ = ["BatchStore", "SpoolDrainer", "flush_pending"]
