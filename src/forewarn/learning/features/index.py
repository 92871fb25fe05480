"""The prepared history: ended runs and task attempts as numpy arrays, coded once and grown in place.

:class:`RunIndex` and :class:`AttemptIndex` do the per-row work a history needs (text, hashing, sorting into
the total known-at order) once, so that :func:`~forewarn.learning.features.build_features` only searches
them. Flows, versions and parameter sets are codes of a
:class:`~forewarn.learning.features.vocabulary.Vocabulary`, which never change as rows are added, so an index
can be extended with what ended since without re-coding what it holds.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

from forewarn.errors import FeatureSchemaError
from forewarn.learning.features._columns import (
    NAT,
    NONE,
    Frame,
    cased,
    cased_codes,
    cells,
    column_names,
    number_text,
    optional_text,
    parameter_hashes,
    require,
    row_count,
    run_reference_ns,
    text,
    time_ns,
)
from forewarn.learning.features._sorted import first_positions
from forewarn.learning.features.config import EXCEPTION_FAMILIES
from forewarn.learning.features.labels import SUCCESS_STATE
from forewarn.learning.features.vocabulary import RunVocabulary, Vocabulary
from forewarn.records import FAILED_ATTEMPT_OUTCOMES, FAILURE_STATES, FEATURE_PREFIX, AttemptOutcome

_FAILED_OUTCOMES = sorted(FAILED_ATTEMPT_OUTCOMES)


class _Arrays:
    """Shared by :class:`RunIndex` and :class:`AttemptIndex`: equal-length arrays, named by ``_ARRAYS``."""

    __slots__ = ()
    _ARRAYS: ClassVar[tuple[str, ...]]

    def __len__(self) -> int:
        return len(getattr(self, self._ARRAYS[0]))

    def take(self, rows: np.ndarray) -> Self:
        """The rows at ``rows`` (positions in order, or a boolean mask), in the order they were."""
        subset: dict[str, Any] = {name: getattr(self, name)[rows] for name in self._ARRAYS}
        return replace(self, **subset)  # type: ignore[type-var]

    def _joined(self, newer: Self) -> dict[str, Any]:
        return {name: np.concatenate([getattr(self, name), getattr(newer, name)]) for name in self._ARRAYS}


_RUN_ARRAYS = ("ids", "known", "ref", "end", "flow", "version", "params", "fail", "succ", "has_dur", "dur_us", "attrs")


@dataclass(frozen=True, slots=True, eq=False)
class RunIndex(_Arrays):
    """Ended runs, prepared once for :func:`build_features`: numpy arrays in the order features read them.

    Rows are ordered by the time each run became known (``max(end_time, scheduled start)``), then by
    scheduled start, then by run id - the total order every feature uses. Flows, versions and parameter
    sets are integer codes in :attr:`vocab`. Building one does the per-row work a history needs (text,
    hashing, sorting); :func:`build_features` then only searches it, so a process that scores runs one at
    a time (:class:`forewarn.scoring.live.HistoryCache`) keeps one index and :meth:`extend` s it with the rows
    that ended since, instead of re-deriving a 30-day window for every score. Features from an index
    equal features from the frame it was built from, exactly.

    Example::

        >>> t0 = pd.Timestamp("2026-01-01", tz="UTC")
        >>> hist = pd.DataFrame({"flow_run_id": ["a", "b"], "flow_name": ["etl", "etl"],
        ...     "scheduled_start": [t0, t0 + pd.Timedelta(hours=1)],
        ...     "end_time": [t0 + pd.Timedelta(minutes=5), t0 + pd.Timedelta(hours=1, minutes=5)],
        ...     "state": ["COMPLETED", "FAILED"]})
        >>> index = RunIndex.from_frame(hist.iloc[:1])
        >>> index = index.extend(RunIndex.from_frame(hist.iloc[1:], vocab=index.vocab))
        >>> nxt = pd.DataFrame({"flow_run_id": ["c"], "flow_name": ["etl"],
        ...     "scheduled_start": [t0 + pd.Timedelta(hours=2)]})
        >>> from forewarn.learning.features import build_features
        >>> build_features(nxt, index).loc["c", "flow_last_ended_failed"]
        np.float64(1.0)
    """

    _ARRAYS: ClassVar[tuple[str, ...]] = _RUN_ARRAYS

    ids: np.ndarray
    """Run ids (``str``)."""
    known: np.ndarray
    """When each run became known: ``max(end_time, scheduled start)``, int64 ns."""
    ref: np.ndarray
    """Scheduled start (start time when there is none), int64 ns."""
    end: np.ndarray
    """End time, int64 ns."""
    flow: np.ndarray
    """Flow codes in ``vocab.flows``."""
    version: np.ndarray
    """Flow version codes in ``vocab.versions``."""
    params: np.ndarray
    """Parameter-set (``parameters_hash``) codes in ``vocab.params``."""
    fail: np.ndarray
    """The run failed (``FAILED``, ``CRASHED``, ``TIMEDOUT``)."""
    succ: np.ndarray
    """The run completed."""
    has_dur: np.ndarray
    """The run completed and has a start time: it has a duration."""
    dur_us: np.ndarray
    """Its duration in whole microseconds (integers: sums are exact whatever the window); 0 without one."""
    attrs: np.ndarray
    """Codes of the text pre-run attributes (``feature_*`` text columns), one column per
    ``vocab.attributes`` entry (int64, shape ``(n, k)``); columns added to the vocabulary after these rows
    were coded are read as missing (:meth:`attribute`)."""
    vocab: RunVocabulary
    """The codes' vocabularies, shared with the indexes this one extends or is extended by."""

    @classmethod
    def from_frame(
        cls,
        history: Frame,
        *,
        since: int | None = None,
        until: int | None = None,
        vocab: RunVocabulary | None = None,
    ) -> RunIndex:
        """Index the ended runs of a runs frame known in ``[since, until)`` (int64 ns; None: unbounded).

        ``history`` is a runs frame or its columns as numpy arrays (times as naive-UTC ``datetime64``), as
        :meth:`forewarn.store.telemetry.TelemetryStore.ended_rows` returns them.

        ``vocab`` is the vocabulary of an index this one will :meth:`extend` (or be extended by).
        Raises :class:`~forewarn.errors.FeatureSchemaError` for missing columns or a repeated run id.
        """
        require(history, ("flow_run_id", "flow_name", "end_time", "state"), "history")
        end, start, ref = time_ns(history, "end_time"), time_ns(history, "start_time"), run_reference_ns(history)
        known = np.maximum(end, ref)  # a run is known at its end, never before its own scheduled start
        usable = end != NAT
        if since is not None:
            usable &= known >= since
        if until is not None:
            usable &= known < until
        keep = np.flatnonzero(usable)
        ids = text(cells(history, "flow_run_id", keep))
        if not _is_unique(ids):
            dup = pd.Series(ids).loc[lambda s: s.duplicated()].unique()[:5]
            raise FeatureSchemaError(f"history repeats flow_run_id {', '.join(map(repr, dup))}; pass each run once")
        order = _total_order(known[keep], ref[keep], ids)
        rows = keep[order]
        state_codes, states = cased_codes(cells(history, "state", rows))
        fail = np.isin(states, list(FAILURE_STATES))[state_codes]  # tested once per distinct state
        succ = (states == SUCCESS_STATE)[state_codes]
        start = start[rows]
        has_dur = succ & (start != NAT)
        vocab = vocab if vocab is not None else RunVocabulary()
        return cls(
            ids=ids[order],
            known=known[rows],
            ref=ref[rows],
            end=end[rows],
            flow=vocab.flows.encode(text(cells(history, "flow_name", rows))),
            version=vocab.versions.encode(optional_text(history, "flow_version", rows)),
            params=vocab.params.encode(parameter_hashes(history, rows)),
            fail=fail,
            succ=succ,
            has_dur=has_dur,
            dur_us=np.where(has_dur, (end[rows] - start) // 1000, 0),
            attrs=_attribute_codes(history, rows, vocab),
            vocab=vocab,
        )

    def attribute(self, name: str) -> np.ndarray:
        """The codes of attribute ``name`` for every row; -1 (no row has it) for rows that lack it."""
        names = list(self.vocab.attributes)
        j = names.index(name) if name in self.vocab.attributes else len(names)
        if j >= self.attrs.shape[1]:
            return np.full(len(self), -1, dtype=np.int64)
        return self.attrs[:, j]

    def extend(self, newer: RunIndex) -> RunIndex:
        """This index plus the rows of ``newer`` (built with the same :attr:`vocab`; no run in both).

        Rows that ended since are usually known after every row already here, and are appended; otherwise
        the rows are put back in known-at order.
        """
        if newer.vocab is not self.vocab:
            raise ValueError("extend() takes an index built with this one's vocab: RunIndex.from_frame(..., vocab=)")
        if len(newer) == 0:
            return self
        if len(self) == 0:
            return newer
        width = max(self.attrs.shape[1], newer.attrs.shape[1])
        joined = replace(self, attrs=_widened(self.attrs, width))._joined(
            replace(newer, attrs=_widened(newer.attrs, width))
        )
        after = (int(newer.known[0]), int(newer.ref[0]), str(newer.ids[0])) > (
            int(self.known[-1]),
            int(self.ref[-1]),
            str(self.ids[-1]),
        )
        if not after:
            order = _total_order(joined["known"], joined["ref"], joined["ids"])
            joined = {name: values[order] for name, values in joined.items()}
        return replace(self, **joined)


_ATTEMPT_ARRAYS = ("run", "end", "known", "failed", "flow", "own_flow", "families")


@dataclass(frozen=True, slots=True, eq=False)
class AttemptIndex(_Arrays):
    """Task attempts, prepared once for :func:`build_features` (see :class:`RunIndex`).

    An attempt is known at its end, never before its run's scheduled start: the run is looked up in the
    runs given to :meth:`from_frame`, else read from the attempt's own ``run_scheduled_start`` /
    ``run_start_time`` columns (what :meth:`forewarn.store.telemetry.TelemetryStore.ended_attempts` returns).
    Rows are in no particular order.

    Example::

        >>> t0 = pd.Timestamp("2026-01-01", tz="UTC")
        >>> att = pd.DataFrame({"flow_run_id": ["a"], "end_time": [t0], "outcome": ["timeout"],
        ...                     "exception_type": [None], "flow_name": ["etl"]})
        >>> index = AttemptIndex.from_frame(att)
        >>> len(index), index.failed.tolist()
        (1, [True])
    """

    _ARRAYS: ClassVar[tuple[str, ...]] = _ATTEMPT_ARRAYS

    run: np.ndarray
    """The attempts' run ids (``str``)."""
    end: np.ndarray
    """End time, int64 ns."""
    known: np.ndarray
    """``max(end, the run's scheduled start)``, int64 ns."""
    failed: np.ndarray
    """The attempt failed (an outcome with ``AttemptOutcome.is_failure``) and has an end time."""
    flow: np.ndarray
    """Flow codes in :attr:`flows`."""
    own_flow: np.ndarray
    """The flow came from the attempt's own ``flow_name`` column (not from its run)."""
    families: np.ndarray
    """One column per :data:`EXCEPTION_FAMILIES` entry: the attempt's exception is of that family."""
    flows: Vocabulary
    """The flow vocabulary, shared with the indexes this one extends or is extended by."""

    @classmethod
    def from_frame(
        cls,
        attempts: Frame,
        *,
        runs: pd.DataFrame | None = None,
        since: int | None = None,
        until: int | None = None,
        failed_only: bool = False,
        flows: Vocabulary | None = None,
    ) -> AttemptIndex:
        """Index the attempts known in ``[since, until)`` (int64 ns; None: unbounded).

        ``failed_only`` keeps only the failed attempts (all the features count); a cache that compares its
        size with the store keeps them all. ``flows`` is the vocabulary of an index this one will extend.
        """
        require(attempts, ("flow_run_id", "end_time", "outcome"), "attempts")
        end = time_ns(attempts, "end_time")
        outcome = cased(cells(attempts, "outcome"), lower=True)
        failed = np.isin(outcome, _FAILED_OUTCOMES) & (end != NAT)
        rows = np.flatnonzero(failed) if failed_only else np.arange(row_count(attempts))
        end = end[rows]
        run = text(cells(attempts, "flow_run_id", rows))
        run_ref, run_flow = _run_of(run, runs)
        missing = run_ref == NAT
        if missing.any() and "run_scheduled_start" in column_names(attempts):
            own = time_ns(attempts, "run_scheduled_start")[rows]
            own = np.where(own == NAT, time_ns(attempts, "run_start_time")[rows], own)
            run_ref = np.where(missing, own, run_ref)
        known = np.maximum(end, run_ref)
        window = np.ones(len(rows), dtype=bool)
        if since is not None:
            window &= known >= since
        if until is not None:
            window &= known < until
        if not window.all():
            rows, end, run, run_flow, known = rows[window], end[window], run[window], run_flow[window], known[window]
        own_flow = "flow_name" in column_names(attempts)
        flow_text = text(cells(attempts, "flow_name", rows)) if own_flow else run_flow
        flows = flows if flows is not None else Vocabulary()
        return cls(
            run=run,
            end=end,
            known=known,
            failed=failed[rows],
            flow=flows.encode(flow_text),
            own_flow=np.full(len(rows), own_flow),
            families=_families(attempts, rows, outcome[rows]),
            flows=flows,
        )

    def extend(self, newer: AttemptIndex) -> AttemptIndex:
        """This index plus the rows of ``newer`` (built with the same :attr:`flows`)."""
        if newer.flows is not self.flows:
            raise ValueError(
                "extend() takes an index built with this one's flows: AttemptIndex.from_frame(..., flows=)"
            )
        if len(newer) == 0:
            return self
        return replace(self, **self._joined(newer))


def _attribute_codes(history: Frame, rows: np.ndarray, vocab: RunVocabulary) -> np.ndarray:
    """The rows' text pre-run attributes coded in ``vocab.attributes`` (``<none>`` when a row lacks one).

    Every attribute the vocabulary knows gets a column, so indexes built with one vocabulary line up.
    """
    values = _text_attributes(history, rows)
    for name in values:
        vocab.attribute(name)
    out = np.empty((len(rows), len(vocab.attributes)), dtype=np.int64)
    for j, (name, codes) in enumerate(vocab.attributes.items()):
        column = values.get(name)
        out[:, j] = codes.encode(np.full(len(rows), NONE, dtype=object) if column is None else text(column))
    return out


def _text_attributes(history: Frame, rows: np.ndarray) -> dict[str, np.ndarray]:
    """The pre-run attributes of ``rows`` as category text: name (unprefixed) -> cells.

    From the ``feature_*`` columns (a runs frame, as ``TelemetryStore.runs`` gives it): text as it is,
    numbers as :func:`number_text` (booleans are left out); without such columns, from a ``features`` column
    of JSON objects or dicts (the lean rows of ``TelemetryStore.ended_rows``), the same way per key.
    """
    names = [str(n) for n in column_names(history)]
    prefixed = [n for n in names if n.startswith(FEATURE_PREFIX)]
    if prefixed:
        out = {}
        for name in prefixed:
            dtype = getattr(history[name], "dtype", None)
            if dtype is None or pd.api.types.is_bool_dtype(dtype):
                continue
            values = cells(history, name, rows)
            numeric = pd.api.types.is_numeric_dtype(dtype)
            out[name[len(FEATURE_PREFIX) :]] = number_text(pd.to_numeric(values)) if numeric else values
        return out
    if "features" not in names:
        return {}
    decoded = [_decoded(v) for v in cells(history, "features", rows).tolist()]
    keys = sorted({k for d in decoded for k, v in d.items() if isinstance(v, (str, int, float))})
    return {k: _json_attribute([d.get(k) for d in decoded]) for k in keys}


def _json_attribute(values: list[Any]) -> np.ndarray:
    """One key's values across decoded ``features``: numbers only (and none) as :func:`number_text`, else text."""
    present = [v for v in values if v is not None]
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return number_text(np.asarray([np.nan if v is None else v for v in values], dtype=np.float64))
    return np.asarray(values, dtype=object)


def _decoded(value: Any) -> dict[str, Any]:
    """A ``features`` cell as a dict: JSON text decoded, anything else that is not a dict as none."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


def _widened(attrs: np.ndarray, width: int) -> np.ndarray:
    """``attrs`` with -1 (no value) columns added up to ``width``."""
    if attrs.shape[1] == width:
        return attrs
    return np.hstack([attrs, np.full((len(attrs), width - attrs.shape[1]), -1, dtype=np.int64)])


def _is_unique(values: np.ndarray) -> bool:
    """No value repeats (a set for the few rows of a live read; pandas' hash table for many)."""
    if len(values) <= 1_000:
        return len(set(values.tolist())) == len(values)
    return bool(pd.Index(values).is_unique)


def _total_order(known: np.ndarray, ref: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Positions in known-at order, then scheduled start, then run id (ids compared only on ties)."""
    order = np.lexsort((ref, known))
    k_sorted, r_sorted = known[order], ref[order]
    if len(order) > 1 and ((k_sorted[1:] == k_sorted[:-1]) & (r_sorted[1:] == r_sorted[:-1])).any():
        id_rank = np.unique(ids.astype(str), return_inverse=True)[1]
        order = np.lexsort((id_rank, ref, known))
    return order


def _run_of(run: np.ndarray, runs: pd.DataFrame | None) -> tuple[np.ndarray, np.ndarray]:
    """For each attempt's run id: the run's reference time and flow in ``runs`` (first row of that id).

    ``NAT`` and :data:`NONE` where ``runs`` does not hold the run. Only the attempts' few distinct runs are
    hashed, not the whole history.
    """
    ref = np.full(len(run), NAT, dtype=np.int64)
    flow = np.full(len(run), NONE, dtype=object)
    if runs is None or len(runs) == 0 or len(run) == 0:
        return ref, flow
    pos = first_positions(text(runs["flow_run_id"]), run)
    seen = pos >= 0
    ref[seen] = run_reference_ns(runs)[pos[seen]]
    flow[seen] = text(cells(runs, "flow_name", pos[seen]))
    return ref, flow


def _families(attempts: Frame, rows: np.ndarray, outcome: np.ndarray) -> np.ndarray:
    """Per attempt and per :data:`EXCEPTION_FAMILIES` entry: its exception is of that family."""
    out = np.zeros((len(rows), len(EXCEPTION_FAMILIES)), dtype=bool)
    if len(rows) == 0:
        return out
    exc_codes, exc_names = pd.factorize(optional_text(attempts, "exception_type", rows))
    for j, (family, pattern) in enumerate(EXCEPTION_FAMILIES.items()):
        rx = re.compile(pattern, re.IGNORECASE)
        hit = np.asarray([bool(rx.search(name)) and name != NONE for name in exc_names], dtype=bool)
        out[:, j] = hit[exc_codes] if len(exc_names) else False
        if family == "timeout":
            out[:, j] |= outcome == AttemptOutcome.TIMEOUT.value
    return out
