"""Fetched rows as the readers return them: pandas DataFrames, or numpy columns for live scoring.

Rows arrive with their times as the driver returns them (text on SQLite); each column is converted at
once: times to ``datetime64[ns, UTC]``, JSON text to ``dict``/``list`` (``tags`` always a list),
numbers and flags to their dtype, and the ``features`` JSON spread into ``feature_<name>`` columns.
Missing strings stay ``None``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from forewarn.store._codec import (
    TIME_COLUMNS,
    decode_json_cells,
    decode_tags,
    is_time,
    parse_times,
    with_feature_columns,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

_JSON_COLUMNS = ("parameters", "reasons", "features", "tags")
_INTEGER_COLUMNS = ("id", "attempt")
_FLOAT_COLUMNS = ("duration_seconds", "lead_seconds", "risk", "threshold")
_FLAG_COLUMNS = ("used_fallback", "warned")


def rows_frame(rows: Sequence[Any], columns: Sequence[str], *, sqlite: bool) -> pd.DataFrame:
    """``rows`` of a table select as a typed DataFrame with ``columns``, plus ``feature_<name>`` columns."""
    import pandas as pd

    # Built as object columns first so missing strings stay None (not NaN) on every pandas version.
    frame = pd.DataFrame([tuple(r) for r in rows], columns=list(columns), dtype=object)
    for name in columns:
        if name in TIME_COLUMNS:
            times = parse_times(frame[name].to_numpy(dtype=object), sqlite=sqlite)
            frame[name] = pd.DatetimeIndex(times).tz_localize("UTC").array
        elif name in _JSON_COLUMNS:
            decoded = decode_json_cells(frame[name].tolist())
            if name == "features":
                decoded = [{} if value is None else value for value in decoded]
            elif name == "tags":
                decoded = [decode_tags(value) for value in decoded]
            frame[name] = pd.Series(decoded, index=frame.index, dtype=object)
        elif name in _INTEGER_COLUMNS:
            frame[name] = frame[name].astype("int64")
        elif name in _FLOAT_COLUMNS:
            frame[name] = frame[name].astype("float64")
        elif name in _FLAG_COLUMNS:
            frame[name] = frame[name].astype(bool)
        elif name == "retryable":
            frame[name] = frame[name].astype("boolean")
    if "features" in columns:
        frame = with_feature_columns(frame)
    return frame


def ended_columns(rows: Sequence[Any], columns: Sequence[str], *, sqlite: bool) -> dict[str, np.ndarray]:
    """``rows`` of a lean select as numpy columns: object text, each time column parsed in one call."""
    import numpy as np

    n = len(rows)
    cells = list(zip(*rows, strict=True)) if n else [()] * len(columns)
    out: dict[str, np.ndarray] = {}
    for name, values in zip(columns, cells, strict=True):
        array = np.empty(n, dtype=object)
        array[:] = values
        out[name] = parse_times(array, sqlite=sqlite) if is_time(name) else array
    return out


def ended_frame(columns: dict[str, np.ndarray]) -> pd.DataFrame:
    """:func:`ended_columns` as a frame, times ``datetime64[ns, UTC]``."""
    import pandas as pd

    data: dict[str, Any] = {
        name: pd.DatetimeIndex(values).tz_localize("UTC").array if is_time(name) else values
        for name, values in columns.items()
    }
    return pd.DataFrame(data, copy=False)
