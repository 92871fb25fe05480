"""Simulated task attempts: the internals of :func:`forewarn.history.simulate.simulated_attempts`.

Each ended run of a simulated history gets three tasks that share its duration (:func:`tasks_that_ran`
decides which of them ran); each task that ran gets one or more attempts (:func:`attempt_plan`), laid out
inside its time segment (:func:`attempt_times`) with an outcome and an exception type
(:func:`attempt_outcomes`) that follow the run's state and, when known, its failure cause.

Example::

    >>> import numpy as np
    >>> r_idx, t_idx, fails = tasks_that_ran(np.random.default_rng(0), np.asarray(["COMPLETED"], dtype=object))
    >>> t_idx.tolist(), fails.tolist()
    ([0, 1, 2], [False, False, False])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forewarn.history._estate import CATALOGUE, SECOND
from forewarn.records import AttemptOutcome, RunState

_EXCEPTIONS: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {
    "dependency_outage": (("ConnectionError", "OperationalError", "TimeoutError"), (0.5, 0.3, 0.2)),
    "maintenance": (("OperationalError", "ConnectionRefusedError"), (0.6, 0.4)),
    "bad_deploy": (("KeyError", "AttributeError", "TypeError", "ValueError"), (0.3, 0.3, 0.2, 0.2)),
    "input_size": (("MemoryError", "TimeoutError"), (0.5, 0.5)),
    "load": (("TimeoutError", "ConnectionError", "OperationalError"), (0.6, 0.2, 0.2)),
    "flaky_source": (("ConnectionResetError", "ValueError"), (0.5, 0.5)),
    "random": (("ValueError", "RuntimeError", "ConnectionError", "KeyError"), (0.3, 0.3, 0.2, 0.2)),
    "transient": (("ConnectionError", "TimeoutError", "ServiceUnavailable"), (0.5, 0.3, 0.2)),
}
_TASK_SHARE = np.asarray([0.3, 0.5, 0.2])


def _pick(rng: np.random.Generator, kinds: np.ndarray) -> np.ndarray:
    """One exception type name per row, drawn from the distribution named by each row's kind."""
    out = np.empty(len(kinds), dtype=object)
    for kind, (names, weights) in _EXCEPTIONS.items():
        mask = kinds == kind
        if mask.any():
            out[mask] = rng.choice(np.asarray(names, dtype=object), size=int(mask.sum()), p=weights)
    return out


