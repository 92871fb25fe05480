"""History snapshots: a history cache's stable part in a file, so a new process starts warm.

Prefect's process, Docker and Kubernetes workers start a Python process per flow run, so each pre-run hook
score is the first of its process: without a snapshot it reads and prepares the whole 30-day window. A
snapshot holds, per table, what a cache keeps between reads - the prepared rows that ended in
``[lo, stable_hi)`` (a :class:`~forewarn.learning.features.RunIndex`, an
:class:`~forewarn.learning.features.AttemptIndex`)
and when that range was last read in full (``loaded_at``) - so the next process reads only the rows that
ended since ``stable_hi``. The cache then checks it exactly as it checks itself: the store's count of
rows in ``[lo, stable_hi)`` must equal the snapshot's, or the window is read in full.

The file is one uncompressed ``.npz``, read with ``allow_pickle=False``: a tampered or foreign file can
never run code, and text is stored as fixed-width unicode arrays, never as objects. Arrays of one type are
stored together, because each member of an ``.npz`` costs about 0.1 ms to read. Its members:

``format``
    :data:`SNAPSHOT_FORMAT`, an int64 scalar, read first.
``header``
    text: the forewarn version that wrote it (another may prepare rows otherwise), the
    :func:`store_identity` of its store, then the names of :data:`~forewarn.learning.features.EXCEPTION_FAMILIES`
    (the columns of ``AttemptIndex.families``).
``runs.meta``, ``attempts.meta``
    int64: ``lo``, ``stable_hi`` and ``loaded_at`` (ns since the epoch, UTC), the number of rows, then
    the size of each vocabulary (runs: flows, versions, parameter sets; attempts: flows).
``runs.ids``, ``runs.int64``, ``runs.bool``, ``runs.vocab``
    the :class:`~forewarn.learning.features.RunIndex`: run ids (text), the rows of :data:`RUN_INT64` and of
    :data:`RUN_BOOL` (one row per array), and its vocabularies' names one after the other.
``runs.attr_names``, ``runs.attr_sizes``, ``runs.attr_vocab``, ``runs.attrs``
    its text pre-run attributes (format 2): their names, the size of each one's vocabulary, the
    vocabularies' names one after the other, and ``RunIndex.attrs`` transposed (one row per attribute).
``attempts.run``, ``attempts.int64``, ``attempts.bool``, ``attempts.vocab``
    the :class:`~forewarn.learning.features.AttemptIndex` likewise (:data:`ATTEMPT_INT64`, then :data:`ATTEMPT_BOOL`
    and one row per exception family).

:func:`load_snapshot` returns None - and logs why at DEBUG - for anything it cannot trust: a missing,
truncated or corrupt file, another format, forewarn version or store, a compressed member, a wrong dtype
or shape, a code outside its vocabulary, a row outside its range. A file is written to a temporary file in the same
directory and renamed over the old one (:func:`save_snapshot`), so a reader sees the old snapshot or the
new one, never half of one; when processes save at once, the last rename wins. Bump
:data:`SNAPSHOT_FORMAT` when the prepared arrays or the way rows are prepared change.

Example::

    >>> path = snapshot_file(Path("~/.cache/forewarn").expanduser(), store)  # doctest: +SKIP
    >>> save_snapshot(path, HistorySnapshot(store_identity(store), runs, attempts))  # doctest: +SKIP
    >>> load_snapshot(path, store_identity(store)).runs.stable_hi  # doctest: +SKIP
    Timestamp('2026-01-01 11:50:00+0000', tz='UTC')
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import numpy as np
import pandas as pd

from forewarn.learning.features import EXCEPTION_FAMILIES, AttemptIndex, RunIndex, RunVocabulary, Vocabulary

if TYPE_CHECKING:
    from forewarn.store import TelemetryStore

SNAPSHOT_FORMAT = 2
"""The layout of a snapshot file; a file of another format is ignored."""

logger = logging.getLogger("forewarn.snapshot")

_Part = TypeVar("_Part", RunIndex, AttemptIndex)

RUN_INT64: tuple[str, ...] = ("known", "ref", "end", "flow", "version", "params", "dur_us")
"""The int64 arrays of a :class:`~forewarn.learning.features.RunIndex`, in the order of ``runs.int64``."""
RUN_BOOL: tuple[str, ...] = ("fail", "succ", "has_dur")
"""Its boolean arrays, in the order of ``runs.bool``."""
ATTEMPT_INT64: tuple[str, ...] = ("end", "known", "flow")
"""The int64 arrays of an :class:`~forewarn.learning.features.AttemptIndex`, in the order of ``attempts.int64``."""
ATTEMPT_BOOL: tuple[str, ...] = ("failed", "own_flow")
"""Its boolean arrays, in the order of ``attempts.bool`` (its ``families`` columns follow)."""

_VOCABS = ("flows", "versions", "params")  # RunVocabulary's; its attributes are not held (see save_snapshot)
_RUN_CODES = {"flow": "flows", "version": "versions", "params": "params"}  # code array -> its vocabulary
_TIMES = 3  # lo, stable_hi, loaded_at: the first entries of a part's meta


@dataclass(frozen=True, slots=True)
class StablePart(Generic[_Part]):
    """The rows of one table a cache keeps: those that ended in ``[lo, stable_hi)``, read in full at ``loaded_at``.

    Example::

        >>> t0 = pd.Timestamp("2026-01-01", tz="UTC")
        >>> empty = RunIndex.from_frame({"flow_run_id": np.array([], dtype=object),
        ...     "flow_name": np.array([], dtype=object), "end_time": np.array([], dtype="datetime64[ns]"),
        ...     "state": np.array([], dtype=object)})
        >>> StablePart(empty, lo=t0, stable_hi=t0, loaded_at=t0).stable_hi == t0
        True
    """

    part: _Part
    lo: pd.Timestamp
    stable_hi: pd.Timestamp
    loaded_at: pd.Timestamp


@dataclass(frozen=True, slots=True)
class HistorySnapshot:
    """What a :class:`~forewarn.scoring.cache.HistoryCache` saves: its stable runs and attempts, and whose they are.

    ``identity`` is the :func:`store_identity` of the store they were read from.

    Example::

        >>> snapshot = HistorySnapshot(store_identity(store), runs, attempts)  # doctest: +SKIP
    """

    identity: str
    runs: StablePart[RunIndex]
    attempts: StablePart[AttemptIndex]


def store_identity(store: TelemetryStore) -> str:
    """A SHA-256 hex digest that names the database behind ``store`` (computed without its password).

    The URL without its password, and for a SQLite file its absolute path (so that a relative URL opened
    from two working directories names two stores, and one file reached by two spellings, one).

    Example::

        >>> from forewarn.store import TelemetryStore
        >>> store_identity(TelemetryStore("sqlite://")) == store_identity(TelemetryStore("sqlite://"))
        True
    """
    url = store.engine.url
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        name = f"sqlite:///{Path(str(url.database)).resolve()}"
    else:  # no password, in the user part or the query: a digest of one could be attacked offline
        name = url.difference_update_query(["password"]).render_as_string(hide_password=True)
    return hashlib.sha256(name.encode()).hexdigest()


def snapshot_file(directory: Path | str, store: TelemetryStore) -> Path | None:
    """The snapshot file of ``store`` in ``directory`` (named by :func:`store_identity`), or None.

    None for an in-memory SQLite store: its history dies with the process, so there is nothing to carry
    over to the next one.

    Example::

        >>> from forewarn.store import TelemetryStore
        >>> snapshot_file("/tmp/cache", TelemetryStore("sqlite://")) is None
        True
    """
    url = store.engine.url
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        return None
    return Path(directory) / f"history-{store_identity(store)[:24]}.npz"


# --------------------------------------------------------------------------------------------- writing


def save_snapshot(path: Path | str, snapshot: HistorySnapshot) -> int:
    """Write ``snapshot`` to ``path`` atomically (a temporary file renamed over it); its size in bytes.

    Creates the directory. The file is readable by its owner only (it names runs, flows and versions).
    Raises ``OSError`` when the directory or file cannot be written; the old file, if any, is then left
    as it was.

    Example::

        >>> save_snapshot(tmp_path / "history.npz", snapshot)  # doctest: +SKIP
        2591172
    """
    target = Path(path)
    runs, attempts = snapshot.runs.part, snapshot.attempts.part
    run_vocabs = [getattr(runs.vocab, name) for name in _VOCABS]
    arrays: dict[str, np.ndarray] = {
        "format": np.asarray(SNAPSHOT_FORMAT, dtype=np.int64),
        "header": _strings([_forewarn_version(), snapshot.identity, *EXCEPTION_FAMILIES]),
        "runs.meta": _meta(snapshot.runs, run_vocabs),
        "runs.ids": np.asarray(runs.ids, dtype=str),  # no copy when they came from a snapshot
        "runs.int64": np.stack([getattr(runs, name) for name in RUN_INT64]),
        "runs.bool": np.stack([getattr(runs, name) for name in RUN_BOOL]),
        "runs.vocab": _strings([name for vocab in run_vocabs for name in vocab.names]),
        "runs.attr_names": _strings(list(runs.vocab.attributes)),
        "runs.attr_sizes": np.asarray([len(v) for v in runs.vocab.attributes.values()], dtype=np.int64),
        "runs.attr_vocab": _strings([name for vocab in runs.vocab.attributes.values() for name in vocab.names]),
        "runs.attrs": np.ascontiguousarray(runs.attrs.T, dtype=np.int64),
        "attempts.meta": _meta(snapshot.attempts, [attempts.flows]),
        "attempts.run": attempts.run.astype(str),
        "attempts.int64": np.stack([getattr(attempts, name) for name in ATTEMPT_INT64]),
        "attempts.bool": np.concatenate(
            [np.stack([getattr(attempts, name) for name in ATTEMPT_BOOL]), attempts.families.T]
        ),
        "attempts.vocab": _strings(attempts.flows.names),
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            # uncompressed: loading is a copy, not a decompression; and never a pickle, even by mistake
            np.savez(fh, allow_pickle=False, **cast("dict[str, Any]", arrays))
            size = fh.tell()
        # no fsync: a snapshot is a cache; a file torn by a crash fails to load and is ignored
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return size


def _meta(stable: StablePart[Any], vocabs: list[Vocabulary]) -> np.ndarray:
    times = [stable.lo.value, stable.stable_hi.value, stable.loaded_at.value]
    return np.asarray([*times, len(stable.part), *(len(v) for v in vocabs)], dtype=np.int64)


def _strings(values: list[str]) -> np.ndarray:
    return np.asarray(values, dtype=str) if values else np.zeros(0, dtype="U1")


# --------------------------------------------------------------------------------------------- reading


def load_snapshot(path: Path | str, identity: str) -> HistorySnapshot | None:
    """The snapshot in ``path`` if this forewarn wrote it for the store ``identity`` names, else None.

    ``identity`` is the :func:`store_identity` of the store the caller reads. Nothing in the file is
    unpickled (``allow_pickle=False``); why a file was not used is logged at DEBUG. Whether the snapshot
    still matches the store, and covers the window wanted, is the caller's to check.

    Example::

        >>> load_snapshot("/nonexistent/history.npz", "0" * 64) is None
        True
    """
    try:
        with np.load(path, allow_pickle=False) as data:  # an .npy or a pickle is refused below or by numpy
            return _unpack(data, identity)
    except FileNotFoundError:
        logger.debug("no history snapshot at %s", path)
    # numpy and zipfile raise many kinds of errors on a damaged file; a snapshot only saves time, so
    # whatever it is, the file is not used
    except Exception as exc:
        logger.debug("ignoring the history snapshot %s: %s: %s", path, type(exc).__name__, exc)
    return None


def _unpack(data: Any, identity: str) -> HistorySnapshot:
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError("not an .npz file")
    if data.zip is None or any(member.compress_type != zipfile.ZIP_STORED for member in data.zip.infolist()):
        raise ValueError("compressed members (a snapshot stores them as they are: none to inflate)")
    _expect(int(_array(data, "format", np.int64, ())), SNAPSHOT_FORMAT, "format")
    header = _text(data, "header", 2 + len(EXCEPTION_FAMILIES)).tolist()
    _expect(header[0], _forewarn_version(), "forewarn version")
    _expect(header[1], identity, "store")
    _expect(header[2:], list(EXCEPTION_FAMILIES), "exception families")
    return HistorySnapshot(identity, _unpack_runs(data), _unpack_attempts(data))


def _unpack_runs(data: Any) -> StablePart[RunIndex]:
    meta, (lo, stable_hi, loaded_at) = _meta_of(data, "runs", len(_VOCABS))
    rows = int(meta[_TIMES])
    ints = _array(data, "runs.int64", np.int64, (len(RUN_INT64), rows))
    bools = _array(data, "runs.bool", np.bool_, (len(RUN_BOOL), rows))
    columns = {**dict(zip(RUN_INT64, ints, strict=True)), **dict(zip(RUN_BOOL, bools, strict=True))}
    flows, versions, params = _vocabularies(data, "runs.vocab", meta[_TIMES + 1 :])
    vocab = RunVocabulary(flows, versions, params)
    for name, vocab_name in _RUN_CODES.items():
        _check_codes(columns[name], len(getattr(vocab, vocab_name)), f"runs.{name}")
    _check_range(columns["end"], lo, stable_hi, "runs")
    # the run ids stay fixed-width text: making 12,000 str objects would be a third of the load
    attrs = _unpack_attributes(data, vocab, rows)
    runs = RunIndex(ids=_text(data, "runs.ids", rows), **columns, attrs=attrs, vocab=vocab)
    return StablePart(runs, lo, stable_hi, loaded_at)


def _unpack_attributes(data: Any, vocab: RunVocabulary, rows: int) -> np.ndarray:
    """The text pre-run attributes' codes (``RunIndex.attrs``); their vocabularies go into ``vocab``."""
    sizes = data["runs.attr_sizes"]
    sizes = _array(data, "runs.attr_sizes", np.int64, (len(sizes),))
    if (sizes < 0).any():
        raise ValueError("runs.attr_sizes holds a negative size")
    names = _text(data, "runs.attr_names", len(sizes)).tolist()
    for name, codes in zip(names, _vocabularies(data, "runs.attr_vocab", sizes), strict=True):
        vocab.attributes[str(name)] = codes
    if len(vocab.attributes) != len(names):
        raise ValueError("runs.attr_names repeats a name")
    attrs = data["runs.attrs"]
    attrs = _array(data, "runs.attrs", np.int64, (min(len(attrs), len(names)), rows))
    for j, size in enumerate(sizes[: len(attrs)].tolist()):
        if rows and not (attrs[j].min() >= -1 and attrs[j].max() < size):
            raise ValueError(f"runs.attrs holds codes outside the vocabulary of {names[j]!r}")
    return np.ascontiguousarray(attrs.T)


