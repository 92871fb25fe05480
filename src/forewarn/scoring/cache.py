"""The prepared-history cache: the store's recent history, read once per process and kept up to date.

Scoring a run needs only the history its features can see: runs that ended in
:func:`forewarn.learning.features.history_window` and task attempts that ended in its last ``global_window``,
read through the lean :meth:`~forewarn.store.telemetry.TelemetryStore.ended_rows` query and prepared once as a
:class:`~forewarn.learning.features.RunIndex` and an :class:`~forewarn.learning.features.AttemptIndex`
(:func:`read_history`, "cold"). A long-lived process (a worker serving many runs, the forecast) keeps them in
a :class:`HistoryCache`, which reads and prepares only the rows that ended since its last read and extends
the indexes with them ("warm"); the first score of a process pays the window read - unless the
process-wide cache (:func:`history_cache`) finds the history snapshot an earlier process saved in
``FOREWARN_CACHE_DIR`` (:mod:`forewarn.scoring.snapshot`), as in a Prefect worker that starts a process per
flow run. ``docs/warnings.md`` has the latency figures.

Example::

    >>> cache = history_cache(store)  # doctest: +SKIP
    >>> runs, attempts = cache.read(since, attempts_since, now=now)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
import weakref
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from forewarn.errors import StoreError
from forewarn.learning.features import AttemptIndex, RunIndex
from forewarn.scoring._end_time import EndTimeCache
from forewarn.scoring.snapshot import (
    HistorySnapshot,
    StablePart,
    load_snapshot,
    save_snapshot,
    snapshot_file,
    store_identity,
)
from forewarn.timeutil import utc_timestamp

if TYPE_CHECKING:
    from forewarn.store import TelemetryStore

logger = logging.getLogger("forewarn.scoring")


def _ended_again(stable: RunIndex, newer: RunIndex) -> np.ndarray:
    """Mask of the rows of ``stable`` whose run ``newer`` holds too: it ended again, its newer row wins.

    A safeguard: a run of the cached range that ends again leaves that range, so the count before the
    merge already sends the cache to a full read - unless another row arriving in the range hides it. A
    run that ends again (a Prefect flow-run retry) keeps its scheduled start, so only the stable rows with
    a scheduled start of a newer row are candidates and just their ids are compared: no set of the
    window's 12,000 ids is built, which a new process starting from a snapshot would pay at its only score.
    """
    mask = np.zeros(len(stable), dtype=bool)
    rows = np.flatnonzero(np.isin(stable.ref, newer.ref))
    if len(rows):
        ids = set(newer.ids.tolist())
        mask[rows] = [run in ids for run in stable.ids[rows].tolist()]
    return mask


def _prepare_runs(columns: dict[str, np.ndarray], like: RunIndex | None) -> RunIndex:
    """Runs read from the store as a :class:`RunIndex` that extends ``like`` (sharing its codes and id type)."""
    part = RunIndex.from_frame(columns, vocab=None if like is None else like.vocab)
    if like is not None and like.ids.dtype.kind == "U" and len(part):
        # ids read back from a snapshot stay fixed-width text (no 12,000 str objects to make); so do new ones
        part = replace(part, ids=part.ids.astype(str))
    return part


class HistoryCache:
    """A per-process cache of the store's recent history, refreshed by reading only what ended since.

    Scoring one run needs every run that ended in the last ``lookback + global_window`` (30 days and 6 h
    by default: about 12,000 runs for 400 runs a day) and the attempts of the last ``global_window``.
    Reading that window costs tens of milliseconds, and preparing it for the features (text, hashing,
    sorting) about as much again; this cache reads and prepares it once - as a
    :class:`~forewarn.learning.features.RunIndex` and an :class:`~forewarn.learning.features.AttemptIndex` -
    and then, at
    each score, reads and prepares only the rows whose ``end_time`` is at or after the previous read minus
    ``grace``, and extends the indexes with them.

    What it assumes: a row's ``end_time`` is written within ``grace`` (default 10 minutes) of that time.
    Each read also counts (index-only, ~0.3 ms) the rows the store holds in the cached range; when the
    count differs from the cache's - old history imported, a run re-ended by a Prefect flow-run retry, rows
    deleted - the window is read in full again. A row rewritten in place with the same ``end_time`` (an
    import overwriting a run's state) is seen at the next full read, at most ``max_age`` (default 24 hours)
    later.

    ``snapshot`` is a file (see :mod:`forewarn.scoring.snapshot`) that carries the cache over to the next process:
    the first read adopts the prepared rows it holds when it was written for this store by this forewarn,
    reaches back to the window asked for, and was read in full at most ``max_age`` ago (the age travels
    with the rows, so a chain of processes still reads in full at least every ``max_age``); the count
    above then proves it still matches the store, or the window is read in full. Anything else - no file,
    a damaged or foreign one - is ignored (logged at DEBUG). The cache saves the file after a full read,
    and once ``save_rows`` (default 500) rows have become stable since it last saved or adopted it - so a
    process that scores once, as in a process-per-run worker, refreshes a snapshot that has fallen that
    far behind, and the next process reads at most about that many rows more. Rows, not minutes: a
    score pays about 7 microseconds per row of its tail but 5-10 ms to save, and about five rows (a run
    and its attempts) arrive per run, so one process in about a hundred saves. A save that fails (a
    read-only directory, a full disk) is logged once and never fails a read. Without ``snapshot`` nothing
    is read or written; :func:`history_cache` passes the file under ``FOREWARN_CACHE_DIR``.

    Example::

        >>> cache = HistoryCache(store, snapshot=Path("~/.cache/forewarn/history.npz").expanduser())  # doctest: +SKIP
        >>> runs, attempts = cache.read(since, attempts_since, now=now)  # doctest: +SKIP
        >>> build_features(upcoming, runs, attempts)  # doctest: +SKIP
    """

    def __init__(
        self,
        store: TelemetryStore,
        *,
        grace: timedelta = timedelta(minutes=10),
        max_age: timedelta = timedelta(hours=24),
        snapshot: Path | str | None = None,
        save_rows: int = 500,
    ) -> None:
        self._store = weakref.ref(store)  # the process-wide caches must not keep stores alive
        self._lock = threading.Lock()
        self._max_age = pd.Timedelta(max_age)
        self._runs: EndTimeCache[RunIndex] = EndTimeCache(
            lambda since: self.store.ended_rows("flow_runs", since),
            lambda a, b: self.store.count_ended("flow_runs", a, b),
            _prepare_runs,
            _ended_again,
            grace,
            max_age,
        )
        self._attempts: EndTimeCache[AttemptIndex] = EndTimeCache(
            lambda since: self.store.ended_rows("task_attempts", since),
            lambda a, b: self.store.count_ended("task_attempts", a, b),
            lambda columns, like: AttemptIndex.from_frame(columns, flows=None if like is None else like.flows),
            None,
            grace,
            max_age,
        )
        self._snapshot = None if snapshot is None else Path(snapshot)
        self._save_rows = save_rows
        self._first = True  # the snapshot is looked at by the first read only
        self._settled_at_save: int | None = None  # rows settled when the snapshot was last saved or adopted
        self._identity: str | None = None  # the store's, computed when the snapshot is first used
        self._save_failed = False
        self._adopted = self._saves = 0

    @property
    def store(self) -> TelemetryStore:
        """The store this cache reads."""
        store = self._store()
        if store is None:
            raise StoreError("the telemetry store of this HistoryCache is gone; open a store and a new cache")
        return store

    @property
    def snapshot(self) -> Path | None:
        """The snapshot file this cache starts from and saves to, or None."""
        return self._snapshot

    def read(self, since: datetime, attempts_since: datetime, *, now: datetime) -> tuple[RunIndex, AttemptIndex]:
        """Runs ended at or after ``since`` and attempts ended at or after ``attempts_since``, as of ``now``.

        The indexes may hold rows that ended after ``now`` (when the store has them); the features ignore
        whatever ended after each run's cutoff. Raises :class:`~forewarn.errors.StoreError` when the store
        cannot be read.
        """
        now_ts, since_ts, attempts_ts = utc_timestamp(now), utc_timestamp(since), utc_timestamp(attempts_since)
        with self._lock:
            if self._first and self._snapshot is not None:
                self._adopt(self._snapshot, since_ts, attempts_ts, now_ts)
            self._first = False
            full = self._runs.full_reads + self._attempts.full_reads
            runs = self._runs.read(since_ts, now_ts)
            attempts = self._attempts.read(attempts_ts, now_ts)
            if self._snapshot is not None and self._save_due(self._runs.full_reads + self._attempts.full_reads > full):
                self._save(self._snapshot)
        return runs, attempts

    def _adopt(self, path: Path, since: pd.Timestamp, attempts_since: pd.Timestamp, now: pd.Timestamp) -> None:
        """Start from the snapshot in ``path`` where it is usable; the reads that follow check it."""
        snapshot = load_snapshot(path, self._store_identity())
        if snapshot is None:
            return
        parts: tuple[tuple[str, Any, StablePart[Any], pd.Timestamp], ...] = (
            ("runs", self._runs, snapshot.runs, since),
            ("attempts", self._attempts, snapshot.attempts, attempts_since),
        )
        for name, cache, saved, wanted in parts:
            if saved.lo > wanted:
                logger.debug(
                    "history snapshot %s: its %s start at %s, after %s: read in full", path, name, saved.lo, wanted
                )
            elif abs(now - saved.loaded_at) > self._max_age:
                logger.debug(
                    "history snapshot %s: its %s were read at %s, over max_age ago", path, name, saved.loaded_at
                )
            else:
                cache.adopt(saved)
                self._adopted += 1
        self._settled_at_save = self._settled()

    def _settled(self) -> int:
        return self._runs.settled + self._attempts.settled

    def _save_due(self, full_read: bool) -> bool:
        """After a full read, or once ``save_rows`` rows have become stable since the last save or adoption."""
        if full_read or self._settled_at_save is None:
            return True
        return self._settled() - self._settled_at_save >= self._save_rows

    def _save(self, path: Path) -> None:
        """Save the stable rows to ``path``; a failure is logged once and the cache goes on without it."""
        runs, attempts = self._runs.saved(), self._attempts.saved()
        if runs is None or attempts is None:
            return
        self._settled_at_save = self._settled()  # a failed save is retried as late as a good one
        try:
            save_snapshot(path, HistorySnapshot(self._store_identity(), runs, attempts))
        # any failure (a read-only or full disk, a path that is a directory): scoring goes on without it
        except Exception as exc:
            if not self._save_failed:
                logger.warning(
                    "forewarn could not save its history snapshot %s (%s: %s); each new process will read the "
                    "history window in full. Make FOREWARN_CACHE_DIR writable, or set it empty to stop saving",
                    path,
                    type(exc).__name__,
                    exc,
                )
            self._save_failed = True
            return
        self._saves += 1

    def _store_identity(self) -> str:
        if self._identity is None:
            self._identity = store_identity(self.store)
        return self._identity

    @property
    def reads(self) -> dict[str, int]:
        """How many full and tail reads each table took (for benchmarks and tests)."""
        return {
            "runs_full": self._runs.full_reads,
            "runs_tail": self._runs.tail_reads,
            "attempts_full": self._attempts.full_reads,
            "attempts_tail": self._attempts.tail_reads,
        }

    @property
    def snapshots(self) -> dict[str, int]:
        """How many tables (0-2) the first read took from the snapshot, and how many times it was saved."""
        return {"adopted": self._adopted, "saved": self._saves}


_caches: weakref.WeakKeyDictionary[TelemetryStore, HistoryCache] = weakref.WeakKeyDictionary()
_caches_lock = threading.Lock()


def history_cache(store: TelemetryStore) -> HistoryCache:
    """The process-wide :class:`HistoryCache` of ``store`` (one per store object, dropped with it).

    Its snapshot is ``store``'s file (:func:`forewarn.scoring.snapshot.snapshot_file`) in ``FOREWARN_CACHE_DIR``;
    none when the setting is empty or the store is an in-memory SQLite database.

    Example::

        >>> history_cache(store) is history_cache(store)  # doctest: +SKIP
        True
    """
    with _caches_lock:
        cache = _caches.get(store)
        if cache is None:
            cache = _caches[store] = HistoryCache(store, snapshot=_configured_snapshot(store))
    return cache


def _configured_snapshot(store: TelemetryStore) -> Path | None:
    from forewarn.settings import get_settings

    directory = get_settings().cache_dir
    return None if directory is None else snapshot_file(directory, store)


def clear_history_caches() -> None:
    """Forget every cached history window (tests; after rewriting old history in place)."""
    with _caches_lock:
        _caches.clear()


def read_history(
    store: TelemetryStore, since: datetime, attempts_since: datetime, until: datetime | None = None
) -> tuple[RunIndex, AttemptIndex]:
    """Runs and attempts for a history window, read straight from the store and indexed (no cache: "cold").

    Example::

        >>> runs, attempts = read_history(store, since, attempts_since, until)  # doctest: +SKIP
    """
    runs = RunIndex.from_frame(store.ended_rows("flow_runs", since, until))
    return runs, AttemptIndex.from_frame(store.ended_rows("task_attempts", attempts_since, until), failed_only=True)


__all__ = ["HistoryCache", "clear_history_caches", "history_cache", "read_history"]
