"""Leakage-free features that describe a flow run before it starts, from the history known at that moment.

For each target run the **cutoff** is ``scheduled_start - lead`` (``start_time`` when there is no scheduled
start). A history row is *known* at its ``end_time`` -- or at its own scheduled start if it ended before it
was scheduled, so a run can never see itself -- and only rows known strictly before the cutoff, and no
earlier than ``cutoff - lookback``, influence the target's features. Runs still going at the cutoff,
later runs, and the target's own ``end_time``/``state``/``start_time`` never do. Task attempts count from
their own ``end_time`` (again never before their run's scheduled start). The same rules hold whether one
run is described alone (live scoring) or 400,000 at once (backtests), and the two give identical values.

Everything is vectorised: history rows are sorted once by ``(flow, known-at time)``, each target finds its
windows with :func:`numpy.searchsorted` on composite keys, and counts come from cumulative sums. The
feature list, and why each one should hold for real schedulers, is in ``docs/features.md``.

Example::

    >>> from forewarn.history.simulate import simulate_history, history_to_runs_frame
    >>> runs = history_to_runs_frame(simulate_history(3_000, seed=0))
    >>> X = build_features(runs)
    >>> X.index.name, len(X) == len(runs)
    ('flow_run_id', True)
    >>> spec = feature_spec(X)
    >>> BASELINE_LAST_FAILED in spec.numeric, "flow_name" in spec.categorical
    (True, True)
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, ClassVar, Self, TypeAlias, cast

import numpy as np
import pandas as pd

from forewarn.errors import ConfigurationError, FeatureSchemaError
from forewarn.records import (
    FAILED_ATTEMPT_OUTCOMES,
    FAILURE_STATES,
    FEATURE_PREFIX,
    AttemptOutcome,
    RunState,
    parameters_hash,
)

NONE = "<none>"
"""The category that stands for a missing text value."""

BASELINE_LAST_FAILED = "flow_last_ended_failed"
"""0/1 feature: the flow's last ended run with an outcome (``CANCELLED`` skipped) failed."""

BASELINE_SMOOTHED_RATE = "flow_failure_rate_smoothed"
"""The flow's past failure rate in the lookback, smoothed toward the global rate."""

CATEGORICAL_FEATURES: tuple[str, ...] = ("flow_name", "deployment")
"""Engineered categorical features; text ``feature_*`` columns are added after them."""

NUMERIC_FEATURES: tuple[str, ...] = (
    "hour_sin",
    "hour_cos",
    "dow_sin",
    "dow_cos",
    "hour_of_week",
    "days_to_month_end",
    "parameter_count",
    "parameters_changed",
    "parameters_runs_seen",
    "flow_runs_seen",
    BASELINE_SMOOTHED_RATE,
    "flow_failure_rate_recent",
    "flow_failure_streak",
    "flow_success_streak",
    BASELINE_LAST_FAILED,
    "flow_hours_since_failure",
    "flow_duration_trend",
    "version_changed",
    "version_runs_seen",
    "version_failure_rate_smoothed",
    "global_failure_rate",
    "global_failure_rate_window",
    "other_flows_failures_window",
    "partner_failures_window",
    "attempts_failed_window",
    "flow_attempts_failed_window",
    "attempts_timeout_window",
    "attempts_connection_window",
    "attempts_resource_window",
)
"""Engineered numeric features, in output order; numeric ``feature_*`` columns are added after them."""

EXCEPTION_FAMILIES: dict[str, str] = {
    "timeout": r"timeout|timed.?out|deadline",
    "connection": r"connect|network|socket|unreachable|refused|reset|dns|unavailable|broken.?pipe|http",
    "resource": r"memory|oom|disk|quota|resource|space|killed",
}
"""Regular expressions (case-insensitive, on ``exception_type``) for the exception families counted."""

SUCCESS_STATE = RunState.COMPLETED.value
_FAILED_OUTCOMES = sorted(FAILED_ATTEMPT_OUTCOMES)
_NAT = np.iinfo(np.int64).min
_HOUR = 3600 * 10**9
_DAY = 24 * _HOUR
_PAIR_CHUNK = 4_000_000  # (target, window failure) pairs expanded at once; bounds memory, not results


