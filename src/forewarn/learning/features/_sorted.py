"""Vectorised searches over sorted int64 arrays: the primitives every feature window is counted with.

A window of history is a range of positions in a sorted array; its size comes from two
:func:`numpy.searchsorted` calls and its counts from differences of cumulative sums, so one target or
400,000 cost one pass each, and integer sums make the result independent of the batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


class Grouped:
    """Rows sorted by ``(group, time)`` (stable, so earlier tie order is kept), searchable per group."""

    def __init__(self, group: np.ndarray, time: np.ndarray, distinct_times: np.ndarray | None = None) -> None:
        self.times = distinct(time) if distinct_times is None else distinct_times
        self.stride = np.int64(len(self.times) + 1)
        key = group.astype(np.int64) * self.stride + np.searchsorted(self.times, time)
        self.order = np.argsort(key, kind="stable")
        self.key = key[self.order]

    def before(self, group: np.ndarray, time: np.ndarray) -> np.ndarray:
        """Index of the first row of ``group`` at or after ``time`` (rows before it: earlier groups/times)."""
        return np.searchsorted(self.key, group.astype(np.int64) * self.stride + np.searchsorted(self.times, time))


def ragged(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ranges ``[starts[i], ends[i])``: the owner ``i`` and the position of every element."""
    counts = np.maximum(ends - starts, 0)
    owner = np.repeat(np.arange(len(starts)), counts)
    offset = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
    return owner, np.repeat(starts, counts) + offset


def distinct(values: np.ndarray) -> np.ndarray:
    """The sorted distinct values of an int64 array (a sort and a diff: faster than np.unique here)."""
    ordered = values if len(values) < 2 or (values[1:] >= values[:-1]).all() else np.sort(values)
    if len(ordered) < 2:
        return ordered
    return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]


def take_or(values: np.ndarray, positions: np.ndarray, default: int) -> np.ndarray:
    """``values[positions]``, or ``default`` everywhere when ``values`` is empty (no history at all)."""
    return values[positions] if len(values) else np.full(len(positions), default, dtype=np.int64)


def cumulative(flags: np.ndarray) -> np.ndarray:
    """Cumulative count with a leading zero: ``c[j] - c[i]`` counts ``flags[i:j]``."""
    out = np.zeros(len(flags) + 1, dtype=np.int64)
    np.cumsum(flags, out=out[1:])
    return out


def ratio(num: np.ndarray, den: np.ndarray, default: np.ndarray | float) -> np.ndarray:
    """``num / den`` as float64, ``default`` where ``den`` is 0."""
    safe = np.where(den > 0, den, 1)
    return np.where(den > 0, num / safe, default).astype(np.float64)


def first_positions(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """For each value, the position of its first occurrence in ``keys``, or -1.

    Only the values' distinct entries are hashed (few attempts' runs against a whole history); a handful
    of keys (the runs scored live) are looked up in a dict instead.
    """
    if len(keys) <= 64:
        first: dict[Any, int] = {}
        for i, key in enumerate(keys.tolist()):
            first.setdefault(key, i)
        return np.asarray([first.get(v, -1) for v in values.tolist()], dtype=np.int64)
    wanted = pd.Index(pd.unique(values))
    hit = wanted.get_indexer(keys)
    where = np.flatnonzero(hit >= 0)
    found, first_at = np.unique(hit[where], return_index=True)
    first_pos = np.full(len(wanted), -1, dtype=np.int64)
    first_pos[found] = where[first_at]
    return first_pos[wanted.get_indexer(values)]
