"""``build_features``: prepare the history once, then describe every target with each feature family.

The families are modules of their own, in the order ``docs/features.md`` gives them: the run's own
attributes (``_run_attributes``), the flow's own history (``_flow_history``), the other flows
(``_cross_flow``) and task attempts (``_task_attempts``). Each returns its columns by name;
:func:`describe` puts them in :data:`~forewarn.learning.features.NUMERIC_FEATURES` order.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd

from forewarn.errors import ConfigurationError
from forewarn.learning._pandas_fast import frame_from_arrays
from forewarn.learning.features._attribute_history import attribute_history_features, attribute_history_names
from forewarn.learning.features._cadence import RELATIVE_SUFFIX, cadence_features, relative_attribute_features
from forewarn.learning.features._columns import lead_ns, number_text, optional_text, require, timedelta_ns
from forewarn.learning.features._cross_flow import GlobalFailures, cross_flow_features
from forewarn.learning.features._flow_history import flow_history_features
from forewarn.learning.features._run_attributes import attribute_columns, run_attribute_features
from forewarn.learning.features._task_attempts import task_attempt_features
from forewarn.learning.features._view import FlowWindows, Targets, VisibleRuns
from forewarn.learning.features.config import (
    BASELINE_SMOOTHED_RATE,
    CATEGORICAL_FEATURES,
    DEFAULT_CONFIG,
    NUMERIC_FEATURES,
    FeatureConfig,
)
from forewarn.learning.features.index import AttemptIndex, RunIndex
from forewarn.learning.features.windows import target_ids_and_times
from forewarn.records import FEATURE_PREFIX


def build_features(
    targets: pd.DataFrame,
    history: pd.DataFrame | RunIndex | None = None,
    attempts: pd.DataFrame | AttemptIndex | None = None,
    *,
    lead: timedelta = timedelta(0),
    config: FeatureConfig = DEFAULT_CONFIG,
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
    lead_in_ns = lead_ns(lead)
    if history is None:
        history = targets
    if not isinstance(history, RunIndex):
        require(history, ("flow_run_id", "flow_name", "end_time", "state"), "history")
    ids, reference = target_ids_and_times(targets)
    if len(ids) == 0:
        return _empty(targets)
    cutoff = reference - lead_in_ns
    # the history some cutoff can see: co-failure events look one global window past the lookback
    since = int(cutoff.min()) - timedelta_ns(config.lookback) - timedelta_ns(config.global_window)
    until = int(cutoff.max())
    runs = history if isinstance(history, RunIndex) else RunIndex.from_frame(history, since=since, until=until)
    if attempts is not None and not isinstance(attempts, AttemptIndex):
        if len(attempts) == 0:
            attempts = None
        else:
            lookup = history if isinstance(history, pd.DataFrame) else None
            attempts = AttemptIndex.from_frame(attempts, runs=lookup, since=since, until=until, failed_only=True)
    return describe(targets, ids, reference, cutoff, runs, attempts, config)


def describe(
    targets: pd.DataFrame,
    ids: np.ndarray,
    reference: np.ndarray,
    cutoff: np.ndarray,
    runs: RunIndex,
    attempts: AttemptIndex | None,
    config: FeatureConfig,
) -> pd.DataFrame:
    """The features of ``targets`` (ids, reference times and cutoffs given) from prepared history."""
    coded = Targets.coded(targets, ids, reference, cutoff, runs)
    visible = VisibleRuns.of(runs, cutoff, config)
    windows = FlowWindows.of(visible, coded, config)
    global_failures = GlobalFailures.of(visible, cutoff, config)
    flow_history = flow_history_features(windows, coded, global_failures.lookback_rate, config)
    numeric = {
        **run_attribute_features(windows, coded, config),
        **flow_history,
        **cadence_features(windows, coded, flow_history["flow_hours_since_failure"], config),
        **cross_flow_features(windows, coded, global_failures, config),
        **task_attempt_features(attempts, runs.vocab.flows, coded, config),
    }
    columns = [("flow_name", coded.flow_names), ("deployment", optional_text(targets, "deployment"))]
    columns += [(name, np.asarray(numeric[name], dtype=np.float64)) for name in NUMERIC_FEATURES]
    attributes = attribute_columns(targets)
    columns += attributes
    not_flags = [  # yes/no flags: the model reads them directly
        (name[len(FEATURE_PREFIX) :], values)
        for name, values in attributes
        if not pd.api.types.is_bool_dtype(targets[name].dtype)
    ]
    text_attributes = [(name, values if values.dtype == object else number_text(values)) for name, values in not_flags]
    columns += attribute_history_features(
        visible,
        coded,
        text_attributes,
        runs.vocab,
        global_failures.lookback_rate,
        np.asarray(numeric[BASELINE_SMOOTHED_RATE], dtype=np.float64),
        config,
    )
    numbers = [(name, values) for name, values in not_flags if values.dtype != object]
    columns += relative_attribute_features(windows, numbers, runs.vocab, config)
    return frame_from_arrays(columns, pd.Index(ids, name="flow_run_id", dtype=object))


def _empty(targets: pd.DataFrame) -> pd.DataFrame:
    """The zero-row result, with the columns and dtypes a non-empty one would have."""
    columns = {name: pd.Series(dtype=object) for name in CATEGORICAL_FEATURES}
    columns.update({name: pd.Series(dtype=np.float64) for name in NUMERIC_FEATURES})
    for name in targets.columns:
        if str(name).startswith(FEATURE_PREFIX):
            numeric = pd.api.types.is_numeric_dtype(targets[name].dtype)
            columns[str(name)] = pd.Series(dtype=np.float64 if numeric else object)
    for name in attribute_history_names(targets):
        columns[name] = pd.Series(dtype=np.float64)
    for name in targets.columns:
        numeric = pd.api.types.is_numeric_dtype(targets[name].dtype)
        if str(name).startswith(FEATURE_PREFIX) and numeric and not pd.api.types.is_bool_dtype(targets[name].dtype):
            columns[f"{str(name)[len(FEATURE_PREFIX) :]}{RELATIVE_SUFFIX}"] = pd.Series(dtype=np.float64)
    return pd.DataFrame(columns, index=pd.Index([], name="flow_run_id", dtype=object))
