"""Signals from the other flows: the estate's failure rates, failures elsewhere, and co-failure partners.

Infrastructure trouble fails many flows at once, and flows that share a dependency fail together; these
features see it from the failures of every flow known before the target's cutoff.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forewarn.learning.features._columns import timedelta_ns
from forewarn.learning.features._sorted import Grouped, cumulative, distinct, ragged, ratio
from forewarn.learning.features._view import FlowWindows, Targets, VisibleRuns
from forewarn.learning.features.config import FeatureConfig

PAIR_CHUNK = 4_000_000
"""(target, window failure) pairs expanded at once by the partner count; bounds memory, not results."""


@dataclass(frozen=True, slots=True)
class GlobalFailures:
    """Failures of all flows before each cutoff: the lookback rate (the flows' prior) and the global window's."""

    lookback_rate: np.ndarray
    """Failure rate of all flows in the lookback (0 with no history)."""
    window_rate: np.ndarray
    """Failure rate of all flows in the global window (the lookback rate when it holds no labelled run)."""
    window_failures: np.ndarray
    """Failures of all flows in the global window."""

    @classmethod
    def of(cls, visible: VisibleRuns, cutoff: np.ndarray, config: FeatureConfig) -> GlobalFailures:
        """Count them with searches in the visible rows, which are in known-at order."""
        failures_before, labelled_before = cumulative(visible.failed), cumulative(visible.labelled)
        end = np.searchsorted(visible.known, cutoff)
        lookback_start = np.searchsorted(visible.known, cutoff - timedelta_ns(config.lookback))
        window_start = np.searchsorted(visible.known, cutoff - timedelta_ns(config.global_window))
        lookback_rate = ratio(
            failures_before[end] - failures_before[lookback_start],
            labelled_before[end] - labelled_before[lookback_start],
            0.0,
        )
        window_failures = failures_before[end] - failures_before[window_start]
        window_rate = ratio(window_failures, labelled_before[end] - labelled_before[window_start], lookback_rate)
        return cls(lookback_rate=lookback_rate, window_rate=window_rate, window_failures=window_failures)


def cross_flow_features(
    windows: FlowWindows, targets: Targets, global_failures: GlobalFailures, config: FeatureConfig
) -> dict[str, np.ndarray]:
    """The estate's failure rates, other flows' failures in the global window, and the partner count."""
    visible = windows.visible
    own_failures = windows.failures_since(windows.lookback_start)
    partners = partner_failures(visible.known[visible.failed], visible.flow[visible.failed], targets, config) / (
        own_failures + 1.0
    )
    return {
        "global_failure_rate": global_failures.lookback_rate,
        "global_failure_rate_window": global_failures.window_rate,
        "other_flows_failures_window": global_failures.window_failures - windows.failures_since(windows.window_start),
        "partner_failures_window": partners,
    }


def partner_failures(
    failure_known: np.ndarray, failure_flow: np.ndarray, targets: Targets, config: FeatureConfig
) -> np.ndarray:
    """Per target: sum over other flows' failures in ``[cutoff - global_window, cutoff)`` of their co-failure events.

    A co-failure event ``(A, B, t)`` is a failure of flow ``A`` known at ``t`` with at least one failure of
    flow ``B != A`` known in ``[t - global_window, t)``. For a target of flow ``A``, each window failure of a
    flow ``B`` adds the number of ``(A, B)`` events known in ``[cutoff - lookback, cutoff)``. Both ends of
    every event are known before the cutoff, so the affinity only uses history the target could have seen;
    it is computed fresh for each cutoff (an expanding window), never fitted on a batch.
    """
    total = np.zeros(len(targets.flow))
    if len(failure_known) == 0 or len(targets.flow) == 0:
        return total
    events = _co_failure_events(failure_known, failure_flow, targets, config)
    if events is None:
        return total
    lookback, window = timedelta_ns(config.lookback), timedelta_ns(config.global_window)
    cutoff, flow_count = targets.cutoff, targets.flow_count
    window_start = np.searchsorted(failure_known, cutoff - window)
    window_end = np.searchsorted(failure_known, cutoff)
    pairs_before = np.cumsum(np.maximum(window_end - window_start, 0))
    start = 0
    while start < len(total):  # chunks of targets keep the expanded pairs below PAIR_CHUNK
        done = pairs_before[start - 1] if start else 0
        stop = max(int(np.searchsorted(pairs_before, done + PAIR_CHUNK, side="right")), start + 1)
        target, failure = ragged(window_start[start:stop], window_end[start:stop])
        target += start
        partner = failure_flow[failure]
        elsewhere = partner != targets.flow[target]
        target, partner = target[elsewhere], partner[elsewhere]
        pair = targets.flow[target] * flow_count + partner
        event_count = events.before(pair, cutoff[target]) - events.before(pair, cutoff[target] - lookback)
        total += np.bincount(target, weights=event_count, minlength=len(total))
        start = stop
    return total


def _co_failure_events(
    failure_known: np.ndarray, failure_flow: np.ndarray, targets: Targets, config: FeatureConfig
) -> Grouped | None:
    """The co-failure events, searchable by ``(A, B)`` and time; None when there are none.

    Only failures of the targets' flows in the lookback of some cutoff can be counted, so only they are
    owners (the ``A`` side); each owner has at most one event per partner flow ``B``.
    """
    lookback, window = timedelta_ns(config.lookback), timedelta_ns(config.global_window)
    flow_count = targets.flow_count
    owners = np.flatnonzero(
        np.isin(failure_flow, np.unique(targets.flow)) & (failure_known >= int(targets.cutoff.min()) - lookback)
    )
    starts = np.searchsorted(failure_known, failure_known[owners] - window)
    ends = np.searchsorted(failure_known, failure_known[owners])
    owner_at, preceding = ragged(starts, ends)
    owner = owners[owner_at]
    elsewhere = failure_flow[preceding] != failure_flow[owner]
    owner, partner = owner[elsewhere], failure_flow[preceding][elsewhere]
    unique_pairs = distinct(owner.astype(np.int64) * flow_count + partner)
    event_owner, event_partner = unique_pairs // flow_count, unique_pairs % flow_count
    if len(event_owner) == 0:
        return None
    return Grouped(failure_flow[event_owner].astype(np.int64) * flow_count + event_partner, failure_known[event_owner])
