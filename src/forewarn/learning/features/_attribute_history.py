"""History of the run's pre-run attributes: how often runs that shared its user, queue, hour... failed.

The flow's own failure rate knows nothing of a flow it has never seen, and on real schedulers most flows are
young (12,303 executables in 77,222 jobs of the CTC trace). The people and places a run shares with earlier
runs carry over: a user whose jobs keep failing, a queue with a broken node. For each text pre-run attribute
``feature_<name>`` and for the hour of day of the scheduled start, over ended runs known in
``[cutoff - lookback, cutoff)`` (all flows):

* ``<name>_failure_rate_smoothed``: failures / labelled runs of that value, smoothed toward the global rate
  with ``prior_strength`` pseudo-runs, as the flow's own rate is;
* ``<name>_runs_seen``: labelled runs with that value (how much the rate rests on);
* ``flow_<name>_failure_rate_smoothed``: the same among the flow's own runs with that value, smoothed
  toward the flow's smoothed rate (a flow that fails for one user only);
* ``flow_<name>_runs_seen``: the flow's own labelled runs with that value.

Each is a count of a sorted ``(value, known-at)`` array between two searches, so the cost is one sort per
attribute whatever the number of targets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from forewarn.learning.features._columns import HOUR, timedelta_ns
from forewarn.learning.features._sorted import Grouped, cumulative, distinct
from forewarn.learning.features._view import Targets, VisibleRuns
from forewarn.learning.features.config import FeatureConfig
from forewarn.learning.features.vocabulary import RunVocabulary
from forewarn.records import FEATURE_PREFIX

HOUR_ATTRIBUTE = "hour"
"""The name the hour of day of the scheduled start (UTC) takes among the attributes."""


def hour_of_day(ns: np.ndarray) -> np.ndarray:
    """The UTC hour (0-23) of int64 ns times."""
    return (ns // HOUR) % 24


def attribute_history_features(
    visible: VisibleRuns,
    targets: Targets,
    text_attributes: list[tuple[str, np.ndarray]],
    vocab: RunVocabulary,
    global_rate: np.ndarray,
    flow_rate: np.ndarray,
    config: FeatureConfig,
) -> list[tuple[str, np.ndarray]]:
    """The six columns per attribute: the hour of day, then each of ``text_attributes`` (``(name, values)``)."""
    counter = _Counter(visible, targets, config)
    hours = hour_of_day(visible.ref), hour_of_day(targets.reference)
    out = counter.columns(HOUR_ATTRIBUTE, *hours, 24, global_rate, flow_rate)
    signature = [(visible.flow, targets.flow)]
    for name, values in text_attributes:
        codes = vocab.attributes.get(name)
        if codes is None or name not in visible.attribute_names:
            history = np.full(len(visible.known), -1, dtype=np.int64)
            target = np.zeros(len(values), dtype=np.int64)
            size = 1
        else:
            history = visible.attrs[:, visible.attribute_names.index(name)]
            target = codes.lookup(values, {})
            size = int(max(len(codes), target.max(initial=0))) + 1
        out += counter.columns(name, history, target, size, global_rate, flow_rate)
        signature.append((history, target))
    if len(signature) > 1:
        out += counter.same_job_columns(*_combined(signature), flow_rate)
    return out


SAME_JOB = "same_job"
"""The name the flow with all of the run's text attributes together takes among the attributes."""