def _unpack_attempts(data: Any) -> StablePart[AttemptIndex]:
    meta, (lo, stable_hi, loaded_at) = _meta_of(data, "attempts", 1)
    rows = int(meta[_TIMES])
    ints = _array(data, "attempts.int64", np.int64, (len(ATTEMPT_INT64), rows))
    bools = _array(data, "attempts.bool", np.bool_, (len(ATTEMPT_BOOL) + len(EXCEPTION_FAMILIES), rows))
    columns = {**dict(zip(ATTEMPT_INT64, ints, strict=True)), **dict(zip(ATTEMPT_BOOL, bools, strict=False))}
    (flows,) = _vocabularies(data, "attempts.vocab", meta[_TIMES + 1 :])
    _check_codes(columns["flow"], len(flows), "attempts.flow")
    _check_range(columns["end"], lo, stable_hi, "attempts")
    families = np.ascontiguousarray(bools[len(ATTEMPT_BOOL) :].T)
    run = _text(data, "attempts.run", rows).astype(object)  # a few hundred: as from_frame makes them
    attempts = AttemptIndex(run=run, **columns, families=families, flows=flows)
    return StablePart(attempts, lo, stable_hi, loaded_at)


def _meta_of(data: Any, prefix: str, vocabs: int) -> tuple[np.ndarray, tuple[pd.Timestamp, pd.Timestamp, pd.Timestamp]]:
    """A part's meta and its ``(lo, stable_hi, loaded_at)``."""
    meta = _array(data, f"{prefix}.meta", np.int64, (_TIMES + 1 + vocabs,))
    if (meta[_TIMES:] < 0).any() or meta[0] > meta[1]:
        raise ValueError(f"{prefix}.meta holds a negative size, or a range that ends before it starts")
    lo, stable_hi, loaded_at = (pd.Timestamp(int(ns), tz="UTC") for ns in meta[:_TIMES])
    return meta, (lo, stable_hi, loaded_at)


