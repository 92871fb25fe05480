"""The simulator's failure mechanisms, and how each simulated run ends: its cause, state and end time.

Each mechanism gives every run a probability of failing (:func:`failure_probabilities`, one column per
entry of :data:`FAILURE_CAUSES`); each run draws each mechanism independently and the first that fires is
its cause (:func:`first_causes`). :func:`outcomes` then gives each run its duration and final state.
:mod:`forewarn.history.simulate` documents the mechanisms and their rates.

Example::

    >>> import numpy as np
    >>> first_causes(np.random.default_rng(0), np.asarray([[0.0, 1.0], [0.0, 0.0]])).tolist()
    [1, -1]
"""

from __future__ import annotations

import math

import numpy as np

from forewarn.history._estate import (
    DAY,
    DEPENDENCIES,
    FLAKY_SOURCE,
    HOUR,
    MINUTE,
    SECOND,
    Flow,
    hour_of_day,
    per_flow,
    weekday,
)
from forewarn.records import RunState

FAILURE_CAUSES: tuple[str, ...] = (
    "dependency_outage",
    "maintenance",
    "bad_deploy",
    "input_size",
    "load",
    "flaky_source",
    "random",
)
"""The simulator's failure mechanisms in priority order (see the module docstring)."""

_STATE_MIX = np.asarray(
    [(0.10, 0.05), (0.0, 0.20), (0.0, 0.05), (0.5, 0.0), (0.4, 0.15), (0.0, 0.1), (0.0, 0.3), (0.0, 0.0)]
)
"""Per cause of :data:`FAILURE_CAUSES` (then: no failure), (P[TIMEDOUT], P[CRASHED]); the rest FAILED."""


# --- the mechanisms ---------------------------------------------------------------------------------------


def _outages(rng: np.random.Generator, t0: int, t1: int, mean_gap_days: float) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping outage intervals ``[start, end)`` of one dependency between ``t0`` and ``t1``."""
    n = int((t1 - t0) / (mean_gap_days * DAY) * 1.5) + 5
    gaps = rng.exponential(mean_gap_days * DAY, n)
    lengths = np.clip(rng.lognormal(math.log(1.5 * HOUR), 0.7, n), 15 * MINUTE, 8 * HOUR)
    starts = t0 + np.cumsum(gaps + np.concatenate([[0.0], lengths[:-1]]))
    return starts.astype(np.int64), (starts + lengths).astype(np.int64)


def _in_intervals(t: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    idx = np.searchsorted(starts, t, side="right") - 1
    ok = idx >= 0
    inside = np.zeros(len(t), dtype=bool)
    inside[ok] = t[ok] < ends[idx[ok]]
    return inside


def in_outage(
    rng: np.random.Generator, flows: list[Flow], flow_idx: np.ndarray, start_t: np.ndarray, t0: int, t1: int
) -> np.ndarray:
    """Whether each run starts while a dependency of its flow is down (outages drawn per dependency)."""
    down = np.zeros(len(start_t), dtype=bool)
    for dep, gap in DEPENDENCIES.items():
        starts, ends = _outages(rng, t0, t1, gap)
        depends = np.asarray([dep in f.deps for f in flows])[flow_idx]
        down |= depends & _in_intervals(start_t, starts, ends)
    return down


def in_maintenance_window(start_t: np.ndarray) -> np.ndarray:
    """Whether each run starts in the database's maintenance window, Sunday 02:00-04:00 UTC."""
    hour = hour_of_day(start_t)
    return (weekday(start_t) == 6) & (hour >= 2) & (hour < 4)


def _deploys(rng: np.random.Generator, t0: int, t1: int) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Version change times, version names and broken flags of one flow (index 0: the initial version)."""
    times = [np.iinfo(np.int64).min]
    names = ["1.0.0"]
    broken = [False]
    minor, patch = 0, 0
    t = t0 + int(rng.exponential(3 * DAY))
    while t < t1:
        day = t // DAY
        dow = (day + 3) % 7  # Monday = 0 (1970-01-01 was a Thursday)
        if dow >= 5:  # weekend: ship on Monday
            day += 7 - dow
        t = day * DAY + int(rng.uniform(10, 16) * HOUR)
        minor, patch = minor + 1, 0
        times.append(t)
        names.append(f"1.{minor}.{patch}")
        bad = bool(rng.random() < 0.2)
        broken.append(bad)
        if bad:  # a hotfix follows
            t += int(np.clip(rng.lognormal(math.log(10 * HOUR), 0.6), HOUR, 3 * DAY))
            patch += 1
            times.append(t)
            names.append(f"1.{minor}.{patch}")
            broken.append(False)
        t += int(rng.exponential(7 * DAY)) + HOUR
    return np.asarray(times, dtype=np.int64), names, np.asarray(broken)


def deployed_versions(
    rng: np.random.Generator, flows: list[Flow], flow_idx: np.ndarray, sched: np.ndarray, t0: int, t1: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each run's ``flow_version`` (deployed at its scheduled start) and whether that deploy is broken."""
    version = np.empty(len(sched), dtype=object)
    broken = np.zeros(len(sched), dtype=bool)
    for i in range(len(flows)):
        times, names, bad = _deploys(rng, t0, t1)
        mask = flow_idx == i
        k = np.searchsorted(times, sched[mask], side="right") - 1
        version[mask] = np.asarray(names, dtype=object)[k]
        broken[mask] = bad[k]
    return version, broken


