"""The flow's cadence, and the run's numeric pre-run attributes against what the flow usually asks for.

A user whose job just crashed resubmits it minutes later; a job that asks for ten times the processors its
executable usually gets is not the usual job. Both are read from the flow's ended runs known in
``[cutoff - lookback, cutoff)`` (:class:`FlowWindows`), as every flow-history feature is:

* ``flow_hours_since_end``: hours since the flow's last run ended (the lookback with none);
* ``flow_usual_gap_hours``: the mean gap between the ends of the flow's last ``recent_runs`` ended runs
  (the lookback with fewer than two);
* ``flow_gap_ratio``: the first over the second (1 with fewer than two runs): below 1, the run comes sooner
  than this flow's runs usually follow each other;
* ``flow_failure_gap_ratio``: hours since the flow's last failure over its usual gap (1 with no failure or
  fewer than two runs): a resubmission right after a failure is far below 1;
* ``flow_runs_ended_hour``: the flow's runs that ended in the hour before the cutoff;
* ``<name>_to_flow_usual`` for each numeric ``feature_<name>``: the run's value over the mean value of the
  flow's last ``recent_runs`` ended runs that had one (1 when either is missing or the mean is 0).

A run still going at the cutoff is not counted: its end is not known yet.
"""

from __future__ import annotations

import numpy as np

from forewarn.learning.features._columns import HOUR, NONE, timedelta_ns
from forewarn.learning.features._sorted import cumulative, ragged, ratio, take_or
from forewarn.learning.features._view import FlowWindows, Targets
from forewarn.learning.features.config import FeatureConfig
from forewarn.learning.features.vocabulary import RunVocabulary

RELATIVE_SUFFIX = "_to_flow_usual"
"""The suffix of the column comparing a numeric attribute with the flow's usual value."""


def cadence_features(
    windows: FlowWindows, targets: Targets, hours_since_failure: np.ndarray, config: FeatureConfig
) -> dict[str, np.ndarray]:
    """The cadence features of the target's flow; ``hours_since_failure`` is ``flow_hours_since_failure``."""
    visible, order = windows.visible, windows.order
    known = visible.known[order]
    lookback_hours = timedelta_ns(config.lookback) / HOUR
    count = windows.run_count
    last = np.where(count > 0, windows.end - 1, 0)
    last_known = take_or(known, last, 0)
    since_end = np.where(count > 0, np.minimum((targets.cutoff - last_known) / HOUR, lookback_hours), lookback_hours)
    recent = np.minimum(count, config.recent_runs)
    first_recent = take_or(known, np.where(recent > 0, windows.end - recent, 0), 0)
    gaps = recent - 1
    usual_gap = np.where(gaps > 0, (last_known - first_recent) / HOUR / np.maximum(gaps, 1), lookback_hours)
    usual_gap = np.maximum(usual_gap, 1 / 60)  # a burst of runs ending together: a minute, not zero
    has_gap = gaps > 0
    failed_once = hours_since_failure < lookback_hours
    hour_start = windows.flow_start(targets, targets.cutoff - HOUR)
    return {
        "flow_hours_since_end": since_end,
        "flow_usual_gap_hours": usual_gap,
        "flow_gap_ratio": np.where(has_gap, since_end / usual_gap, 1.0),
        "flow_failure_gap_ratio": np.where(has_gap & failed_once, hours_since_failure / usual_gap, 1.0),
        "flow_runs_ended_hour": (windows.end - hour_start).astype(np.float64),
    }


def numeric_values(vocab: RunVocabulary, name: str, codes: np.ndarray) -> np.ndarray:
    """The numbers behind attribute codes (the index codes numbers as their text); NaN for none or text."""
    table = vocab.attributes.get(name)
    if table is None:
        return np.full(len(codes), np.nan)
    numbers = np.asarray([_number(n) for n in table.names] + [np.nan], dtype=np.float64)
    return numbers[np.where(codes >= 0, codes, len(table.names))]


def _number(name: str) -> float:
    if name == NONE:
        return np.nan
    try:
        return float(name)
    except ValueError:
        return np.nan


def relative_attribute_features(
    windows: FlowWindows,
    numeric_attributes: list[tuple[str, np.ndarray]],
    vocab: RunVocabulary,
    config: FeatureConfig,
) -> list[tuple[str, np.ndarray]]:
    """``<name>_to_flow_usual`` for each ``(name, target values)`` of a numeric attribute."""
    visible, order = windows.visible, windows.order
    out = []
    for name, target in numeric_attributes:
        if name in visible.attribute_names:
            history = numeric_values(vocab, name, visible.attrs[order, visible.attribute_names.index(name)])
        else:
            history = np.full(len(order), np.nan)
        present = ~np.isnan(history)
        # the lookback again, as positions in the sequence of the flow's runs that had a value
        present_before = cumulative(present)
        first, end = present_before[windows.lookback_start], present_before[windows.end]
        recent = np.minimum(end - first, config.recent_runs)
        # at most recent_runs values each, summed in one order: the same whatever else is in the batch
        owner, position = ragged(end - recent, end)
        sums = np.bincount(owner, weights=history[present][position], minlength=len(end))
        usual = ratio(sums, recent, np.nan)
        usable = ~np.isnan(target) & ~np.isnan(usual) & (usual != 0)
        value = np.where(usable, target / np.where(usable, usual, 1.0), 1.0)
        out.append((f"{name}{RELATIVE_SUFFIX}", value.astype(np.float64)))
    return out
