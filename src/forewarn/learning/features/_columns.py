"""Reading runs and attempts tables: columns as numpy arrays, times as int64 nanoseconds, text as ``str``.

Every module of the package reads its input through these functions, so that a DataFrame and a store's lean
read (numpy columns by name) give the same arrays, and missing values are spelled the same way everywhere.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

from forewarn.errors import ConfigurationError, FeatureSchemaError
from forewarn.records import parameters_hash

NONE = "<none>"
"""The category that stands for a missing text value."""

NAT = np.iinfo(np.int64).min
"""A missing time, as int64 nanoseconds (what ``NaT`` is in numpy)."""

HOUR = 3600 * 10**9
"""One hour in nanoseconds."""

DAY = 24 * HOUR
"""One day in nanoseconds."""

Frame: TypeAlias = pd.DataFrame | Mapping[str, np.ndarray]
"""A runs or attempts table: a DataFrame, or numpy columns by name (what a store's lean read gives)."""


def column_names(frame: Frame) -> Any:
    """The column names of a DataFrame or of numpy columns by name."""
    return frame.columns if isinstance(frame, pd.DataFrame) else frame.keys()


def row_count(frame: Frame) -> int:
    """How many rows the table has (0 for numpy columns with no column at all)."""
    if isinstance(frame, pd.DataFrame):
        return len(frame)
    return len(next(iter(frame.values()))) if len(frame) else 0


def require(frame: Frame, columns: tuple[str, ...], what: str) -> None:
    """Raise :class:`~forewarn.errors.FeatureSchemaError` naming the ``columns`` that ``frame`` lacks."""
    names = column_names(frame)
    missing = [c for c in columns if c not in names]
    if missing:
        raise FeatureSchemaError(
            f"{what} lack column(s) {', '.join(missing)}; a runs frame has flow_run_id, flow_name, "
            "scheduled_start, start_time, end_time, state (see forewarn.history.simulate.history_to_runs_frame)"
        )


def timedelta_ns(value: timedelta) -> int:
    """A timedelta in whole nanoseconds."""
    return int(pd.Timedelta(value).value)


def lead_ns(lead: timedelta) -> int:
    """The scoring lead in nanoseconds; raises :class:`~forewarn.errors.ConfigurationError` unless >= 0."""
    if not isinstance(lead, timedelta) or lead < timedelta(0):
        raise ConfigurationError("lead", lead, "a timedelta >= 0, e.g. lead=timedelta(minutes=30)")
    return timedelta_ns(lead)


def time_ns(frame: Frame, name: str) -> np.ndarray:
    """A time column as int64 nanoseconds since the epoch (UTC); NaT and absent columns give :data:`NAT`."""
    if name not in column_names(frame):
        return np.full(row_count(frame), NAT, dtype=np.int64)
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


def run_reference_ns(runs: Frame) -> np.ndarray:
    """Each run's scheduled start, else its start time, as int64 ns (:data:`NAT` when it has neither)."""
    ref = time_ns(runs, "scheduled_start")
    return np.where(ref == NAT, time_ns(runs, "start_time"), ref)


def cells(frame: Frame, name: str, rows: np.ndarray | None = None) -> np.ndarray:
    """The cells of one column (only ``rows``, if given) as a numpy object array."""
    col = frame[name]
    values = col.to_numpy(dtype=object) if isinstance(col, pd.Series) else np.asarray(col, dtype=object)
    return values if rows is None else values[rows]


def text(col: pd.Series | np.ndarray) -> np.ndarray:
    """A column as a numpy object array of ``str``, with :data:`NONE` for missing cells."""
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


def number_text(values: np.ndarray) -> np.ndarray:
    """Numbers as category text, the same for ``7``, ``7.0`` and ``np.int64(7)``: ``"7.0"``; NaN is :data:`NONE`.

    Example::

        >>> number_text(np.array([7, 7.5, np.nan])).tolist()
        ['7.0', '7.5', '<none>']
    """
    floats = np.asarray(values, dtype=np.float64)
    codes, uniques = pd.factorize(floats, use_na_sentinel=True)
    names = np.asarray([repr(float(u)) for u in uniques.tolist()] + [NONE], dtype=object)
    return names[codes]  # the sentinel -1 picks NONE, the last name


def optional_text(frame: Frame, name: str, rows: np.ndarray | None = None) -> np.ndarray:
    """A text column as :func:`text` gives it; all :data:`NONE` when the frame has no such column."""
    if name not in column_names(frame):
        return np.full(row_count(frame) if rows is None else len(rows), NONE, dtype=object)
    return text(cells(frame, name, rows))


def cased(col: pd.Series | np.ndarray, *, lower: bool = False) -> np.ndarray:
    """A text column upper- (or lower-) cased, missing cells ``""``; values repeat, so each is cased once."""
    codes, distinct = cased_codes(col, lower=lower)
    return distinct[codes]


def cased_codes(col: pd.Series | np.ndarray, *, lower: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """:func:`cased` as codes into its cased distinct values: ``distinct[codes]`` is the cased column."""
    values = col.to_numpy(dtype=object) if isinstance(col, pd.Series) else col
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    distinct = np.asarray([str(u).lower() if lower else str(u).upper() for u in uniques] + [""], dtype=object)
    return codes, distinct


def decoded_parameters(value: Any) -> Any:
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


def parameter_hashes(frame: Frame, rows: np.ndarray | None = None) -> np.ndarray:
    """``parameters_hash``, computed from ``parameters`` where the hash is missing but parameters are not."""
    out = optional_text(frame, "parameters_hash", rows)
    if "parameters" in column_names(frame) and (out == NONE).any():
        params = cells(frame, "parameters", rows)
        for i in np.flatnonzero((out == NONE) & ~pd.isna(params)):
            out[i] = parameters_hash(decoded_parameters(params[i])) or NONE
    return out