def failure_probabilities(
    *,
    outage: np.ndarray,
    maintenance: np.ndarray,
    broken: np.ndarray,
    oversized: np.ndarray,
    load_excess: np.ndarray,
    source: np.ndarray,
) -> np.ndarray:
    """Per run (rows) and mechanism of :data:`FAILURE_CAUSES` (columns), the probability that it fails the run."""
    n = len(outage)
    return np.column_stack(
        [
            np.where(outage, 0.92, 0.0),
            np.where(maintenance, 0.75, 0.0),
            np.where(broken, 0.85, 0.0),
            np.where(oversized, 0.9, 0.0),
            load_excess,
            np.where(source == FLAKY_SOURCE, 0.04, 0.0),
            np.full(n, 0.01),
        ]
    )


def load_excess(load_sensitive: np.ndarray, business: np.ndarray, month_end: np.ndarray) -> np.ndarray:
    """The extra failure probability of load peaks: business hours and month-end, for load-sensitive flows."""
    return np.where(load_sensitive, 0.04 * business + 0.08 * month_end, 0.0)


def first_causes(rng: np.random.Generator, p: np.ndarray) -> np.ndarray:
    """Each run's cause, the first mechanism that fires (an index into :data:`FAILURE_CAUSES`; -1: none)."""
    fired = rng.random(p.shape) < p
    return np.where(fired.any(axis=1), fired.argmax(axis=1), -1)


# --- how a run ends ---------------------------------------------------------------------------------------


def durations(
    rng: np.random.Generator,
    flows: list[Flow],
    flow_idx: np.ndarray,
    *,
    busy: np.ndarray,
    input_rows: np.ndarray,
    rows_med: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Each run's duration (ns) if nothing goes wrong - slower when ``busy`` and with more input - and its timeout."""
    med = per_flow(flows, flow_idx, "duration_s").astype(float) * SECOND
    sigma = per_flow(flows, flow_idx, "duration_sigma").astype(float)
    slow = np.where(busy, 1.25, 1.0) * np.sqrt(input_rows / rows_med)
    return med * slow * rng.lognormal(0.0, sigma), med * 6.0


def _failure_durations(rng: np.random.Generator, cause_idx: np.ndarray, duration: np.ndarray) -> np.ndarray:
    """How long each run would take to fail of its cause: outages and maintenance fail fast."""
    n = len(cause_idx)
    frac = rng.uniform(0.05, 1.0, n)
    quick = rng.lognormal(math.log(60 * SECOND), 0.5, n)  # connection errors surface within a minute or two
    return np.select(
        [cause_idx == 0, cause_idx == 1, cause_idx == 2],
        [quick, quick, duration * np.minimum(frac, 0.5)],
        duration * frac,
    )


def outcomes(
    rng: np.random.Generator, cause_idx: np.ndarray, duration: np.ndarray, timeout: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each run's final state, failure cause (``""`` for none) and duration (ns), before any export cut-off."""
    failed = cause_idx >= 0
    fail_duration = _failure_durations(rng, cause_idx, duration)
    state, timed_out = _failure_states(rng, cause_idx)
    too_long = ~failed & (duration > timeout)  # a slow success still hits the flow's timeout
    state[too_long] = RunState.TIMEDOUT.value
    cause = _cause_names(cause_idx, too_long)
    final_duration = np.where(failed, fail_duration, duration)
    final_duration = np.where(timed_out | too_long, timeout, final_duration)
    return _cancel_some(rng, state, cause, final_duration)


def _failure_states(rng: np.random.Generator, cause_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each run's state by its cause (:data:`_STATE_MIX`; COMPLETED without one), and which timed out."""
    n = len(cause_idx)
    failed = cause_idx >= 0
    r = rng.random(n)
    p_to, p_cr = _STATE_MIX[cause_idx, 0], _STATE_MIX[cause_idx, 1]
    state = np.full(n, RunState.COMPLETED.value, dtype=object)
    state[failed] = RunState.FAILED.value
    timed_out = failed & (r < p_to)
    crashed = failed & ~timed_out & (r < p_to + p_cr)
    state[timed_out] = RunState.TIMEDOUT.value
    state[crashed] = RunState.CRASHED.value
    return state, timed_out


def _cause_names(cause_idx: np.ndarray, too_long: np.ndarray) -> np.ndarray:
    """Each run's cause by name: its mechanism, ``load`` for a slow success that timed out, else ``""``."""
    cause_names = np.asarray([*FAILURE_CAUSES, "load"], dtype=object)  # the last: slow runs that time out
    cause = cause_names[np.where(too_long, len(FAILURE_CAUSES), cause_idx)]
    cause[~((cause_idx >= 0) | too_long)] = ""
    return cause


def _cancel_some(
    rng: np.random.Generator, state: np.ndarray, cause: np.ndarray, duration: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """0.6 % of runs cancelled part-way: CANCELLED, no cause, a fraction of their duration."""
    n = len(state)
    cancelled = rng.random(n) < 0.006
    state[cancelled] = RunState.CANCELLED.value
    cause[cancelled] = ""
    return state, cause, np.where(cancelled, duration * rng.uniform(0.1, 1.0, n), duration)


__all__ = [
    "FAILURE_CAUSES",
    "deployed_versions",
    "durations",
    "failure_probabilities",
    "first_causes",
    "in_maintenance_window",
    "in_outage",
    "load_excess",
    "outcomes",
]
