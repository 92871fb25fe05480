"""Scoring flow runs for failure risk: the Prefect-free core of the pre-run hook and the forecast.

:func:`score_runs` describes each target run with :func:`forewarn.learning.features.build_features` - the same code
that builds the training and backtest tables - from the history in the telemetry store that was known at
the run's **cutoff**, then asks the current model (:func:`load_current_model`) for its risk and its top
reasons. The cutoff of a run scheduled at ``s`` and scored at ``now`` is ``min(s, now)``:

* scored at or after its scheduled start (the pre-run hook; a late start): the cutoff is ``s``, exactly
  as in training and in the backtest, so the live score equals the backtest score for the same history
  (``tests/test_scoring.py`` checks this to 1e-12);
* scored ahead of it (the forecast): the cutoff is ``now``, because nothing later is known yet; the run
  is described with ``lead = s - now``.

Only the history the features can see is read: runs that ended in :func:`forewarn.learning.features.history_window`
and task attempts that ended in its last ``global_window``, through the lean
:meth:`~forewarn.store.telemetry.TelemetryStore.ended_rows` query, and prepared once as a
:class:`~forewarn.learning.features.RunIndex` and an :class:`~forewarn.learning.features.AttemptIndex`.
A long-lived process
(a worker serving many runs, the forecast) keeps them in a :class:`HistoryCache`, which reads and prepares
only the rows that ended since its last read and extends the indexes with them ("warm" scoring); the first
score of a process pays the window read ("cold") - unless the process-wide cache (:func:`history_cache`)
finds the history snapshot an earlier process saved in ``FOREWARN_CACHE_DIR`` (:mod:`forewarn.scoring.snapshot`),
as in a Prefect worker that starts a process per flow run. ``docs/warnings.md`` has the latency figures.

Example::

    >>> loaded = load_current_model("models")  # doctest: +SKIP
    >>> if loaded is not None:  # doctest: +SKIP
    ...     model, manifest = loaded
    ...     table = score_runs(store, upcoming, model, manifest, now=datetime.now(timezone.utc))
    ...     table[["flow_run_id", "risk", "warned", "reasons"]]
"""

from __future__ import annotations

import json
import logging
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np
import pandas as pd

from forewarn.errors import FeatureSchemaError, StoreError
from forewarn.learning.features import (
    CATEGORICAL_FEATURES,
    NONE,
    NUMERIC_FEATURES,
    AttemptIndex,
    FeatureConfig,
    RunIndex,
    build_features,
    cutoff_window,
    reference_times,
)
from forewarn.learning.model import LATEST_FILE, MANIFEST_FILE, FailureWarningModel, ModelManifest, load_model
from forewarn.records import FEATURE_PREFIX
from forewarn.scoring.snapshot import (
    HistorySnapshot,
    StablePart,
    load_snapshot,
    save_snapshot,
    snapshot_file,
    store_identity,
)

if TYPE_CHECKING:
    from forewarn.records import FlowRunRecord
    from forewarn.store import TelemetryStore

SCORE_COLUMNS: tuple[str, ...] = (
    "flow_run_id",
    "flow_name",
    "deployment",
    "scheduled_start",
    "lead_seconds",
    "risk",
    "threshold",
    "warned",
    "reasons",
    "model_version",
)
"""Columns of :func:`score_runs`' table, in order."""

TOP_REASONS = 3
"""How many reasons :func:`score_runs` gives per run."""

_TRIM_SLACK = pd.Timedelta(hours=1)
"""A cached window keeps this much history before its latest start, for runs scored a little late."""

_Part = TypeVar("_Part", RunIndex, AttemptIndex)
logger = logging.getLogger("forewarn.scoring")
_UTC_NS = pd.DatetimeTZDtype("ns", "UTC")

_ENGINEERED = {**dict.fromkeys(NUMERIC_FEATURES, "numeric"), **dict.fromkeys(CATEGORICAL_FEATURES, "categorical")}


# --------------------------------------------------------------------------------------------- the model


@dataclass(frozen=True, slots=True)
class _Loaded:
    manifest_path: str
    sha256: str
    model: FailureWarningModel
    manifest: ModelManifest


_models: dict[str, _Loaded] = {}
_models_lock = threading.Lock()