def tasks_that_ran(rng: np.random.Generator, state: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (run, task) pairs that ran, as run and task indexes, and whether each task is its run's failing one.

    The tasks before the failing (or cancelled) one ran, and the failing task itself unless the run crashed
    while it was running; later tasks never ran.
    """
    n = len(state)
    failing = np.isin(state, [RunState.FAILED.value, RunState.TIMEDOUT.value, RunState.CRASHED.value])
    fail_task = np.where(failing, rng.integers(0, 3, n), 3)
    cancel_task = np.where(state == RunState.CANCELLED.value, rng.integers(0, 3, n), 3)
    last_task = np.minimum(fail_task, cancel_task)  # tasks after this one never ran
    r_idx = np.repeat(np.arange(n), 3)
    t_idx = np.tile(np.arange(3), n)
    reported_fail = np.isin(state, [RunState.FAILED.value, RunState.TIMEDOUT.value])
    ran = (t_idx < last_task[r_idx]) | ((t_idx == fail_task[r_idx]) & reported_fail[r_idx])
    r_idx, t_idx = r_idx[ran], t_idx[ran]
    return r_idx, t_idx, t_idx == fail_task[r_idx]


@dataclass(frozen=True, slots=True)
class AttemptPlan:
    """Per task that ran: how its attempts go, and how many rows they make."""

    fails: np.ndarray  # the run's failing task: three failed attempts, then maybe a failed fallback
    retried: np.ndarray  # recovered on a retry after a transient error
    fell_back: np.ndarray  # used its fallback after three failed attempts
    fallback_failed: np.ndarray  # a failing task whose fallback failed too
    n_rows: np.ndarray  # its attempt rows (int64)


def attempt_plan(rng: np.random.Generator, fails: np.ndarray) -> AttemptPlan:
    """How each task's attempts go: 5 % of the other tasks recover on a retry, 1 % fall back."""
    m = len(fails)
    u = rng.random(m)
    retried = ~fails & (u < 0.05)
    fell_back = ~fails & (u >= 0.05) & (u < 0.06)
    fallback_failed = fails & (rng.random(m) < 0.3)
    n_rows = np.ones(m, dtype=np.int64)
    n_rows[retried] = 2
    n_rows[fell_back] = 4
    n_rows[fails] = 3 + fallback_failed[fails]
    return AttemptPlan(fails, retried, fell_back, fallback_failed, n_rows)


def task_segments(
    start: np.ndarray, end: np.ndarray, r_idx: np.ndarray, t_idx: np.ndarray, fails: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each task's ``[start, end)`` (ns): its share of its run's time; the last task ends with the run."""
    bounds = np.concatenate([[0.0], np.cumsum(_TASK_SHARE)])
    dur = (end - start)[r_idx].astype(float)
    seg_s = start[r_idx] + (dur * bounds[t_idx]).astype(np.int64)
    seg_e = start[r_idx] + (dur * bounds[t_idx + 1]).astype(np.int64)
    return seg_s, np.where((t_idx == 2) | fails, end[r_idx], seg_e)


def attempt_times(
    seg_s: np.ndarray, seg_e: np.ndarray, n_rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One row per attempt: its task, its number from 0, its start and end (ns), the task's segment shared out."""
    owner = np.repeat(np.arange(len(n_rows)), n_rows)
    k = np.arange(len(owner)) - np.repeat(np.cumsum(n_rows) - n_rows, n_rows)
    width = (seg_e - seg_s)[owner] / n_rows[owner]
    a_start = seg_s[owner] + (width * k).astype(np.int64)
    gap = np.minimum(width * 0.05, SECOND).astype(np.int64)  # the retry wait between attempts
    a_end = seg_s[owner] + (width * (k + 1)).astype(np.int64) - gap
    return owner, k, a_start, np.maximum(a_end, a_start)


def attempt_outcomes(
    rng: np.random.Generator,
    plan: AttemptPlan,
    owner: np.ndarray,
    k: np.ndarray,
    run_state: np.ndarray,
    run_kind: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Each attempt's outcome and exception type (None for a success or a fallback).

    ``run_state`` and ``run_kind`` are per attempt: its run's state, and the kind of error that failed the
    run (its failure cause, or from its state).
    """
    last_row = k == plan.n_rows[owner] - 1
    outcome = np.full(len(owner), AttemptOutcome.SUCCESS.value, dtype=object)
    kind = np.full(len(owner), "", dtype=object)
    transient = (plan.retried[owner] & ~last_row) | (plan.fell_back[owner] & ~last_row)
    outcome[transient] = AttemptOutcome.FAILURE.value
    kind[transient] = "transient"
    outcome[plan.fell_back[owner] & last_row] = AttemptOutcome.FALLBACK.value
    final_fail = plan.fails[owner]
    kind[final_fail] = run_kind[final_fail]
    outcome[final_fail] = AttemptOutcome.FAILURE.value
    outcome[final_fail & (run_state == RunState.TIMEDOUT.value)] = AttemptOutcome.TIMEOUT.value
    outcome[final_fail & plan.fallback_failed[owner] & last_row] = AttemptOutcome.FALLBACK_FAILURE.value
    exc = _pick(rng, kind)
    exc[outcome == AttemptOutcome.SUCCESS.value] = None
    exc[outcome == AttemptOutcome.FALLBACK.value] = None
    exc[outcome == AttemptOutcome.TIMEOUT.value] = "TimeoutError"
    outcome[(kind == "transient") & (exc == "TimeoutError")] = AttemptOutcome.TIMEOUT.value
    return outcome, exc


def run_error_kinds(state: np.ndarray, cause: np.ndarray | None) -> np.ndarray:
    """The kind of error that failed each run: its failure cause when known, else one that fits its state."""
    run_kind = np.where(state == RunState.TIMEDOUT.value, "input_size", "random").astype(object)
    if cause is not None:
        run_kind = np.where(cause != "", cause, run_kind).astype(object)
    return run_kind


def task_names(flow_names: np.ndarray) -> np.ndarray:
    """The three task names of each run's flow (a clone ``name-2`` has its original's; unknown flows a default)."""
    flow_tasks = {f.name: f.tasks for f in CATALOGUE}
    return np.asarray(
        [
            flow_tasks.get(nm if nm in flow_tasks else nm.rsplit("-", 1)[0], ("extract", "transform", "load"))
            for nm in flow_names
        ],
        dtype=object,
    )


__all__ = [
    "AttemptPlan",
    "attempt_outcomes",
    "attempt_plan",
    "attempt_times",
    "run_error_kinds",
    "task_names",
    "task_segments",
    "tasks_that_ran",
]