def _combined(columns: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """One code per distinct combination of the columns' codes, for history and targets alike.

    Only equality matters (a history row counts for a target with the same combination), so the codes are
    renumbered after each column and stay small whatever the number of columns.
    """
    history, target = columns[0]
    n = len(history)
    key = np.concatenate([history, target]).astype(np.int64)
    for history, target in columns[1:]:
        codes = np.concatenate([history, target]).astype(np.int64) + 1  # -1 (no value) is a value here
        key = pd.factorize(key * (int(codes.max(initial=0)) + 1) + codes)[0].astype(np.int64)
    return key[:n], key[n:]


def attribute_history_names(targets: pd.DataFrame) -> list[str]:
    """The columns :func:`attribute_history_features` writes for ``targets`` (text ``feature_*`` columns)."""
    names = [HOUR_ATTRIBUTE] + [
        str(c)[len(FEATURE_PREFIX) :]
        for c in targets.columns
        if str(c).startswith(FEATURE_PREFIX) and not pd.api.types.is_bool_dtype(targets[c].dtype)
    ]
    same_job = list(_same_job_names()) if len(names) > 1 else []
    return [column for name in names for column in _names(name)] + same_job


_SUFFIXES = (
    "_failure_rate_smoothed",
    "_runs_seen",
    "_failure_rate_window",
    "_last_ended_failed",
    "_failure_rate_recent",
    "_to_flow_usual",
)


def is_attribute_history_feature(name: str) -> bool:
    """Whether ``name`` is a column :func:`attribute_history_features` writes (for some attribute).

    Example::

        >>> is_attribute_history_feature("queue_failure_rate_window"), is_attribute_history_feature("queue")
        (True, False)
    """
    return any(name.endswith(suffix) and len(name) > len(suffix) for suffix in _SUFFIXES)


def attribute_of(name: str, row: Mapping[str, Any]) -> tuple[str, str, bool] | None:
    """``(attribute, suffix, within the flow)`` of an attribute-history column name; None for another name.

    ``flow_user_runs_seen`` is the flow's runs with its user where the row has ``feature_user`` (an attribute
    named ``flow_user`` otherwise).

    Example::

        >>> attribute_of("flow_user_runs_seen", {"feature_user": "u1"}), attribute_of("hour_runs_seen", {})
        (('user', '_runs_seen', True), ('hour', '_runs_seen', False))
    """
    suffix = next((s for s in _SUFFIXES if name.endswith(s) and len(name) > len(s)), None)
    if suffix is None:
        return None
    stem = name[: -len(suffix)]
    if stem.startswith("flow_") and suffix in _PAIR_SUFFIXES:
        inner = stem[len("flow_") :]
        if inner == HOUR_ATTRIBUTE or f"{FEATURE_PREFIX}{inner}" in row:
            return inner, suffix, True
    return stem, suffix, False


_PAIR_SUFFIXES = ("_failure_rate_smoothed", "_runs_seen")


def _names(name: str) -> tuple[str, str, str, str, str, str, str]:
    return (
        f"{name}_failure_rate_smoothed",
        f"{name}_runs_seen",
        f"{name}_failure_rate_window",
        f"{name}_last_ended_failed",
        f"{name}_failure_rate_recent",
        f"flow_{name}_failure_rate_smoothed",
        f"flow_{name}_runs_seen",
    )


@dataclass(frozen=True, slots=True)
class _Counts:
    """Per target, over the runs sharing its value: labelled runs and failures in the lookback and in the
    global window, and whether the last of them failed."""

    runs: np.ndarray
    fails: np.ndarray
    recent_runs: np.ndarray
    recent_fails: np.ndarray
    last_failed: np.ndarray
    last_runs: np.ndarray
    """Labelled runs among the last ``recent_runs`` of them in the lookback."""
    last_fails: np.ndarray


class _Counter:
    """Counts labelled runs and failures per value in each target's lookback, from the visible history."""

    def __init__(self, visible: VisibleRuns, targets: Targets, config: FeatureConfig) -> None:
        self.visible, self.targets, self.config = visible, targets, config
        self.times = distinct(visible.known)
        self.since = targets.cutoff - timedelta_ns(config.lookback)
        self.recent_since = targets.cutoff - timedelta_ns(config.global_window)

    def _counts(self, history_key: np.ndarray, target_key: np.ndarray) -> _Counts:
        usable = history_key >= 0
        rows = np.flatnonzero(usable & self.visible.labelled)
        grouped = Grouped(history_key[rows], self.visible.known[rows], self.times)
        failed = self.visible.failed[rows][grouped.order]
        failures = cumulative(failed)
        start = grouped.before(target_key, self.since)
        recent = grouped.before(target_key, self.recent_since)
        end = grouped.before(target_key, self.targets.cutoff)
        last_runs = np.minimum(end - start, self.config.recent_runs)
        last_failed = np.where(end > start, failed[np.maximum(end - 1, 0)] if len(failed) else False, False)
        return _Counts(
            runs=end - start,
            fails=failures[end] - failures[start],
            recent_runs=end - recent,
            recent_fails=failures[end] - failures[recent],
            last_failed=last_failed.astype(np.float64),
            last_runs=last_runs,
            last_fails=failures[end] - failures[end - last_runs],
        )

    def columns(
        self,
        name: str,
        history: np.ndarray,
        target: np.ndarray,
        size: int,
        global_rate: np.ndarray,
        flow_rate: np.ndarray,
    ) -> list[tuple[str, np.ndarray]]:
        k = self.config.prior_strength
        names = _names(name)
        out = self._value_columns(names[:5], history, target, global_rate)
        pair_history = np.where(history >= 0, self.visible.flow * size + history, -1)
        pair = self._counts(pair_history, self.targets.flow * size + target)
        return [
            *out,
            (names[5], _smoothed(pair.fails, pair.runs, flow_rate, k)),
            (names[6], pair.runs.astype(np.float64)),
        ]

    def same_job_columns(
        self, history: np.ndarray, target: np.ndarray, flow_rate: np.ndarray
    ) -> list[tuple[str, np.ndarray]]:
        """The history of runs of the flow with all of the target's attributes (its job, resubmitted)."""
        return self._value_columns(_same_job_names(), history, target, flow_rate)

    def _value_columns(
        self, names: tuple[str, ...], history: np.ndarray, target: np.ndarray, prior: np.ndarray
    ) -> list[tuple[str, np.ndarray]]:
        """Rate (smoothed toward ``prior``), runs, window rate and last outcome of the runs sharing a value."""
        k = self.config.prior_strength
        value = self._counts(history, target)
        rate, seen, recent, last, last_runs = names
        value_rate = _smoothed(value.fails, value.runs, prior, k)
        return [
            (rate, value_rate),
            (seen, value.runs.astype(np.float64)),
            (recent, _smoothed(value.recent_fails, value.recent_runs, value_rate, k)),
            (last, value.last_failed),
            (last_runs, _smoothed(value.last_fails, value.last_runs, value_rate, k)),
        ]


def _same_job_names() -> tuple[str, str, str, str, str]:
    return (
        f"{SAME_JOB}_failure_rate_smoothed",
        f"{SAME_JOB}_runs_seen",
        f"{SAME_JOB}_failure_rate_window",
        f"{SAME_JOB}_last_ended_failed",
        f"{SAME_JOB}_failure_rate_recent",
    )


def _smoothed(fails: np.ndarray, runs: np.ndarray, prior: np.ndarray, k: float) -> np.ndarray:
    """``(fails + k * prior) / (runs + k)``; the prior itself where there are no runs (and ``k`` is 0)."""
    den = runs + k
    return np.where(den > 0, (fails + k * prior) / np.where(den > 0, den, 1), prior).astype(np.float64)