def _vocabularies(data: Any, key: str, sizes: np.ndarray) -> list[Vocabulary]:
    """The vocabularies whose names ``key`` holds one after the other, ``sizes`` names each."""
    names = _text(data, key, int(sizes.sum())).tolist()
    bounds = np.concatenate([[0], np.cumsum(sizes)]).tolist()
    return [Vocabulary.from_names(names[a:b]) for a, b in itertools.pairwise(bounds)]


def _array(data: Any, key: str, dtype: type[np.generic], shape: tuple[int, ...]) -> np.ndarray:
    value = data[key]
    if value.dtype != np.dtype(dtype) or value.shape != shape:
        raise ValueError(f"{key} is {value.dtype}{value.shape}, expected {np.dtype(dtype)}{shape}")
    return value


def _text(data: Any, key: str, length: int) -> np.ndarray:
    value = data[key]
    if value.dtype.kind != "U" or value.shape != (length,):
        raise ValueError(f"{key} is {value.dtype}{value.shape}, expected {length} unicode strings")
    return value


def _check_codes(codes: np.ndarray, size: int, key: str) -> None:
    if len(codes) and not (codes.min() >= 0 and codes.max() < size):
        raise ValueError(f"{key} holds codes outside its vocabulary of {size}")


def _check_range(end: np.ndarray, lo: pd.Timestamp, stable_hi: pd.Timestamp, what: str) -> None:
    """A stable part holds exactly the rows that ended in ``[lo, stable_hi)``."""
    if len(end) and not (lo.value <= end.min() and end.max() < stable_hi.value):
        raise ValueError(f"{what} rows lie outside their range")


def _expect(found: Any, wanted: Any, what: str) -> None:
    if found != wanted:
        raise ValueError(f"another {what} ({found!r}, expected {wanted!r})")


def _forewarn_version() -> str:
    from forewarn._version import __version__

    return __version__


__all__ = [
    "ATTEMPT_BOOL",
    "ATTEMPT_INT64",
    "RUN_BOOL",
    "RUN_INT64",
    "SNAPSHOT_FORMAT",
    "HistorySnapshot",
    "StablePart",
    "load_snapshot",
    "save_snapshot",
    "snapshot_file",
    "store_identity",
]
