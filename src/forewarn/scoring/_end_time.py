"""One table's recent rows kept prepared by ``end_time``: the building block of the history cache.

:class:`~forewarn.scoring.cache.HistoryCache` keeps two of these, one for ``flow_runs`` and one for
``task_attempts``. Each keeps a stable part it never re-reads and re-reads only its tail (what ended since,
plus a grace period for rows written a little after their end time); a count of the stable range at each
read catches history written behind it.

Example::

    >>> from forewarn.scoring.cache import HistoryCache
    >>> HistoryCache(store).read(since, attempts_since, now=now)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

import numpy as np
import pandas as pd

from forewarn.learning.features import AttemptIndex, RunIndex
from forewarn.scoring.snapshot import StablePart

_TRIM_SLACK = pd.Timedelta(hours=1)
"""A cached window keeps this much history before its latest start, for runs scored a little late."""

_Part = TypeVar("_Part", RunIndex, AttemptIndex)


class EndTimeCache(Generic[_Part]):
    """Rows of one table read by ``end_time`` and kept prepared: a stable part (never re-read) and a tail.

    The stable part holds rows with ``end_time`` in ``[lo, stable_hi)``; every :meth:`read` re-reads the
    rows with ``end_time >= stable_hi`` (the tail: what ended since, plus ``grace`` before, so a row written
    a little after its end time is not missed), prepares only those, and moves tail rows older than
    ``now - grace`` into the stable part. A window reaching before ``lo``, or a cache older than
    ``max_age``, is read in full. Parts are :class:`~forewarn.learning.features.RunIndex` or
    :class:`~forewarn.learning.features.AttemptIndex`; ``prepare(frame, like)`` builds one sharing ``like``'s codes.
    """

    def __init__(
        self,
        read: Callable[[datetime], dict[str, np.ndarray]],
        count: Callable[[datetime, datetime], int],
        prepare: Callable[[dict[str, np.ndarray], _Part | None], _Part],
        again: Callable[[_Part, _Part], np.ndarray] | None,
        grace: timedelta,
        max_age: timedelta,
    ) -> None:
        self._read = read  # read(since) -> the columns of the rows with end_time >= since
        self._count = count  # count(since, until) -> rows that ended in [since, until)
        self._prepare: Callable[[dict[str, np.ndarray], _Part | None], _Part] = prepare
        # again(stable, newer) -> mask of the stable rows newer ends again (a retried flow run), if rows can
        self._again: Callable[[_Part, _Part], np.ndarray] | None = again
        self._grace = pd.Timedelta(grace)
        self._max_age = pd.Timedelta(max_age)
        self._stable: _Part | None = None
        self._lo = self._stable_hi = self._loaded_at = pd.Timestamp(0, tz="UTC")
        self._last: tuple[Any, _Part] | None = None  # the tail last combined, and the result
        self.full_reads = 0
        self.tail_reads = 0
        self.settled = 0  # rows tail reads have moved into the stable part

    def read(self, since: pd.Timestamp, now: pd.Timestamp) -> _Part:
        """Every row with ``end_time >= since`` as far as the store knows now (rows after ``now`` too)."""
        fresh = self._stable is not None and since >= self._lo and abs(now - self._loaded_at) <= self._max_age
        if not fresh:
            return self._read_all(since, now)
        if since - self._lo > 2 * _TRIM_SLACK:  # the window moved on: drop what it left behind
            self._trim(since - _TRIM_SLACK)
        assert self._stable is not None
        columns = self._read(self._stable_hi.to_pydatetime())
        self.tail_reads += 1
        if self._count(self._lo.to_pydatetime(), self._stable_hi.to_pydatetime()) != len(self._stable):
            # rows were written, removed or re-ended behind the cache (an import, a retried run)
            return self._read_all(since, now)
        return self._with_tail(columns, boundary=now - self._grace)

    def _trim(self, lo: pd.Timestamp) -> None:
        """Drop the stable rows that ended before ``lo``."""
        assert self._stable is not None
        self._lo = lo
        self._stable = self._stable.take(self._stable.end >= lo.value)
        self._last = None

    def _with_tail(self, columns: dict[str, np.ndarray], boundary: pd.Timestamp) -> _Part:
        """The stable part and the tail just read (``columns``); tail rows ended before ``boundary`` settle."""
        assert self._stable is not None
        ids, ends = columns["flow_run_id"], columns["end_time"].view(np.int64)
        signature = (tuple(ids.tolist()), tuple(ends.tolist()))
        if boundary <= self._stable_hi and self._last is not None and self._last[0] == signature:
            return self._last[1]  # nothing ended since the last read: the same history
        tail = self._prepare(columns, self._stable)
        if boundary > self._stable_hi:  # rows that ended long enough ago are final: they become stable
            tail = self._settle(tail, boundary)
            later = ends >= boundary.value  # the rows the next read returns again, as it returns them
            signature = (tuple(ids[later].tolist()), tuple(ends[later].tolist()))
        combined = self._merge(self._stable, tail)
        self._last = (signature, combined)
        return combined

    def _settle(self, tail: _Part, boundary: pd.Timestamp) -> _Part:
        """Move the rows of ``tail`` that ended before ``boundary`` into the stable part; return the rest."""
        assert self._stable is not None
        final = tail.end < boundary.value
        self._stable = self._merge(self._stable, tail.take(final))
        self.settled += int(final.sum())
        self._stable_hi = boundary
        return tail.take(~final)

    def saved(self) -> StablePart[_Part] | None:
        """The stable part and its range, as a snapshot keeps them (None before the first read)."""
        if self._stable is None:
            return None
        return StablePart(self._stable, self._lo, self._stable_hi, self._loaded_at)

    def adopt(self, saved: StablePart[_Part]) -> None:
        """Take ``saved`` (from a snapshot) as the stable part; the next :meth:`read` checks it like its own."""
        self._stable, self._lo, self._stable_hi, self._loaded_at = (
            saved.part,
            saved.lo,
            saved.stable_hi,
            saved.loaded_at,
        )
        self._last = None

    def _read_all(self, since: pd.Timestamp, now: pd.Timestamp) -> _Part:
        part = self._prepare(self._read(since.to_pydatetime()), None)
        self.full_reads += 1
        self._lo, self._loaded_at, self._last = since, now, None
        self._stable_hi = max(now - self._grace, since)
        self._stable = part.take(part.end < self._stable_hi.value)
        return part

    def _merge(self, stable: _Part, newer: _Part) -> _Part:
        """``stable`` extended with ``newer``; a row that ``newer`` ends again is dropped from ``stable``."""
        if len(newer) == 0:
            return stable
        if self._again is not None:
            again = self._again(stable, newer)
            if again.any():
                stable = stable.take(~again)
        return stable.extend(newer)  # type: ignore[arg-type]


__all__ = ["EndTimeCache"]
