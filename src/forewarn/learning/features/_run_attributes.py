"""The run's own pre-run attributes: when it is due, its parameters, and the ``feature_*`` columns given with it.

Everything here is known when the run is scheduled. The parameter features compare the run's parameter set
with the flow's past runs (:class:`FlowWindows`), as ``docs/features.md`` lists them under "before the run".
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from forewarn.learning.features._columns import DAY, HOUR, decoded_parameters, text, timedelta_ns
from forewarn.learning.features._view import FlowWindows, Targets
from forewarn.learning.features.config import FeatureConfig
from forewarn.records import FEATURE_PREFIX


def run_attribute_features(windows: FlowWindows, targets: Targets, config: FeatureConfig) -> dict[str, np.ndarray]:
    """The calendar of the scheduled start and the parameter features, by name."""
    return {**_calendar(targets.reference), **_parameter_features(windows, targets, config)}


def attribute_columns(targets: pd.DataFrame) -> list[tuple[str, np.ndarray]]:
    """The targets' ``feature_*`` columns as the model reads them, in the targets' column order.

    Example::

        >>> t = pd.DataFrame({"flow_run_id": ["a", "b"], "feature_rows": [10, None], "feature_src": ["sap", None]})
        >>> [(name, values.tolist()) for name, values in attribute_columns(t)]
        [('feature_rows', [10.0, nan]), ('feature_src', ['sap', '<none>'])]
    """
    return [
        (str(name), _attribute_values(targets[name]))
        for name in targets.columns
        if str(name).startswith(FEATURE_PREFIX)
    ]


def _calendar(reference: np.ndarray) -> dict[str, np.ndarray]:
    """Hour of day and weekday on the unit circle, hour of the week and days to the month's end (UTC)."""
    hour = (reference % DAY) / HOUR
    weekday = (reference // DAY + 3) % 7  # the epoch was a Thursday; Monday = 0
    days = reference.astype("datetime64[ns]").astype("datetime64[D]")
    next_month = (days.astype("datetime64[M]") + 1).astype("datetime64[D]")
    return {
        "hour_sin": np.sin(2 * np.pi * hour / 24),
        "hour_cos": np.cos(2 * np.pi * hour / 24),
        "dow_sin": np.sin(2 * np.pi * weekday / 7),
        "dow_cos": np.cos(2 * np.pi * weekday / 7),
        "hour_of_week": weekday * 24 + hour,
        "days_to_month_end": (next_month - days).astype(np.int64) - 1,
    }


def _parameter_features(windows: FlowWindows, targets: Targets, config: FeatureConfig) -> dict[str, np.ndarray]:
    """How many parameters, whether the set differs from the flow's last run's, how often the flow ran it."""
    visible, cutoff = windows.visible, targets.cutoff
    by_params = windows.grouped_with(visible.params, targets.params_count)
    params_key = targets.flow * targets.params_count + targets.params
    runs_seen = by_params.before(params_key, cutoff) - by_params.before(
        params_key, cutoff - timedelta_ns(config.lookback)
    )
    return {
        "parameter_count": _parameter_count(targets.frame),
        "parameters_changed": windows.last_differs(visible.params, targets.params),
        "parameters_runs_seen": np.minimum(runs_seen, config.recent_runs),
    }


def _parameter_count(frame: pd.DataFrame) -> np.ndarray:
    """How many parameters each run was given (0 when unknown)."""
    if "parameters" not in frame.columns:
        return np.zeros(len(frame))
    values = (decoded_parameters(v) for v in frame["parameters"].to_numpy(dtype=object))
    return np.asarray([len(v) if isinstance(v, Mapping) else 0 for v in values], dtype=np.float64)


def _attribute_values(col: pd.Series) -> np.ndarray:
    """A ``feature_*`` column: numbers (and booleans) as float64, anything else as text categories."""
    dtype = col.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "fiub":  # plain numpy numbers: one cast
        return col.to_numpy().astype(np.float64)
    if pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):  # nullable Int64, Float64...
        return col.to_numpy(dtype=np.float64, na_value=np.nan)
    values = col.to_numpy(dtype=object)
    listed = values.tolist()
    if all(v is None or (type(v) is float and v != v) for v in listed):  # all missing (a live run)
        return np.full(len(values), np.nan, dtype=np.float64)
    if all(type(v) is str for v in listed):  # text (a live run's missing attribute is NONE): no parsing
        return text(values)
    present = values[~pd.isna(values)]
    if all(isinstance(v, (int, float, np.number)) for v in present.tolist()):
        return pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64)
    return text(values)