@dataclass(frozen=True, slots=True)
class FeatureConfig:
    """How far back the features look. Immutable; make a new one to change a value.

    Example::

        >>> FeatureConfig(recent_runs=20).lookback
        datetime.timedelta(days=30)
    """

    lookback: timedelta = timedelta(days=30)
    """History known earlier than ``cutoff - lookback`` is ignored."""
    recent_runs: int = 10
    """Window (in ended runs) for the recent failure rate and the duration trend; caps the run counts."""
    global_window: timedelta = timedelta(hours=6)
    """Window for cross-flow and task-attempt signals; at most ``lookback``."""
    prior_strength: float = 5.0
    """Pseudo-runs pulling a flow's failure rate toward the global rate (0 = no smoothing)."""

    def __post_init__(self) -> None:
        if not isinstance(self.lookback, timedelta) or self.lookback <= timedelta(0):
            raise ConfigurationError("lookback", self.lookback, "a positive timedelta, e.g. timedelta(days=30)")
        recent = self.recent_runs
        if isinstance(recent, bool) or not isinstance(recent, int) or recent < 1:
            raise ConfigurationError("recent_runs", self.recent_runs, "a whole number >= 1, e.g. 10")
        window = self.global_window
        if not isinstance(window, timedelta) or not timedelta(0) < window <= self.lookback:
            raise ConfigurationError(
                "global_window",
                self.global_window,
                f"a positive timedelta <= lookback ({self.lookback}), e.g. timedelta(hours=6)",
            )
        if not np.isfinite(self.prior_strength) or self.prior_strength < 0:
            raise ConfigurationError("prior_strength", self.prior_strength, "a number >= 0, e.g. 5.0")

    def to_dict(self) -> dict[str, float | int]:
        """JSON-ready form, stored in a model manifest so live scoring uses the windows training used.

        Example::

            >>> FeatureConfig.from_dict(FeatureConfig(recent_runs=20).to_dict()).recent_runs
            20
        """
        return {
            "lookback_seconds": self.lookback.total_seconds(),
            "recent_runs": self.recent_runs,
            "global_window_seconds": self.global_window.total_seconds(),
            "prior_strength": self.prior_strength,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> FeatureConfig:
        """The inverse of :meth:`to_dict`; absent values take the defaults (manifests written before it)."""
        data = data or {}
        default = cls()
        return cls(
            lookback=timedelta(seconds=float(data.get("lookback_seconds", default.lookback.total_seconds()))),
            recent_runs=int(data.get("recent_runs", default.recent_runs)),
            global_window=timedelta(
                seconds=float(data.get("global_window_seconds", default.global_window.total_seconds()))
            ),
            prior_strength=float(data.get("prior_strength", default.prior_strength)),
        )


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """Which feature columns are numeric and which categorical; ``names`` is numeric then categorical.

    Save it with a model (:meth:`as_dict`) and use :meth:`coerce` to hand a scoring frame to it in the same
    shape and types, whatever dtypes the frame came with.

    Example::

        >>> spec = FeatureSpec(numeric=("a",), categorical=("c",))
        >>> spec.names
        ('a', 'c')
        >>> X = spec.coerce(pd.DataFrame({"c": [None], "a": ["1.5"], "unused": [0]}))
        >>> X.to_dict("list")
        {'a': [1.5], 'c': ['<none>']}
    """

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """All feature names: the numeric ones, then the categorical ones."""
        return self.numeric + self.categorical

    def as_dict(self) -> dict[str, list[str]]:
        """A JSON-ready form, for a model manifest."""
        return {"numeric": list(self.numeric), "categorical": list(self.categorical)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        """The inverse of :meth:`as_dict`."""
        return cls(numeric=tuple(data["numeric"]), categorical=tuple(data["categorical"]))

    def coerce(self, features: pd.DataFrame) -> pd.DataFrame:
        """``features`` reduced to :attr:`names`: numeric as float64, categorical as text with ``<none>``.

        Raises :class:`~forewarn.errors.FeatureSchemaError` naming the columns that are missing.
        """
        missing = [c for c in self.names if c not in features.columns]
        if missing:
            raise FeatureSchemaError(
                f"the features lack column(s) {', '.join(missing)} that the model was trained on; build them "
                "with forewarn.learning.features.build_features using the same feature_* columns as in training"
            )
        out = {c: pd.to_numeric(features[c], errors="coerce").astype(np.float64) for c in self.numeric}
        for c in self.categorical:
            out[c] = pd.Series(_text(features[c]), index=features.index, dtype=object)
        return pd.DataFrame(out, index=features.index, columns=list(self.names))


def feature_spec(features: pd.DataFrame) -> FeatureSpec:
    """The :class:`FeatureSpec` of a frame made by :func:`build_features`: numeric dtypes are numeric.

    Example::

        >>> feature_spec(pd.DataFrame({"x": [1.0], "flow_name": ["etl"]}))
        FeatureSpec(numeric=('x',), categorical=('flow_name',))
    """
    numeric, categorical = [], []
    for name in features.columns:
        dtype = features[name].dtype
        if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
            numeric.append(str(name))
        else:
            categorical.append(str(name))
    return FeatureSpec(numeric=tuple(numeric), categorical=tuple(categorical))


def failure_labels(runs: pd.DataFrame) -> pd.Series:
    """1.0 for failed runs (``FAILED``/``CRASHED``/``TIMEDOUT``), 0.0 for ``COMPLETED``, NaN otherwise.

    Indexed by ``flow_run_id``, named ``failed``.

    Example::

        >>> runs = pd.DataFrame({"flow_run_id": ["a", "b", "c"],
        ...                      "state": ["completed", "CRASHED", "CANCELLED"]})
        >>> failure_labels(runs).tolist()
        [0.0, 1.0, nan]
    """
    _require(runs, ("flow_run_id", "state"), "runs")
    state = _upper(runs["state"])
    out = np.full(len(runs), np.nan)
    out[np.isin(state, list(FAILURE_STATES))] = 1.0
    out[state == SUCCESS_STATE] = 0.0
    return pd.Series(out, index=pd.Index(_text(runs["flow_run_id"]), name="flow_run_id", dtype=object), name="failed")


def history_window(
    targets: pd.DataFrame, *, lead: timedelta = timedelta(0), config: FeatureConfig = FeatureConfig()
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The ``[start, end)`` range of ``end_time`` a history must cover to describe ``targets`` exactly.

    Loading every run (of every flow) that ended in this range, and every task attempt that ended in
    ``[start + lookback, end)`` (with a ``flow_name`` column, since their runs may still be running), gives
    the same features as the full history. ``start`` is the earliest cutoff minus ``lookback`` minus
    ``global_window`` (co-failure partners look one window further back); ``end`` is the latest cutoff.

    Example::

        >>> t = pd.DataFrame({"flow_run_id": ["r"], "flow_name": ["etl"],
        ...                   "scheduled_start": [pd.Timestamp("2026-02-01", tz="UTC")]})
        >>> cfg = FeatureConfig(lookback=timedelta(days=1), global_window=timedelta(hours=1))
        >>> history_window(t, config=cfg)
        (Timestamp('2026-01-30 23:00:00+0000', tz='UTC'), Timestamp('2026-02-01 00:00:00+0000', tz='UTC'))
    """
    _, ref = _target_times(targets)
    return cutoff_window(ref - _lead_ns(lead), config)


def cutoff_window(cutoffs: np.ndarray, config: FeatureConfig = FeatureConfig()) -> tuple[pd.Timestamp, pd.Timestamp]:
    """:func:`history_window` for cutoffs already known (int64 ns since the epoch, UTC).

    Example::

        >>> cfg = FeatureConfig(lookback=timedelta(days=1), global_window=timedelta(hours=1))
        >>> cutoff_window(np.array([pd.Timestamp("2026-02-01", tz="UTC").value]), cfg)[0]
        Timestamp('2026-01-30 23:00:00+0000', tz='UTC')
    """
    span = _td_ns(config.lookback) + _td_ns(config.global_window)
    return pd.Timestamp(int(cutoffs.min()) - span, tz="UTC"), pd.Timestamp(int(cutoffs.max()), tz="UTC")


# --- input normalisation -------------------------------------------------------------------------------


Frame: TypeAlias = pd.DataFrame | Mapping[str, np.ndarray]
"""A runs or attempts table: a DataFrame, or numpy columns by name (what a store's lean read gives)."""


def _names(frame: Frame) -> Any:
    return frame.columns if isinstance(frame, pd.DataFrame) else frame.keys()


def _nrows(frame: Frame) -> int:
    if isinstance(frame, pd.DataFrame):
        return len(frame)
    return len(next(iter(frame.values()))) if len(frame) else 0


def _require(frame: Frame, columns: tuple[str, ...], what: str) -> None:
    names = _names(frame)
    missing = [c for c in columns if c not in names]
    if missing:
        raise FeatureSchemaError(
            f"{what} lack column(s) {', '.join(missing)}; a runs frame has flow_run_id, flow_name, "
            "scheduled_start, start_time, end_time, state (see forewarn.history.simulate.history_to_runs_frame)"
        )


def _td_ns(value: timedelta) -> int:
    return int(pd.Timedelta(value).value)


def _lead_ns(lead: timedelta) -> int:
    if not isinstance(lead, timedelta) or lead < timedelta(0):
        raise ConfigurationError("lead", lead, "a timedelta >= 0, e.g. lead=timedelta(minutes=30)")
    return _td_ns(lead)


def _ns(frame: Frame, name: str) -> np.ndarray:
    """A time column as int64 nanoseconds since the epoch (UTC); NaT and absent columns give ``_NAT``."""
    if name not in _names(frame):
        return np.full(_nrows(frame), _NAT, dtype=np.int64)
    col = frame[name]
    if isinstance(col, np.ndarray):
        if col.dtype.kind == "M":  # numpy datetimes (a store's lean read): naive UTC
            return np.asarray(col.astype("datetime64[ns]").view(np.int64))
        col = pd.Series(col)
    if isinstance(col.dtype, pd.DatetimeTZDtype) and col.dtype.unit == "ns":  # the usual case: no conversion
        return np.asarray(col.array.asi8, dtype=np.int64)
    if not isinstance(col.dtype, pd.DatetimeTZDtype):
        if pd.api.types.is_datetime64_dtype(col.dtype):
            col = col.dt.tz_localize("UTC")  # naive times are read as UTC
        else:
            col = pd.to_datetime(col, utc=True, format="ISO8601")
    return np.asarray(col.dt.as_unit("ns").array.asi8, dtype=np.int64)


def _values(frame: Frame, name: str, rows: np.ndarray | None = None) -> np.ndarray:
    """The cells of one column (only ``rows``, if given) as a numpy object array."""
    col = frame[name]
    values = col.to_numpy(dtype=object) if isinstance(col, pd.Series) else np.asarray(col, dtype=object)
    return values if rows is None else values[rows]


def _text(col: pd.Series | np.ndarray) -> np.ndarray:
    """A column as a numpy object array of ``str``, with ``NONE`` for missing cells."""
    raw = col.to_numpy(dtype=object) if isinstance(col, pd.Series) else col
    values = np.array(raw, dtype=object, copy=True)
    if pd.api.types.infer_dtype(values, skipna=False) == "string":  # all str, none missing: nothing to do
        return values
    missing = pd.isna(values)
    if missing.any():
        values[missing] = NONE
    if pd.api.types.infer_dtype(values, skipna=False) != "string":  # numbers or mixed: spell them as text
        values = np.asarray([v if type(v) is str else str(v) for v in values.tolist()], dtype=object)
    return values


def _upper(col: pd.Series | np.ndarray, *, lower: bool = False) -> np.ndarray:
    """A text column upper- (or lower-) cased, missing cells ``""``; values repeat, so each is cased once."""
    codes, cased = _upper_codes(col, lower=lower)
    return cased[codes]


def _upper_codes(col: pd.Series | np.ndarray, *, lower: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_upper` as codes into its cased distinct values: ``cased[codes]`` is the cased column."""
    values = col.to_numpy(dtype=object) if isinstance(col, pd.Series) else col
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    cased = np.asarray([str(u).lower() if lower else str(u).upper() for u in uniques] + [""], dtype=object)
    return codes, cased


def _optional_text(frame: Frame, name: str, rows: np.ndarray | None = None) -> np.ndarray:
    """A text column as :func:`_text` gives it; all ``NONE`` when the frame has no such column."""
    if name not in _names(frame):
        return np.full(_nrows(frame) if rows is None else len(rows), NONE, dtype=object)
    return _text(_values(frame, name, rows))


def _params(value: Any) -> Any:
    """A ``parameters`` cell as a dict (JSON text is decoded); anything else is returned as it is."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise FeatureSchemaError(
            f"parameters {value[:40]!r} is neither a dict nor JSON text ({exc.msg}); parse the history with "
            "forewarn.history.simulate.history_to_runs_frame"
        ) from exc


def _phash(frame: Frame, rows: np.ndarray | None = None) -> np.ndarray:
    """``parameters_hash``, computed from ``parameters`` where the hash is missing but parameters are not."""
    out = _optional_text(frame, "parameters_hash", rows)
    if "parameters" in _names(frame) and (out == NONE).any():
        params = _values(frame, "parameters", rows)
        for i in np.flatnonzero((out == NONE) & ~pd.isna(params)):
            out[i] = parameters_hash(_params(params[i])) or NONE
    return out


def _param_count(frame: pd.DataFrame) -> np.ndarray:
    """How many parameters each run was given (0 when unknown)."""
    if "parameters" not in frame.columns:
        return np.zeros(len(frame))
    values = (_params(v) for v in frame["parameters"].to_numpy(dtype=object))
    return np.asarray([len(v) if isinstance(v, Mapping) else 0 for v in values], dtype=np.float64)


def reference_times(targets: pd.DataFrame) -> np.ndarray:
    """Each target's scheduled start, else its start time, as int64 ns since the epoch (UTC).

    The time a run is placed at: its cutoff is this minus the lead. Raises
    :class:`~forewarn.errors.FeatureSchemaError` naming the runs that have neither.

    Example::

        >>> t = pd.DataFrame({"flow_run_id": ["r"], "scheduled_start": [pd.Timestamp("1970-01-01 00:00:01", tz="UTC")]})
        >>> reference_times(t).tolist()
        [1000000000]
    """
    if "scheduled_start" not in targets.columns and "start_time" not in targets.columns:
        raise FeatureSchemaError("targets need scheduled_start (or start_time) to place each run in time")
    ref = _history_ref(targets)
    if (ref == _NAT).any():
        bad = ", ".join(map(repr, _text(targets["flow_run_id"])[ref == _NAT][:5]))
        raise FeatureSchemaError(
            f"target run(s) {bad} have neither scheduled_start nor start_time; give the "
            "scheduled start of an upcoming run"
        )
    return ref


def _target_times(targets: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Target ids and :func:`reference_times`."""
    _require(targets, ("flow_run_id", "flow_name"), "targets")
    ref = reference_times(targets)
    return _text(targets["flow_run_id"]), ref


def _ragged(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ranges ``[starts[i], ends[i])``: the owner ``i`` and the position of every element."""
    counts = np.maximum(ends - starts, 0)
    owner = np.repeat(np.arange(len(starts)), counts)
    offset = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
    return owner, np.repeat(starts, counts) + offset


class _Grouped:
    """Rows sorted by ``(group, time)`` (stable, so earlier tie order is kept), searchable per group."""

    def __init__(self, group: np.ndarray, time: np.ndarray, distinct: np.ndarray | None = None) -> None:
        self.times = _distinct(time) if distinct is None else distinct
        self.m = np.int64(len(self.times) + 1)
        key = group.astype(np.int64) * self.m + np.searchsorted(self.times, time)
        self.order = np.argsort(key, kind="stable")
        self.key = key[self.order]

    def before(self, group: np.ndarray, time: np.ndarray) -> np.ndarray:
        """Index of the first row of ``group`` at or after ``time`` (rows before it: earlier groups/times)."""
        return np.searchsorted(self.key, group.astype(np.int64) * self.m + np.searchsorted(self.times, time))


def _distinct(values: np.ndarray) -> np.ndarray:
    """The sorted distinct values of an int64 array (a sort and a diff: faster than np.unique here)."""
    ordered = values if len(values) < 2 or (values[1:] >= values[:-1]).all() else np.sort(values)
    if len(ordered) < 2:
        return ordered
    return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]


def _at(values: np.ndarray, idx: np.ndarray, default: int) -> np.ndarray:
    """``values[idx]``, or ``default`` everywhere when ``values`` is empty (no history at all)."""
    return values[idx] if len(values) else np.full(len(idx), default, dtype=np.int64)


def _cum(flags: np.ndarray) -> np.ndarray:
    """Cumulative count with a leading zero: ``c[j] - c[i]`` counts ``flags[i:j]``."""
    out = np.zeros(len(flags) + 1, dtype=np.int64)
    np.cumsum(flags, out=out[1:])
    return out


def _ratio(num: np.ndarray, den: np.ndarray, default: np.ndarray | float) -> np.ndarray:
    """``num / den`` as float64, ``default`` where ``den`` is 0."""
    safe = np.where(den > 0, den, 1)
    return np.where(den > 0, num / safe, default).astype(np.float64)


# --- the prepared history ------------------------------------------------------------------------------


class Vocabulary:
    """Integer codes for text values that only grows: a value keeps its code as new values arrive.

    Codes let a :class:`RunIndex` hold flows, versions and parameter sets as integers, so that extending it
    with new rows never re-codes the old ones.

    Example::

        >>> v = Vocabulary()
        >>> v.encode(np.array(["etl", "sync", "etl"], dtype=object)).tolist()
        [0, 1, 0]
        >>> v.encode(np.array(["report", "etl"], dtype=object)).tolist(), len(v)
        ([2, 0], 3)
    """

    __slots__ = ("_codes", "names")

    def __init__(self) -> None:
        self._codes: dict[str, int] = {}
        self.names: list[str] = []

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def from_names(cls, names: list[str]) -> Vocabulary:
        """A vocabulary in which ``names[i]`` has code ``i`` (one read back from a snapshot).

        Raises ``ValueError`` when a name repeats: codes would be ambiguous.

        Example::

            >>> Vocabulary.from_names(["etl", "sync"]).encode(np.array(["sync"], dtype=object)).tolist()
            [1]
        """
        vocab = cls()
        vocab._codes = dict(zip(names, range(len(names)), strict=True))
        if len(vocab._codes) != len(names):
            raise ValueError("a vocabulary's names must not repeat")
        vocab.names = list(names)
        return vocab

    def encode(self, values: np.ndarray) -> np.ndarray:
        """The codes of ``values`` (text, as :func:`_text` gives it), adding the values not seen before."""
        if len(values) <= 8:  # the live case: a dict lookup per value beats hashing the array
            return np.asarray([self._code(v) for v in values.tolist()], dtype=np.int64)
        codes, uniques = pd.factorize(values)
        table = np.asarray([self._code(u) for u in uniques.tolist()], dtype=np.int64)
        return table[codes] if len(table) else np.zeros(len(values), dtype=np.int64)

    def _code(self, name: str) -> int:
        code = self._codes.get(name)
        if code is None:
            code = self._codes[name] = len(self.names)
            self.names.append(name)
        return code

    def code_of(self, name: str, unseen: dict[str, int]) -> int:
        """The code of ``name``: its own, else its code in ``unseen`` (see :meth:`lookup`), else -1."""
        code = self._codes.get(name)
        return code if code is not None else unseen.get(name, -1)

    def lookup(self, values: np.ndarray, unseen: dict[str, int]) -> np.ndarray:
        """The codes of ``values`` without growing: a value not seen gets the next free code, kept in ``unseen``.

        ``unseen`` is shared across calls that must agree (the targets and the attempts of one build).
        """
        out = np.empty(len(values), dtype=np.int64)
        for i, name in enumerate(values.tolist()):
            code = self._codes.get(name)
            if code is None:
                code = unseen.setdefault(name, len(self.names) + len(unseen))
            out[i] = code
        return out


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


_RUN_ARRAYS = ("ids", "known", "ref", "end", "flow", "version", "params", "fail", "succ", "has_dur", "dur_us")


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
        _require(history, ("flow_run_id", "flow_name", "end_time", "state"), "history")
        end, start, ref = _ns(history, "end_time"), _ns(history, "start_time"), _history_ref(history)
        known = np.maximum(end, ref)  # a run is known at its end, never before its own scheduled start
        usable = end != _NAT
        if since is not None:
            usable &= known >= since
        if until is not None:
            usable &= known < until
        keep = np.flatnonzero(usable)
        ids = _text(_values(history, "flow_run_id", keep))
        if not _is_unique(ids):
            dup = pd.Series(ids).loc[lambda s: s.duplicated()].unique()[:5]
            raise FeatureSchemaError(f"history repeats flow_run_id {', '.join(map(repr, dup))}; pass each run once")
        order = _total_order(known[keep], ref[keep], ids)
        rows = keep[order]
        state_codes, states = _upper_codes(_values(history, "state", rows))
        fail = np.isin(states, list(FAILURE_STATES))[state_codes]  # tested once per distinct state
        succ = (states == SUCCESS_STATE)[state_codes]
        start = start[rows]
        has_dur = succ & (start != _NAT)
        vocab = vocab if vocab is not None else RunVocabulary()
        return cls(
            ids=ids[order],
            known=known[rows],
            ref=ref[rows],
            end=end[rows],
            flow=vocab.flows.encode(_text(_values(history, "flow_name", rows))),
            version=vocab.versions.encode(_optional_text(history, "flow_version", rows)),
            params=vocab.params.encode(_phash(history, rows)),
            fail=fail,
            succ=succ,
            has_dur=has_dur,
            dur_us=np.where(has_dur, (end[rows] - start) // 1000, 0),
            vocab=vocab,
        )

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
        joined = self._joined(newer)
        after = (int(newer.known[0]), int(newer.ref[0]), str(newer.ids[0])) > (
            int(self.known[-1]),
            int(self.ref[-1]),
            str(self.ids[-1]),
        )
        if not after:
            order = _total_order(joined["known"], joined["ref"], joined["ids"])
            joined = {name: values[order] for name, values in joined.items()}
        return replace(self, **joined)


@dataclass(frozen=True, slots=True, eq=False)
class RunVocabulary:
    """The vocabularies a :class:`RunIndex` codes its flows, versions and parameter sets with."""

    flows: Vocabulary = field(default_factory=Vocabulary)
    versions: Vocabulary = field(default_factory=Vocabulary)
    params: Vocabulary = field(default_factory=Vocabulary)


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
        _require(attempts, ("flow_run_id", "end_time", "outcome"), "attempts")
        end = _ns(attempts, "end_time")
        outcome = _upper(_values(attempts, "outcome"), lower=True)
        failed = np.isin(outcome, _FAILED_OUTCOMES) & (end != _NAT)
        rows = np.flatnonzero(failed) if failed_only else np.arange(_nrows(attempts))
        end = end[rows]
        run = _text(_values(attempts, "flow_run_id", rows))
        run_ref, run_flow = _run_of(run, runs)
        missing = run_ref == _NAT
        if missing.any() and "run_scheduled_start" in _names(attempts):
            own = _ns(attempts, "run_scheduled_start")[rows]
            own = np.where(own == _NAT, _ns(attempts, "run_start_time")[rows], own)
            run_ref = np.where(missing, own, run_ref)
        known = np.maximum(end, run_ref)
        window = np.ones(len(rows), dtype=bool)
        if since is not None:
            window &= known >= since
        if until is not None:
            window &= known < until
        if not window.all():
            rows, end, run, run_flow, known = rows[window], end[window], run[window], run_flow[window], known[window]
        own_flow = "flow_name" in _names(attempts)
        flow_text = _text(_values(attempts, "flow_name", rows)) if own_flow else run_flow
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

    ``_NAT`` and :data:`NONE` where ``runs`` does not hold the run. Only the attempts' few distinct runs are
    hashed, not the whole history.
    """
    ref = np.full(len(run), _NAT, dtype=np.int64)
    flow = np.full(len(run), NONE, dtype=object)
    if runs is None or len(runs) == 0 or len(run) == 0:
        return ref, flow
    pos = _first_positions(_text(runs["flow_run_id"]), run)
    seen = pos >= 0
    ref[seen] = _history_ref(runs)[pos[seen]]
    flow[seen] = _text(_values(runs, "flow_name", pos[seen]))
    return ref, flow


def _first_positions(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
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


def _families(attempts: Frame, rows: np.ndarray, outcome: np.ndarray) -> np.ndarray:
    """Per attempt and per :data:`EXCEPTION_FAMILIES` entry: its exception is of that family."""
    out = np.zeros((len(rows), len(EXCEPTION_FAMILIES)), dtype=bool)
    if len(rows) == 0:
        return out
    exc_codes, exc_names = pd.factorize(_optional_text(attempts, "exception_type", rows))
    for j, (family, pattern) in enumerate(EXCEPTION_FAMILIES.items()):
        rx = re.compile(pattern, re.IGNORECASE)
        hit = np.asarray([bool(rx.search(name)) and name != NONE for name in exc_names], dtype=bool)
        out[:, j] = hit[exc_codes] if len(exc_names) else False
        if family == "timeout":
            out[:, j] |= outcome == AttemptOutcome.TIMEOUT.value
    return out


# --- the features --------------------------------------------------------------------------------------


def build_features(
    targets: pd.DataFrame,
    history: pd.DataFrame | RunIndex | None = None,
    attempts: pd.DataFrame | AttemptIndex | None = None,
    *,
    lead: timedelta = timedelta(0),
    config: FeatureConfig = FeatureConfig(),
) -> pd.DataFrame:
    """Describe each run of ``targets`` from what was known at its cutoff ``scheduled_start - lead``.

    ``targets`` and ``history`` are runs frames (``flow_run_id, flow_name, deployment, parameters,
    parameters_hash, flow_version, scheduled_start, start_time, end_time, state, feature_*``); ``history``
    defaults to ``targets``. ``attempts`` (``flow_run_id, task_name, attempt, start_time, end_time, outcome,
    exception_type`` and optionally ``flow_name``) may be None or empty: the attempt features are then 0.
    For exact results the history must cover :func:`history_window`. ``history`` and ``attempts`` may also
    be a prepared :class:`RunIndex` / :class:`AttemptIndex` (live scoring keeps them between scores); the
    features are the same.

    Returns one row per target, indexed by ``flow_run_id`` in the targets' order: the columns of
    :data:`CATEGORICAL_FEATURES` and :data:`NUMERIC_FEATURES` (float64, never NaN), then the targets'
    ``feature_*`` columns (numbers as float64 keeping NaN for missing, text as object with ``<none>``).

    Example::

        >>> t0 = pd.Timestamp("2026-01-01", tz="UTC")
        >>> hist = pd.DataFrame({"flow_run_id": ["a", "b"], "flow_name": ["etl", "etl"],
        ...     "scheduled_start": [t0, t0 + pd.Timedelta(hours=1)],
        ...     "start_time": [t0, t0 + pd.Timedelta(hours=1)],
        ...     "end_time": [t0 + pd.Timedelta(minutes=5), t0 + pd.Timedelta(hours=1, minutes=5)],
        ...     "state": ["COMPLETED", "FAILED"]})
        >>> nxt = pd.DataFrame({"flow_run_id": ["c"], "flow_name": ["etl"],
        ...     "scheduled_start": [t0 + pd.Timedelta(hours=2)], "state": ["SCHEDULED"]})
        >>> row = build_features(nxt, hist).loc["c"]
        >>> row["flow_last_ended_failed"], row["flow_failure_streak"], row["flow_hours_since_failure"]
        (np.float64(1.0), np.float64(1.0), np.float64(0.9166666666666666))
    """
    if not isinstance(config, FeatureConfig):
        raise ConfigurationError("config", config, "a forewarn.learning.features.FeatureConfig")
    lead_ns = _lead_ns(lead)
    if history is None:
        history = targets
    if not isinstance(history, RunIndex):
        _require(history, ("flow_run_id", "flow_name", "end_time", "state"), "history")
    ids, ref = _target_times(targets)
    if len(ids) == 0:
        return _empty(targets)
    cutoff = ref - lead_ns
    L, W = _td_ns(config.lookback), _td_ns(config.global_window)
    lo_t, hi_t = int(cutoff.min()) - L - W, int(cutoff.max())
    runs = history if isinstance(history, RunIndex) else RunIndex.from_frame(history, since=lo_t, until=hi_t)
    if attempts is not None and not isinstance(attempts, AttemptIndex):
        if len(attempts) == 0:
            attempts = None
        else:
            lookup = history if isinstance(history, pd.DataFrame) else None
            attempts = AttemptIndex.from_frame(attempts, runs=lookup, since=lo_t, until=hi_t, failed_only=True)
    return _describe(targets, ids, ref, cutoff, runs, attempts, config)


def _describe(
    targets: pd.DataFrame,
    ids: np.ndarray,
    ref: np.ndarray,
    cutoff: np.ndarray,
    runs: RunIndex,
    attempts: AttemptIndex | None,
    config: FeatureConfig,
) -> pd.DataFrame:
    """The features of ``targets`` (ids, reference times and cutoffs given) from prepared history."""
    L, W = _td_ns(config.lookback), _td_ns(config.global_window)
    R, k = config.recent_runs, float(config.prior_strength)
    lookback_hours = L / _HOUR

    # ---- the history rows some cutoff can see: a slice, since the index is in known-at order -----------
    s0, s1 = np.searchsorted(runs.known, [int(cutoff.min()) - L - W, int(cutoff.max())])
    known = runs.known[s0:s1]
    hf, fail, succ = runs.flow[s0:s1], runs.fail[s0:s1], runs.succ[s0:s1]
    lab = fail | succ

    # ---- the targets' codes; values the history never had get codes of their own -----------------------
    t_flow = _text(targets["flow_name"])
    unseen_flows: dict[str, int] = {}
    tf = runs.vocab.flows.lookup(t_flow, unseen_flows)
    tv = runs.vocab.versions.lookup(_optional_text(targets, "flow_version"), {})
    tp = runs.vocab.params.lookup(_phash(targets), {})
    n_flows = len(runs.vocab.flows) + len(unseen_flows) + 1
    n_ver, n_ph = len(runs.vocab.versions) + 1, len(runs.vocab.params) + 1
    tv = np.minimum(tv, n_ver - 1)  # every unseen version is one code no history row has
    tp = np.minimum(tp, n_ph - 1)

    # ---- per-flow windows, over the rows of the targets' flows only (others are never in them) ----------
    target_flows = np.unique(tf)
    mine = np.flatnonzero(hf == target_flows[0] if len(target_flows) == 1 else np.isin(hf, target_flows))
    m_known, m_flow = known[mine], hf[mine]
    times = _distinct(m_known)  # sorted already: one pass; shared by the groupings below
    by_flow = _Grouped(m_flow, m_known, times)
    o = mine[by_flow.order]
    e_known, e_fail, e_succ, e_lab = known[o], fail[o], succ[o], lab[o]
    e_ver, e_ph = runs.version[s0:s1][o], runs.params[s0:s1][o]
    hi = by_flow.before(tf, cutoff)
    lo = by_flow.before(tf, cutoff - L)
    lo_w = by_flow.before(tf, cutoff - W)
    n_runs = hi - lo
    has_last = n_runs > 0
    last = np.where(has_last, hi - 1, 0)

    c_lab = _cum(e_lab)
    l_lo, l_hi = c_lab[lo], c_lab[hi]  # window in the labelled-only sequence
    l_fail = e_fail[e_lab]
    l_succ = e_succ[e_lab]
    l_known = e_known[e_lab]
    cl_fail = _cum(l_fail)
    n_lab = l_hi - l_lo
    n_fail = cl_fail[l_hi] - cl_fail[l_lo]
    idx = np.arange(len(l_fail))
    prev_succ = np.maximum.accumulate(np.where(l_succ, idx, -1)) if len(idx) else idx
    prev_fail = np.maximum.accumulate(np.where(l_fail, idx, -1)) if len(idx) else idx
    any_lab = n_lab > 0
    l_last = np.where(any_lab, l_hi - 1, 0)
    ps, pf = _at(prev_succ, l_last, -1), _at(prev_fail, l_last, -1)
    fail_streak = np.where(any_lab, l_hi - np.maximum(ps + 1, l_lo), 0)
    succ_streak = np.where(any_lab, l_hi - np.maximum(pf + 1, l_lo), 0)
    seen_fail = any_lab & (pf >= l_lo)
    last_fail_known = _at(l_known, np.where(seen_fail, pf, 0), 0)
    hours_since_fail = np.where(
        seen_fail, np.minimum((cutoff - last_fail_known) / _HOUR, lookback_hours), lookback_hours
    )

    # global rates: over the lookback (the prior) and over the global window
    cg_fail, cg_lab = _cum(fail), _cum(lab)
    g_hi = np.searchsorted(known, cutoff)
    g_lo = np.searchsorted(known, cutoff - L)
    g_w = np.searchsorted(known, cutoff - W)
    g_rate = _ratio(cg_fail[g_hi] - cg_fail[g_lo], cg_lab[g_hi] - cg_lab[g_lo], 0.0)
    w_fail = cg_fail[g_hi] - cg_fail[g_w]
    w_rate = _ratio(w_fail, cg_lab[g_hi] - cg_lab[g_w], g_rate)

    smoothed = _ratio(n_fail + k * g_rate, n_lab + k, g_rate)
    m_recent = np.minimum(R, n_lab)
    recent = _ratio(cl_fail[l_hi] - cl_fail[l_hi - m_recent], m_recent, smoothed)

    e_dur, has_dur = runs.dur_us[s0:s1][o], runs.has_dur[s0:s1][o]
    c_dur = _cum(has_dur)  # window in the sequence of successful runs with a duration
    cs_dur = _cum(e_dur[has_dur])  # integer microseconds: exact whatever the batch size
    d_lo, d_hi = c_dur[lo], c_dur[hi]
    n_dur = d_hi - d_lo
    m3, m_r = np.minimum(3, n_dur), np.minimum(R, n_dur)
    mean3 = _ratio(cs_dur[d_hi] - cs_dur[d_hi - m3], m3, 0.0)
    mean_r = _ratio(cs_dur[d_hi] - cs_dur[d_hi - m_r], m_r, 0.0)
    trend = _ratio(mean3, mean_r, 1.0)

    ce_fail = _cum(e_fail)
    flow_w_fail = ce_fail[hi] - ce_fail[lo_w]
    flow_l_fail = n_fail

    # ---- versions and parameter sets ----------------------------------------------------------------------
    version_changed = (has_last & (_at(e_ver, last, -1) != tv)).astype(np.float64)
    params_changed = (has_last & (_at(e_ph, last, -1) != tp)).astype(np.float64)
    m_fail, m_lab = fail[mine], lab[mine]
    by_ver = _Grouped(m_flow * n_ver + runs.version[s0:s1][mine], m_known, times)
    gv = tf * n_ver + tv
    v_hi, v_lo = by_ver.before(gv, cutoff), by_ver.before(gv, cutoff - L)
    cv_fail, cv_lab = _cum(m_fail[by_ver.order]), _cum(m_lab[by_ver.order])
    v_fail, v_lab = cv_fail[v_hi] - cv_fail[v_lo], cv_lab[v_hi] - cv_lab[v_lo]
    version_rate = _ratio(v_fail + k * smoothed, v_lab + k, smoothed)
    by_ph = _Grouped(m_flow * n_ph + runs.params[s0:s1][mine], m_known, times)
    gp = tf * n_ph + tp
    p_runs = by_ph.before(gp, cutoff) - by_ph.before(gp, cutoff - L)

    # ---- co-failure partners ---------------------------------------------------------------------------
    partner = _partner_failures(known[fail], hf[fail], tf, cutoff, L, W, n_flows) / (flow_l_fail + 1.0)

    # ---- task attempts ----------------------------------------------------------------------------------
    att = _attempt_counts(attempts, runs.vocab.flows, unseen_flows, ids, ref, tf, cutoff, W)

    # ---- calendar and parameters of the scheduled start --------------------------------------------------
    hour = (ref % _DAY) / _HOUR
    dow = (ref // _DAY + 3) % 7  # Monday = 0
    days = ref.astype("datetime64[ns]").astype("datetime64[D]")
    month_end = (days.astype("datetime64[M]") + 1).astype("datetime64[D]")
    days_left = (month_end - days).astype(np.int64) - 1

    numeric: dict[str, np.ndarray] = {
        "hour_sin": np.sin(2 * np.pi * hour / 24),
        "hour_cos": np.cos(2 * np.pi * hour / 24),
        "dow_sin": np.sin(2 * np.pi * dow / 7),
        "dow_cos": np.cos(2 * np.pi * dow / 7),
        "hour_of_week": dow * 24 + hour,
        "days_to_month_end": days_left,
        "parameter_count": _param_count(targets),
        "parameters_changed": params_changed,
        "parameters_runs_seen": np.minimum(p_runs, R),
        "flow_runs_seen": n_runs,
        BASELINE_SMOOTHED_RATE: smoothed,
        "flow_failure_rate_recent": recent,
        "flow_failure_streak": fail_streak,
        "flow_success_streak": succ_streak,
        BASELINE_LAST_FAILED: (fail_streak > 0),
        "flow_hours_since_failure": hours_since_fail,
        "flow_duration_trend": trend,
        "version_changed": version_changed,
        "version_runs_seen": np.minimum(v_hi - v_lo, R),
        "version_failure_rate_smoothed": version_rate,
        "global_failure_rate": g_rate,
        "global_failure_rate_window": w_rate,
        "other_flows_failures_window": w_fail - flow_w_fail,
        "partner_failures_window": partner,
        **att,
    }
    columns = [("flow_name", t_flow), ("deployment", _optional_text(targets, "deployment"))]
    columns += [(name, np.asarray(numeric[name], dtype=np.float64)) for name in NUMERIC_FEATURES]
    columns += [(str(c), _passthrough(targets[c])) for c in targets.columns if str(c).startswith(FEATURE_PREFIX)]
    return _frame(columns, pd.Index(ids, name="flow_run_id", dtype=object))


def _frame(columns: list[tuple[str, np.ndarray]], index: pd.Index) -> pd.DataFrame:
    """A frame of float64 and object columns, as they are (pandas would turn object text into ``str``).

    ``DataFrame._from_arrays`` builds it in ~0.1 ms, a third of the public way (one frame per dtype, then
    a concatenation), which stays as the fallback for a pandas without it.
    """
    names, arrays = [name for name, _ in columns], [values for _, values in columns]
    from_arrays = getattr(pd.DataFrame, "_from_arrays", None)
    if from_arrays is not None:
        try:
            return cast(pd.DataFrame, from_arrays(arrays, columns=names, index=index, verify_integrity=False))
        except TypeError:  # another signature: the public way below
            pass
    parts = [
        pd.DataFrame({name: pd.Series(values, index=index, dtype=values.dtype)}, index=index)
        for name, values in columns
    ]
    return pd.concat(parts, axis=1)


def _empty(targets: pd.DataFrame) -> pd.DataFrame:
    """The zero-row result, with the columns and dtypes a non-empty one would have."""
    columns = {name: pd.Series(dtype=object) for name in CATEGORICAL_FEATURES}
    columns.update({name: pd.Series(dtype=np.float64) for name in NUMERIC_FEATURES})
    for name in targets.columns:
        if str(name).startswith(FEATURE_PREFIX):
            numeric = pd.api.types.is_numeric_dtype(targets[name].dtype)
            columns[str(name)] = pd.Series(dtype=np.float64 if numeric else object)
    return pd.DataFrame(columns, index=pd.Index([], name="flow_run_id", dtype=object))


def _passthrough(col: pd.Series) -> np.ndarray:
    """A ``feature_*`` column: numbers (and booleans) as float64, anything else as text categories."""
    dtype = col.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "fiub":  # plain numpy numbers: one cast
        return col.to_numpy().astype(np.float64)
    if pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):  # nullable Int64, Float64...
        return col.to_numpy(dtype=np.float64, na_value=np.nan)
    values = col.to_numpy(dtype=object)
    cells = values.tolist()
    if all(v is None or (type(v) is float and v != v) for v in cells):  # all missing (a live run)
        return np.full(len(values), np.nan, dtype=np.float64)
    if all(type(v) is str for v in cells):  # text (a live run's missing attribute is NONE): no parsing
        return _text(values)
    present = values[~pd.isna(values)]
    if all(isinstance(v, (int, float, np.number)) for v in present.tolist()):
        return pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64)
    return _text(values)


def _partner_failures(
    f_known: np.ndarray, f_flow: np.ndarray, tf: np.ndarray, cutoff: np.ndarray, L: int, W: int, n_flows: int
) -> np.ndarray:
    """Per target: sum over other flows' failures in ``[cutoff - W, cutoff)`` of their co-failure events.

    A co-failure event ``(A, B, t)`` is a failure of flow ``A`` known at ``t`` with at least one failure of
    flow ``B != A`` known in ``[t - W, t)``. For a target of flow ``A``, each window failure of a flow ``B``
    adds the number of ``(A, B)`` events known in ``[cutoff - L, cutoff)``. Both ends of every event are
    known before the cutoff, so the affinity only uses history the target could have seen; it is computed
    fresh for each cutoff (an expanding window), never fitted on a batch.
    """
    nt = len(tf)
    total = np.zeros(nt)
    if len(f_known) == 0 or nt == 0:
        return total
    # events: pairs (failure i of A, failure j of B) with j known in [t_i - W, t_i), one per (i, B); only
    # failures of the targets' flows in the lookback of some cutoff can be counted, so only they are owners
    owners = np.flatnonzero(np.isin(f_flow, np.unique(tf)) & (f_known >= int(cutoff.min()) - L))
    starts = np.searchsorted(f_known, f_known[owners] - W)
    ends = np.searchsorted(f_known, f_known[owners])
    owner_at, pos = _ragged(starts, ends)
    owner = owners[owner_at]
    other = f_flow[pos] != f_flow[owner]
    owner, partner_flow = owner[other], f_flow[pos][other]
    uniq = _distinct(owner.astype(np.int64) * n_flows + partner_flow)
    ev_i, ev_b = uniq // n_flows, uniq % n_flows
    if len(ev_i) == 0:
        return total
    events = _Grouped(f_flow[ev_i].astype(np.int64) * n_flows + ev_b, f_known[ev_i])

    w_lo = np.searchsorted(f_known, cutoff - W)
    w_hi = np.searchsorted(f_known, cutoff)
    counts = np.maximum(w_hi - w_lo, 0)
    csum = np.cumsum(counts)
    start = 0
    while start < nt:  # chunks of targets keep the expanded pairs below _PAIR_CHUNK
        base = csum[start - 1] if start else 0
        stop = max(int(np.searchsorted(csum, base + _PAIR_CHUNK, side="right")), start + 1)
        sl = slice(start, stop)
        t_owner, j = _ragged(w_lo[sl], w_hi[sl])
        t_owner += start
        b = f_flow[j]
        keep = b != tf[t_owner]
        t_owner, b = t_owner[keep], b[keep]
        pair = tf[t_owner] * n_flows + b
        n_events = events.before(pair, cutoff[t_owner]) - events.before(pair, cutoff[t_owner] - L)
        total += np.bincount(t_owner, weights=n_events, minlength=nt)
        start = stop
    return total


def _attempt_counts(
    attempts: AttemptIndex | None,
    flows: Vocabulary,
    unseen_flows: dict[str, int],
    ids: np.ndarray,
    ref: np.ndarray,
    tf: np.ndarray,
    cutoff: np.ndarray,
    W: int,
) -> dict[str, np.ndarray]:
    """Failed attempts known in ``[cutoff - W, cutoff)``: all flows, the target's flow, per family."""
    nt = len(tf)
    names = ["attempts_failed_window", "flow_attempts_failed_window"] + [
        f"attempts_{family}_window" for family in EXCEPTION_FAMILIES
    ]
    out = {name: np.zeros(nt) for name in names}
    if attempts is None or len(attempts) == 0 or nt == 0:
        return out
    rows = np.flatnonzero(attempts.failed)
    a_known = attempts.known[rows]
    # the attempts' flows in the codes of this build (a flow no run has: a code of its own, or -1)
    to_build = np.asarray([flows.code_of(name, unseen_flows) for name in attempts.flows.names] + [-1], dtype=np.int64)
    a_code = to_build[attempts.flow[rows]]
    # an attempt of a run being described counts from that run's reference time (never its own target's)
    pos = _first_positions(ids, attempts.run[rows])
    mine = pos >= 0
    if mine.any():
        a_known = a_known.copy()
        a_known[mine] = np.maximum(attempts.end[rows][mine], ref[pos[mine]])
        by_target = mine & ~attempts.own_flow[rows]
        a_code = np.where(by_target, tf[np.maximum(pos, 0)], a_code)
    win = (a_known >= int(cutoff.min()) - W) & (a_known < int(cutoff.max()))
    if not win.any():
        return out
    rows, a_known, a_code = rows[win], a_known[win], a_code[win]

    order = np.argsort(a_known, kind="stable")
    t_sorted = a_known[order]
    lo = np.searchsorted(t_sorted, cutoff - W)
    hi = np.searchsorted(t_sorted, cutoff)
    out["attempts_failed_window"] = (hi - lo).astype(np.float64)
    families = attempts.families[rows][order]
    for j, family in enumerate(EXCEPTION_FAMILIES):
        c = _cum(families[:, j])
        out[f"attempts_{family}_window"] = (c[hi] - c[lo]).astype(np.float64)
    by_flow = _Grouped(a_code, a_known)
    out["flow_attempts_failed_window"] = (by_flow.before(tf, cutoff) - by_flow.before(tf, cutoff - W)).astype(
        np.float64
    )
    return out


def _history_ref(history: Frame) -> np.ndarray:
    ref = _ns(history, "scheduled_start")
    return np.where(ref == _NAT, _ns(history, "start_time"), ref)


__all__ = [
    "BASELINE_LAST_FAILED",
    "BASELINE_SMOOTHED_RATE",
    "CATEGORICAL_FEATURES",
    "EXCEPTION_FAMILIES",
    "FAILURE_STATES",
    "NONE",
    "NUMERIC_FEATURES",
    "FeatureConfig",
    "AttemptIndex",
    "FeatureSpec",
    "RunIndex",
    "RunVocabulary",
    "Vocabulary",
    "build_features",
    "cutoff_window",
    "failure_labels",
    "reference_times",
    "feature_spec",
    "history_window",
]
