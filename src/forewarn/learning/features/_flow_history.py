"""The flow's own history in the lookback: failure rates, streaks, the last runs, durations, versions.

Every count is over the flow's ended runs known in ``[cutoff - lookback, cutoff)`` (:class:`FlowWindows`);
rates count only labelled runs (failed or completed), so a ``CANCELLED`` run is a run but not an outcome.
"""

from __future__ import annotations

import numpy as np

from forewarn.learning.features._columns import HOUR, timedelta_ns
from forewarn.learning.features._sorted import cumulative, ratio, take_or
from forewarn.learning.features._view import FlowWindows, Targets
from forewarn.learning.features.config import BASELINE_LAST_FAILED, BASELINE_SMOOTHED_RATE, FeatureConfig

DURATION_TREND_RUNS = 3
"""The recent successful runs whose mean duration the trend compares with the last ``recent_runs``."""


def flow_history_features(
    windows: FlowWindows, targets: Targets, global_rate: np.ndarray, config: FeatureConfig
) -> dict[str, np.ndarray]:
    """The features of the target's own flow's history; ``global_rate`` is the prior of its smoothed rate."""
    outcomes = _outcome_features(windows, targets, global_rate, config)
    versions = _version_features(windows, targets, outcomes[BASELINE_SMOOTHED_RATE], config)
    return {
        "flow_runs_seen": windows.run_count,
        **outcomes,
        "flow_duration_trend": _duration_trend(windows, config),
        **versions,
    }


def _outcome_features(
    windows: FlowWindows, targets: Targets, global_rate: np.ndarray, config: FeatureConfig
) -> dict[str, np.ndarray]:
    """Failure rates, streaks and the last failure, over the flow's labelled runs in the lookback."""
    visible, order = windows.visible, windows.order
    labelled = visible.labelled[order]
    # the lookback window again, as positions in the sequence of labelled runs only
    labelled_before = cumulative(labelled)
    first, end = labelled_before[windows.lookback_start], labelled_before[windows.end]
    failed, succeeded, known = (
        visible.failed[order][labelled],
        visible.succeeded[order][labelled],
        visible.known[order][labelled],
    )
    failures_before = cumulative(failed)
    labelled_count = end - first
    failure_count = failures_before[end] - failures_before[first]

    position = np.arange(len(failed))
    last_success_at = np.maximum.accumulate(np.where(succeeded, position, -1)) if len(position) else position
    last_failure_at = np.maximum.accumulate(np.where(failed, position, -1)) if len(position) else position
    any_labelled = labelled_count > 0
    last = np.where(any_labelled, end - 1, 0)
    last_success = take_or(last_success_at, last, -1)
    last_failure = take_or(last_failure_at, last, -1)
    failure_streak = np.where(any_labelled, end - np.maximum(last_success + 1, first), 0)
    success_streak = np.where(any_labelled, end - np.maximum(last_failure + 1, first), 0)

    lookback_hours = timedelta_ns(config.lookback) / HOUR
    failed_in_lookback = any_labelled & (last_failure >= first)
    last_failure_known = take_or(known, np.where(failed_in_lookback, last_failure, 0), 0)
    hours_since_failure = np.where(
        failed_in_lookback,
        np.minimum((targets.cutoff - last_failure_known) / HOUR, lookback_hours),
        lookback_hours,
    )

    prior = float(config.prior_strength)
    smoothed = ratio(failure_count + prior * global_rate, labelled_count + prior, global_rate)
    recent_count = np.minimum(config.recent_runs, labelled_count)
    recent = ratio(failures_before[end] - failures_before[end - recent_count], recent_count, smoothed)
    return {
        BASELINE_SMOOTHED_RATE: smoothed,
        "flow_failure_rate_recent": recent,
        "flow_failure_streak": failure_streak,
        "flow_success_streak": success_streak,
        BASELINE_LAST_FAILED: failure_streak > 0,
        "flow_hours_since_failure": hours_since_failure,
    }


def _duration_trend(windows: FlowWindows, config: FeatureConfig) -> np.ndarray:
    """Mean duration of the last few successful runs over that of the last ``recent_runs`` (1 with none)."""
    visible, order = windows.visible, windows.order
    has_duration = visible.has_duration[order]
    # the lookback window again, as positions in the sequence of successful runs with a duration
    with_duration_before = cumulative(has_duration)
    durations_before = cumulative(visible.duration_us[order][has_duration])  # integer µs: exact in any batch
    first, end = with_duration_before[windows.lookback_start], with_duration_before[windows.end]
    count = end - first
    latest, recent = np.minimum(DURATION_TREND_RUNS, count), np.minimum(config.recent_runs, count)
    latest_mean = ratio(durations_before[end] - durations_before[end - latest], latest, 0.0)
    recent_mean = ratio(durations_before[end] - durations_before[end - recent], recent, 0.0)
    return ratio(latest_mean, recent_mean, 1.0)


def _version_features(
    windows: FlowWindows, targets: Targets, flow_rate: np.ndarray, config: FeatureConfig
) -> dict[str, np.ndarray]:
    """Whether the target's version is new, how often it ran, and its failure rate smoothed to the flow's."""
    visible, cutoff = windows.visible, targets.cutoff
    by_version = windows.grouped_with(visible.version, targets.version_count)
    version_key = targets.flow * targets.version_count + targets.version
    end = by_version.before(version_key, cutoff)
    first = by_version.before(version_key, cutoff - timedelta_ns(config.lookback))
    failures_before = cumulative(visible.failed[windows.rows][by_version.order])
    labelled_before = cumulative(visible.labelled[windows.rows][by_version.order])
    failures = failures_before[end] - failures_before[first]
    labelled = labelled_before[end] - labelled_before[first]
    prior = float(config.prior_strength)
    return {
        "version_changed": windows.last_differs(visible.version, targets.version),
        "version_runs_seen": np.minimum(end - first, config.recent_runs),
        "version_failure_rate_smoothed": ratio(failures + prior * flow_rate, labelled + prior, flow_rate),
    }