def current_manifest_path(model_dir: Path | str) -> Path | None:
    """The ``manifest.json`` of the model installed in ``model_dir``, or None when none is installed.

    ``model_dir`` holds ``latest.json`` (written by :func:`forewarn.learning.model.save_model`) or is itself one
    version directory with a ``manifest.json``. A ``latest.json`` that cannot be read is returned as it is,
    so that :func:`forewarn.learning.model.load_model` explains what is wrong with it.

    Example::

        >>> current_manifest_path("/nonexistent/models") is None
        True
    """
    directory = Path(model_dir)
    pointer = directory / LATEST_FILE
    if pointer.is_file():
        try:
            return directory / str(json.loads(pointer.read_text())["manifest"])
        except (OSError, ValueError, KeyError, TypeError):
            return pointer
    manifest = directory / MANIFEST_FILE
    return manifest if manifest.is_file() else None


def _manifest_sha256(path: Path) -> str | None:
    try:
        return str(json.loads(path.read_text())["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_feature_schema(manifest: ModelManifest) -> None:
    """Refuse a model trained on features this forewarn does not build (before it is unpickled).

    Every feature of the model must be one :func:`~forewarn.learning.features.build_features` makes, with the same
    type, or a ``feature_*`` attribute (a run that lacks one is scored with it missing).
    Raises :class:`~forewarn.errors.FeatureSchemaError`.

    Example::

        >>> from forewarn.learning.model import ModelManifest
        >>> check_feature_schema(manifest)  # doctest: +SKIP
    """
    unknown = [n for n in manifest.feature_types if n not in _ENGINEERED and not n.startswith(FEATURE_PREFIX)]
    changed = [
        f"{n} ({_ENGINEERED[n]} here, {kind} in the model)"
        for n, kind in manifest.feature_types.items()
        if n in _ENGINEERED and _ENGINEERED[n] != kind
    ]
    if unknown or changed:
        parts = ([f"unknown: {', '.join(unknown)}"] if unknown else []) + (
            [f"changed: {', '.join(changed)}"] if changed else []
        )
        raise FeatureSchemaError(
            f"model {manifest.version} was trained on features this forewarn does not build "
            f"({'; '.join(parts)}); retrain it with `forewarn train`"
        )


def load_current_model(model_dir: Path | str | None = None) -> tuple[FailureWarningModel, ModelManifest] | None:
    """The model installed in ``model_dir`` (default ``FOREWARN_MODEL_DIR``) and its manifest, or None.

    None means no model is installed (no ``latest.json``/``manifest.json``). A model is loaded - its
    SHA-256 verified before it is unpickled - once per process and version: the result is cached by
    directory, manifest path and checksum, so a newly trained model is picked up at the next call while
    scoring the same model again costs two small JSON reads. Raises
    :class:`~forewarn.errors.ModelError` for a broken pointer or manifest,
    :class:`~forewarn.errors.ChecksumMismatchError` for an artifact changed since it was saved, and
    :class:`~forewarn.errors.FeatureSchemaError` for a model trained on features this forewarn does not
    build (see :func:`check_feature_schema`).

    Example::

        >>> load_current_model("/nonexistent/models") is None
        True
    """
    if model_dir is None:
        from forewarn.settings import get_settings

        model_dir = get_settings().model_dir
    directory = Path(model_dir)
    path = current_manifest_path(directory)
    if path is None:
        return None
    key, sha = str(directory.resolve()), _manifest_sha256(path)
    cached = _models.get(key)
    if cached is not None and sha is not None and (cached.manifest_path, cached.sha256) == (str(path), sha):
        return cached.model, cached.manifest
    if sha is not None:  # a readable manifest: check the features before anything is unpickled
        try:
            early: ModelManifest | None = ModelManifest.from_json(path.read_text())
        except (OSError, ValueError, KeyError, TypeError, AssertionError):
            early = None  # load_model below explains what is wrong with it
        if early is not None:
            check_feature_schema(early)
    model, manifest = load_model(path)
    check_feature_schema(manifest)
    with _models_lock:
        _models[key] = _Loaded(str(path), manifest.sha256, model, manifest)
    return model, manifest


def clear_model_cache() -> None:
    """Forget every loaded model (tests; a process that must re-verify its model files)."""
    with _models_lock:
        _models.clear()


def feature_config_of(manifest: ModelManifest) -> FeatureConfig:
    """The :class:`~forewarn.learning.features.FeatureConfig` a model was trained with (its manifest's ``extra``).

    ``manifest.extra["feature_config"]`` may hold ``lookback_seconds``, ``recent_runs``,
    ``global_window_seconds`` and ``prior_strength``; absent values take the defaults.

    Example::

        >>> from types import SimpleNamespace
        >>> feature_config_of(SimpleNamespace(extra={"feature_config": {"recent_runs": 20}})).recent_runs
        20
    """
    return FeatureConfig.from_dict((manifest.extra or {}).get("feature_config"))


def feature_config_dict(config: FeatureConfig) -> dict[str, float | int]:
    """What to store as ``extra["feature_config"]`` in a manifest (the inverse of :func:`feature_config_of`).

    Example::

        >>> feature_config_dict(FeatureConfig())["recent_runs"]
        10
    """
    return config.to_dict()


# ----------------------------------------------------------------------------------------- the history


def _ts(value: datetime | pd.Timestamp) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    if ts.tzinfo is None:
        raise ValueError(f"{value!r} is a naive time: pass a timezone-aware UTC time")
    return ts.tz_convert("UTC")


class _EndTimeCache(Generic[_Part]):
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
        if fresh and since - self._lo > 2 * _TRIM_SLACK:  # the window moved on: drop what it left behind
            assert self._stable is not None
            self._lo = since - _TRIM_SLACK
            self._stable = self._stable.take(self._stable.end >= self._lo.value)
            self._last = None
        if not fresh:
            return self._read_all(since, now)
        assert self._stable is not None
        columns = self._read(self._stable_hi.to_pydatetime())
        self.tail_reads += 1
        if self._count(self._lo.to_pydatetime(), self._stable_hi.to_pydatetime()) != len(self._stable):
            # rows were written, removed or re-ended behind the cache (an import, a retried run)
            return self._read_all(since, now)
        boundary = now - self._grace
        ids, ends = columns["flow_run_id"], columns["end_time"].view(np.int64)
        signature = (tuple(ids.tolist()), tuple(ends.tolist()))
        if boundary <= self._stable_hi and self._last is not None and self._last[0] == signature:
            return self._last[1]  # nothing ended since the last read: the same history
        tail = self._prepare(columns, self._stable)
        if boundary > self._stable_hi:  # rows that ended long enough ago are final: they become stable
            final = tail.end < boundary.value
            self._stable = self._merge(self._stable, tail.take(final))
            self.settled += int(final.sum())
            tail = tail.take(~final)
            self._stable_hi = boundary
            later = ends >= boundary.value  # the rows the next read returns again, as it returns them
            signature = (tuple(ids[later].tolist()), tuple(ends[later].tolist()))
        combined = self._merge(self._stable, tail)
        self._last = (signature, combined)
        return combined

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
        self._runs: _EndTimeCache[RunIndex] = _EndTimeCache(
            lambda since: self.store.ended_rows("flow_runs", since),
            lambda a, b: self.store.count_ended("flow_runs", a, b),
            _prepare_runs,
            _ended_again,
            grace,
            max_age,
        )
        self._attempts: _EndTimeCache[AttemptIndex] = _EndTimeCache(
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
        now_ts, since_ts, attempts_ts = _ts(now), _ts(since), _ts(attempts_since)
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


# ------------------------------------------------------------------------------------------- scoring


def _target_frame(targets: pd.DataFrame, manifest: ModelManifest) -> pd.DataFrame:
    """``targets`` ready for build_features (changed columns copied); feature_* columns it lacks added, missing."""
    missing = [c for c in ("flow_run_id", "flow_name") if c not in targets.columns]
    if missing or ("scheduled_start" not in targets.columns and "start_time" not in targets.columns):
        raise FeatureSchemaError(
            f"targets lack column(s) {', '.join(missing) or 'scheduled_start'}: score_runs needs flow_run_id, "
            "flow_name and scheduled_start (or start_time) per run"
        )
    frame = (
        targets
        if isinstance(targets.index, pd.RangeIndex) and targets.index.start == 0
        else targets.reset_index(drop=True)
    )
    ids = frame["flow_run_id"].to_numpy(dtype=object)
    columns: dict[str, Any] = {}
    if not all(type(v) is str for v in ids.tolist()):  # an id may come as a UUID or a number
        ids = columns["flow_run_id"] = np.asarray([str(v) for v in ids.tolist()], dtype=object)
    if len(set(ids.tolist())) != len(ids):
        dup = pd.Series(ids).loc[lambda s: s.duplicated()].iloc[0]
        raise ValueError(f"targets repeat flow_run_id {dup!r}: score each run once per call")
    for name in ("scheduled_start", "start_time"):
        if name in frame.columns and frame[name].dtype != _UTC_NS:
            columns[name] = pd.to_datetime(frame[name], utc=True).astype(_UTC_NS)
    for name, kind in manifest.feature_types.items():
        if name.startswith(FEATURE_PREFIX) and name not in frame.columns:
            # a live run may lack an attribute the training history had: it is scored as missing
            columns[name] = np.full(len(frame), np.nan) if kind == "numeric" else np.full(len(frame), NONE, object)
    return frame.assign(**columns) if columns else frame  # only what differs is copied (~0.3 ms a column)


def _for_model(X: pd.DataFrame, model: FailureWarningModel) -> pd.DataFrame:
    """``X`` in the dtypes the model was trained on; coerced only when a column differs (rare, ~1 ms)."""
    spec = model.feature_spec_
    missing = [c for c in spec.names if c not in X.columns]
    if missing:
        raise FeatureSchemaError(
            f"the features lack {', '.join(missing)} that the model was trained on; retrain it with `forewarn train`"
        )
    dtypes = dict(zip(X.columns, X.dtypes.tolist(), strict=True))
    numeric_ok = all(dtypes[c] == np.float64 for c in spec.numeric)
    categorical_ok = all(dtypes[c] == np.dtype(object) for c in spec.categorical)
    return X if numeric_ok and categorical_ok else spec.coerce(X)


def score_runs(
    store: TelemetryStore,
    targets: pd.DataFrame,
    model: FailureWarningModel,
    manifest: ModelManifest,
    *,
    now: datetime,
    config: FeatureConfig | None = None,
    cache: HistoryCache | bool = True,
    top: int = TOP_REASONS,
) -> pd.DataFrame:
    """Score each target run for failure risk with what was known at its cutoff ``min(scheduled_start, now)``.

    ``targets`` is a runs frame (``flow_run_id``, ``flow_name``, ``scheduled_start`` or ``start_time``,
    and optionally ``deployment``, ``parameters``, ``parameters_hash``, ``flow_version``, ``feature_*``).
    The features come from :func:`~forewarn.learning.features.build_features` over the runs that ended in the
    store inside :func:`~forewarn.learning.features.history_window` of the cutoffs and the attempts of its last
    ``global_window``; a ``feature_*`` attribute the model knows but a target lacks is scored as missing.
    ``cache=True`` reads the window through the process's :class:`HistoryCache` of ``store`` (warm after
    the first call), ``False`` reads it afresh, or pass a cache. ``config`` defaults to the model's
    (:func:`feature_config_of`).

    Returns one row per target, in order, with :data:`SCORE_COLUMNS`: ``lead_seconds`` is
    ``scheduled_start - now`` (negative for a run scored after its scheduled start), ``warned`` is
    ``risk >= threshold`` (the model's ``threshold_``), ``reasons`` the ``top`` reasons of
    :meth:`~forewarn.learning.model.FailureWarningModel.explain` as sentences for a warned run, and an empty list
    for a run below the threshold (only warned runs are explained, so a quiet run's predictions row
    carries no reasons). Raises
    :class:`~forewarn.errors.FeatureSchemaError` when the model needs features that cannot be built and
    :class:`~forewarn.errors.StoreError` when the store cannot be read.

    Example::

        >>> table = score_runs(store, upcoming, model, manifest, now=now)  # doctest: +SKIP
        >>> table.loc[table["warned"], ["flow_run_id", "risk", "reasons"]]  # doctest: +SKIP
    """
    now_ts = _ts(now)
    frame = _target_frame(targets, manifest)
    if frame.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in SCORE_COLUMNS})
    config = config or feature_config_of(manifest)
    ref = reference_times(frame)
    cutoff = np.minimum(ref, now_ts.value)
    lead = ref - cutoff
    since, until = cutoff_window(cutoff, config)
    attempts_since = since + pd.Timedelta(config.lookback)
    if cache is False:
        runs, attempts = read_history(
            store, since.to_pydatetime(), attempts_since.to_pydatetime(), until.to_pydatetime()
        )
    else:
        reader = history_cache(store) if cache is True else cache
        runs, attempts = reader.read(since.to_pydatetime(), attempts_since.to_pydatetime(), now=now_ts)

    parts, leads = [], np.unique(lead)
    for value in leads:
        part = frame if len(leads) == 1 else frame.iloc[np.flatnonzero(lead == value)]
        parts.append(build_features(part, runs, attempts, lead=pd.Timedelta(int(value)), config=config))
    X = parts[0] if len(parts) == 1 else pd.concat(parts).reindex(pd.Index(frame["flow_run_id"], name="flow_run_id"))
    X = _for_model(X, model)
    risk = np.asarray(model.risk(X), dtype=np.float64)
    threshold = float(model.threshold_)
    warned = risk >= threshold
    # only a warned run is explained: a run below the threshold gets no reasons (explain costs ~5 ms a row)
    reasons: list[list[str]] = [
        [r.text for r in model.explain(X.iloc[[i]], top=top)] if warned[i] else [] for i in range(len(X))
    ]
    deployment = frame["deployment"].to_numpy(dtype=object) if "deployment" in frame.columns else None
    table = {
        "flow_run_id": frame["flow_run_id"].to_numpy(dtype=object),
        "flow_name": frame["flow_name"].to_numpy(dtype=object),
        "deployment": np.full(len(frame), None, dtype=object) if deployment is None else _none_for_missing(deployment),
        "scheduled_start": pd.DatetimeIndex(ref.view("datetime64[ns]")).tz_localize("UTC"),
        "lead_seconds": (ref - now_ts.value) / 1e9,
        "risk": risk,
        "threshold": np.full(len(frame), threshold),
        "warned": warned,
        "reasons": _object_array(reasons),
        "model_version": np.full(len(frame), manifest.version, dtype=object),
    }
    return pd.DataFrame(table, columns=list(SCORE_COLUMNS))


def _none_for_missing(values: np.ndarray) -> np.ndarray:
    """``values`` with every missing cell (NaN, NaT, pd.NA) as ``None``."""
    missing = pd.isna(values)
    if missing.any():
        values = values.copy()
        values[missing] = None
    return values


def _object_array(items: list[Any]) -> np.ndarray:
    """A 1-d object array of ``items`` (lists stay cells; numpy would make a 2-d array of equal lists)."""
    out = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        out[i] = item
    return out


def record_targets(records: Sequence[FlowRunRecord]) -> pd.DataFrame:
    """Flow run records (e.g. the run starting now) as the targets frame :func:`score_runs` takes.

    A record's ``features`` become ``feature_<name>`` columns.

    Example::

        >>> from datetime import datetime, timezone
        >>> from forewarn.records import FlowRunRecord
        >>> t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
        >>> frame = record_targets([FlowRunRecord("r1", "etl", t0, scheduled_start=t0, features={"rows": 5})])
        >>> frame[["flow_run_id", "feature_rows"]].to_dict("records")
        [{'flow_run_id': 'r1', 'feature_rows': 5}]
    """
    rows = []
    for rec in records:
        row: dict[str, Any] = {
            "flow_run_id": rec.flow_run_id,
            "flow_name": rec.flow_name,
            "deployment": rec.deployment,
            "parameters": dict(rec.parameters or {}),
            "parameters_hash": rec.parameters_hash,
            "flow_version": rec.flow_version,
            "scheduled_start": rec.scheduled_start,
            "start_time": rec.start_time,
            "state": getattr(rec.state, "value", rec.state),
        }
        for name, value in (getattr(rec, "features", None) or {}).items():
            row[FEATURE_PREFIX + str(name)] = value
        rows.append(row)
    frame = pd.DataFrame(rows)
    for name in ("scheduled_start", "start_time"):
        if name in frame.columns:
            frame[name] = pd.to_datetime(frame[name], utc=True).astype("datetime64[ns, UTC]")
    for name in ("flow_run_id", "flow_name", "deployment", "parameters_hash", "flow_version", "state"):
        if name in frame.columns:
            frame[name] = frame[name].astype(object)
    return frame


def prediction_records(table: pd.DataFrame, *, source: str, predicted_at: datetime) -> list[Any]:
    """One :class:`~forewarn.records.PredictionRecord` per row of a :func:`score_runs` table.

    Example::

        >>> store.record_predictions(prediction_records(table, source="forecast", predicted_at=now))  # doctest: +SKIP
    """
    from forewarn.records import PredictionRecord

    records = []
    for row in table.itertuples(index=False):
        scheduled = None if pd.isna(row.scheduled_start) else pd.Timestamp(row.scheduled_start).to_pydatetime()
        records.append(
            PredictionRecord(
                flow_run_id=str(row.flow_run_id),
                flow_name=str(row.flow_name),
                predicted_at=predicted_at,
                risk=float(row.risk),
                threshold=float(row.threshold),
                model_version=str(row.model_version),
                scheduled_start=scheduled,
                deployment=None if row.deployment is None or pd.isna(row.deployment) else str(row.deployment),
                reasons=tuple(row.reasons),
                source=source,
            )
        )
    return records


__all__ = [
    "SCORE_COLUMNS",
    "TOP_REASONS",
    "HistoryCache",
    "check_feature_schema",
    "clear_history_caches",
    "clear_model_cache",
    "current_manifest_path",
    "feature_config_dict",
    "feature_config_of",
    "history_cache",
    "load_current_model",
    "prediction_records",
    "read_history",
    "record_targets",
    "score_runs",
]
