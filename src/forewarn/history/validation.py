"""The rules of the two history formats: which columns, which values, checked row by row with line numbers.

:func:`check_runs` checks a run history and :func:`check_attempts` a task-attempt history, each given as
a DataFrame of text cells (:func:`~forewarn.history.importer.read_history_csv`) or of typed values (the
simulator's). Header problems reject the history at once; row problems are collected as ``(line, reason)``
pairs (line 1 is the header) and the valid rows come back parsed, ready for the store. The column parsers
are in :mod:`forewarn.history._columns`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from forewarn.errors import ImportValidationError
from forewarn.history._columns import (
    EXAMPLE_TIME,
    Problems,
    blank_rows,
    check_id_length,
    end_before_start,
    feature,
    merge_repeats,
    optional_text,
    parse_json_objects,
    parse_tag_lists,
    required_text,
    states,
    times,
    whole_numbers,
)
from forewarn.records import FEATURE_PREFIX, AttemptOutcome, RunState

RUN_REQUIRED: tuple[str, ...] = ("run_id", "flow_name", "scheduled_start", "state")
"""Columns a run-history CSV must have."""

RUN_OPTIONAL: tuple[str, ...] = ("deployment", "start_time", "end_time", "parameters", "flow_version", "tags")
"""Columns a run-history CSV may have, besides any number of ``feature_<name>`` columns."""

ATTEMPT_REQUIRED: tuple[str, ...] = ("run_id", "task_name", "attempt", "start_time", "end_time", "state")
"""Columns a task-attempt CSV must have."""

ATTEMPT_OPTIONAL: tuple[str, ...] = ("exception_type",)
"""Columns a task-attempt CSV may have."""

RUN_STATES: dict[str, RunState] = {
    "COMPLETED": RunState.COMPLETED,
    "SUCCESS": RunState.COMPLETED,
    "FAILED": RunState.FAILED,
    "CRASHED": RunState.CRASHED,
    "TIMEDOUT": RunState.TIMEDOUT,
    "CANCELLED": RunState.CANCELLED,
    "RUNNING": RunState.RUNNING,
    "SCHEDULED": RunState.SCHEDULED,
}
"""Accepted ``state`` values of a run-history CSV (upper-cased) and the run state each becomes."""

ATTEMPT_STATES: dict[str, AttemptOutcome] = {
    "COMPLETED": AttemptOutcome.SUCCESS,
    "SUCCESS": AttemptOutcome.SUCCESS,
    "FAILED": AttemptOutcome.FAILURE,
    "FAILURE": AttemptOutcome.FAILURE,
    "TIMEDOUT": AttemptOutcome.TIMEOUT,
    "TIMEOUT": AttemptOutcome.TIMEOUT,
    "FALLBACK": AttemptOutcome.FALLBACK,
    "FALLBACK_FAILURE": AttemptOutcome.FALLBACK_FAILURE,
}
"""Accepted ``state`` values of a task-attempt CSV (upper-cased) and the attempt outcome each becomes."""

ATTEMPT_LIMIT = 2**31 - 1
"""The largest attempt number the store keeps (``task_attempts.attempt`` is a 32-bit integer)."""

_UNFINISHED = frozenset({RunState.RUNNING.value, RunState.SCHEDULED.value})


def task_run_key(run_id: str, task_name: str) -> str:
    """The ``task_run_id`` of an imported task run: ``"<len(run_id)>:<run_id>:<task_name>"``.

    The length prefix makes the key unambiguous: ``run_id + ":" + task_name`` gave ``g2:x`` + ``t`` and
    ``g2`` + ``x:t`` the same key, so one attempt overwrote the other.

    Example::

        >>> task_run_key("g2:x", "t"), task_run_key("g2", "x:t")
        ('4:g2:x:t', '2:g2:x:t')
    """
    return f"{len(run_id)}:{run_id}:{task_name}"


@dataclass(frozen=True, slots=True)
class CheckedHistory:
    """A history checked row by row: the valid rows parsed, and the problems of the others.

    ``frame`` holds the valid rows, parsed (one row per run or attempt: identical repeats are merged);
    ``problems`` the ``(line, reason)`` pairs of the invalid rows, by line; ``rejected`` the positions of
    the invalid rows in the checked table; ``rows_read`` the number of non-blank rows.
    """

    frame: pd.DataFrame
    problems: list[tuple[int, str]]
    rejected: np.ndarray
    rows_read: int

    def valid(self, source: Path | str) -> pd.DataFrame:
        """``frame`` when no row has a problem; else :class:`~forewarn.errors.ImportValidationError` for ``source``."""
        if self.problems:
            raise ImportValidationError(source, self.problems, skippable=True)
        return self.frame


def _check_header(
    raw: pd.DataFrame, required: Sequence[str], optional: Sequence[str], *, features: bool, source: Path | str
) -> None:
    """Raise for a header without the required columns or with columns the format does not know."""
    columns = [str(c) for c in raw.columns]
    problems: list[tuple[int, str]] = []
    missing = [c for c in required if c not in columns]
    if missing:
        problems.append(
            (
                1,
                f"missing required column(s) {', '.join(missing)}; the header has {', '.join(columns)} "
                f"and needs {', '.join(required)}",
            )
        )
    known = set(required) | set(optional)
    unknown = [c for c in columns if c not in known and not (features and c.startswith(FEATURE_PREFIX))]
    if unknown:
        hint = (
            f"rename a pre-run attribute to feature_<name> (e.g. feature_{unknown[0]}) or drop the column"
            if features
            else "drop the column"
        )
        problems.append(
            (1, f"unknown column(s) {', '.join(unknown)}; the format has {', '.join([*required, *optional])}: {hint}")
        )
    if features and FEATURE_PREFIX in columns:
        problems.append((1, f"column {FEATURE_PREFIX!r} has no name; write feature_<name>, e.g. feature_input_rows"))
    if problems:
        raise ImportValidationError(source, problems)


def check_runs(raw: pd.DataFrame, *, source: Path | str = "<DataFrame>", assume_utc: bool = False) -> CheckedHistory:
    """Check a run history (the text of a run-history CSV, see :func:`read_history_csv`) row by row.

    Header problems (a required column missing, an unknown column) raise
    :class:`~forewarn.errors.ImportValidationError` at once. Row problems are collected per line:
    ``run_id``, ``flow_name``, ``scheduled_start`` or ``state`` empty; a ``run_id`` longer than 255
    characters; a time that is not ISO-8601 or has no UTC offset (unless ``assume_utc``); an unknown state
    (:data:`RUN_STATES`); ``end_time`` before ``start_time``, or set for a ``RUNNING``/``SCHEDULED`` run;
    ``parameters`` that are not a JSON object; ``tags`` that are not a JSON list of strings; a ``feature_*``
    number that is not finite or too large; a
    ``run_id`` repeated with different values. Rows repeated
    identically are one run.

    ``frame`` is a runs frame as :func:`forewarn.learning.features.build_features` and
    :meth:`~forewarn.store.telemetry.TelemetryStore.record_runs_frame` read it: ``flow_run_id, flow_name, deployment,
    parameters`` (dict or ``None``), ``parameters_hash``, ``flow_version, scheduled_start, start_time,
    end_time`` (``datetime64[ns, UTC]``), ``state``, ``tags`` (a sorted tuple of strings, or ``None``), then
    the ``feature_*`` columns (numeric when every
    non-empty cell is a number, else text).

    Example::

        >>> raw = pd.DataFrame({"run_id": ["r1", "r2"], "flow_name": ["etl", "etl"],
        ...                     "scheduled_start": ["2026-01-01T00:00:00Z", "yesterday"],
        ...                     "state": ["Success", "failed"]})
        >>> checked = check_runs(raw)
        >>> checked.frame["state"].tolist(), checked.problems[0]
        (['COMPLETED'], (3, "scheduled_start 'yesterday' is not an ISO-8601 time; write it like 2026-01-01T00:00:00Z"))
    """
    _check_header(raw, RUN_REQUIRED, RUN_OPTIONAL, features=True, source=source)
    raw = raw.reset_index(drop=True)
    blank = blank_rows(raw)
    found = Problems(len(raw))
    run_id = required_text(raw, "run_id", found, blank, "run_id is empty")
    check_id_length(run_id, found, "run_id")
    flow_name = required_text(raw, "flow_name", found, blank, "flow_name is empty")
    sched_text = optional_text(raw, "scheduled_start")
    found.add(
        sched_text.isna().to_numpy() & ~blank,
        f"scheduled_start is empty; every run needs the time it was scheduled for, e.g. {EXAMPLE_TIME}",
    )
    state = states(raw, found, blank, RUN_STATES, "run")
    sched = times(raw, "scheduled_start", found, assume_utc=assume_utc, source=source)
    start = times(raw, "start_time", found, assume_utc=assume_utc, source=source)
    end = times(raw, "end_time", found, assume_utc=assume_utc, source=source)
    end_before_start(raw, start, end, found)
    found.add(
        end.notna().to_numpy() & state.isin(_UNFINISHED).to_numpy(),
        lambda i: (
            f"end_time is set but state is {state[i]}; give the final state (COMPLETED, FAILED, ...) "
            "or leave end_time empty"
        ),
    )
    parameters, phash = parse_json_objects(optional_text(raw, "parameters"), "parameters", found)
    frame = pd.DataFrame(
        {
            "flow_run_id": run_id,
            "flow_name": flow_name,
            "deployment": optional_text(raw, "deployment"),
            "parameters": parameters,
            "parameters_hash": phash,
            "flow_version": optional_text(raw, "flow_version"),
            "scheduled_start": sched,
            "start_time": start,
            "end_time": end,
            "state": state,
            "tags": parse_tag_lists(optional_text(raw, "tags"), "tags", found),
        }
    )
    valid = ~blank & ~found.mask()
    for name in raw.columns:
        if str(name).startswith(FEATURE_PREFIX):
            frame[str(name)] = feature(raw, str(name), valid, found)
    return _checked(frame, ["flow_run_id"], lambda i: f"run_id {run_id[i]!r}", blank, found)


def check_attempts(
    raw: pd.DataFrame, *, source: Path | str = "<DataFrame>", assume_utc: bool = False
) -> CheckedHistory:
    """Check a task-attempt history (the text of a task-attempt CSV) row by row, like :func:`check_runs`.

    Row problems: ``run_id``, ``task_name``, ``start_time``, ``end_time`` or ``state`` empty; ``attempt``
    not a whole number from 1 to :data:`ATTEMPT_LIMIT`; a time that is not ISO-8601, has no UTC offset or
    is out of range; ``end_time`` before ``start_time``; an unknown state (:data:`ATTEMPT_STATES`); a
    :func:`task_run_key` longer than 255 characters; ``(run_id, task_name, attempt)`` repeated with different values.

    ``frame`` is an attempts frame as :meth:`~forewarn.store.telemetry.TelemetryStore.record_attempts_frame` reads
    it: ``flow_run_id, task_run_id`` (:func:`task_run_key`: ``"<len(run_id)>:<run_id>:<task_name>"``),
    ``task_name, attempt, start_time, end_time, outcome, exception_type``.

    Example::

        >>> raw = pd.DataFrame({"run_id": ["r1"], "task_name": ["load"], "attempt": ["2"],
        ...                     "start_time": ["2026-01-01T00:00:00Z"], "end_time": ["2026-01-01T00:00:09Z"],
        ...                     "state": ["TimedOut"], "exception_type": ["TimeoutError"]})
        >>> check_attempts(raw).frame[["task_run_id", "attempt", "outcome"]].to_dict("records")
        [{'task_run_id': '2:r1:load', 'attempt': 2, 'outcome': 'timeout'}]
    """
    _check_header(raw, ATTEMPT_REQUIRED, ATTEMPT_OPTIONAL, features=False, source=source)
    raw = raw.reset_index(drop=True)
    blank = blank_rows(raw)
    found = Problems(len(raw))
    run_id = required_text(raw, "run_id", found, blank, "run_id is empty")
    task = required_text(raw, "task_name", found, blank, "task_name is empty")
    task_run_id = pd.Series(
        [None if r is None or t is None else task_run_key(r, t) for r, t in zip(run_id, task, strict=True)],
        dtype=object,
    )
    check_id_length(task_run_id, found, "the task run id (<length of run_id>:run_id:task_name)")
    attempt = whole_numbers(raw, "attempt", found, blank, upto=ATTEMPT_LIMIT)
    attempt_text = optional_text(raw, "attempt")
    for name in ("start_time", "end_time"):
        required_text(raw, name, found, blank, f"{name} is empty; write it like {EXAMPLE_TIME}")
    start = times(raw, "start_time", found, assume_utc=assume_utc, source=source)
    end = times(raw, "end_time", found, assume_utc=assume_utc, source=source)
    end_before_start(raw, start, end, found)
    outcome = states(raw, found, blank, ATTEMPT_STATES, "attempt")
    frame = pd.DataFrame(
        {
            "flow_run_id": run_id,
            "task_run_id": task_run_id,
            "task_name": task,
            "attempt": attempt,
            "start_time": start,
            "end_time": end,
            "outcome": outcome,
            "exception_type": optional_text(raw, "exception_type"),
        }
    )
    return _checked(
        frame,
        ["task_run_id", "attempt"],
        lambda i: f"attempt {attempt_text[i]} of task {task[i]!r} in run {run_id[i]!r}",
        blank,
        found,
    )


def _checked(
    frame: pd.DataFrame, keys: list[str], describe: Callable[[int], str], blank: np.ndarray, found: Problems
) -> CheckedHistory:
    keep = merge_repeats(frame, keys, ~blank & ~found.mask(), found, describe)
    rejected = np.flatnonzero(found.mask())
    return CheckedHistory(
        frame=frame.iloc[keep].reset_index(drop=True),
        problems=found.sorted(),
        rejected=rejected,
        rows_read=int((~blank).sum()),
    )


__all__ = [
    "ATTEMPT_LIMIT",
    "ATTEMPT_OPTIONAL",
    "ATTEMPT_REQUIRED",
    "ATTEMPT_STATES",
    "RUN_OPTIONAL",
    "RUN_REQUIRED",
    "RUN_STATES",
    "CheckedHistory",
    "check_attempts",
    "check_runs",
    "task_run_key",
]
