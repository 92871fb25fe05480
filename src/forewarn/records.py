"""The values forewarn records: one task attempt, one flow run, one prediction.

They are frozen, slotted dataclasses so they can be handed to hooks and writers without being changed on
the way. Times are timezone-aware UTC ``datetime`` objects.

Example::

    >>> from datetime import datetime, timezone
    >>> t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> rec = AttemptRecord(flow_run_id="f1", task_run_id="t1", task_name="charge", attempt=1,
    ...                     start_time=t0, end_time=t0, outcome=AttemptOutcome.SUCCESS)
    >>> rec.duration_seconds
    0.0
"""

from __future__ import annotations

import enum
import hashlib
import json
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, overload


class AttemptOutcome(str, enum.Enum):
    """How one attempt of a task ended.

    ``FALLBACK`` and ``FALLBACK_FAILURE`` are the rows written for the fallback call that follows the
    task's last failed attempt; they carry the next attempt number and ``used_fallback=True``.

    Redundant copies of an idempotent task (``replicas``, ``hedge_after``) that lost the race end as
    ``CANCELLED`` (an async copy, really cancelled) or ``ABANDONED`` (a sync copy: Python cannot stop a
    thread, so it runs on unobserved and its result is ignored). ``COMPENSATED`` and
    ``COMPENSATION_FAILURE`` are the rows of a succeeded task's undo action, run when its flow later
    failed (a saga). None of these four is a failure of the task's own call.
    """

    SUCCESS = "success"
    FAILURE = "failure"
    TIMEOUT = "timeout"
    FALLBACK = "fallback"
    FALLBACK_FAILURE = "fallback_failure"
    CANCELLED = "cancelled"
    ABANDONED = "abandoned"
    COMPENSATED = "compensated"
    COMPENSATION_FAILURE = "compensation_failure"

    @property
    def is_failure(self) -> bool:
        """True for outcomes where the task's own call did not produce a result."""
        return self in (AttemptOutcome.FAILURE, AttemptOutcome.TIMEOUT)


class RunState(str, enum.Enum):
    """Final (or current) state of a flow run, named as Prefect names its state types.

    ``TIMEDOUT`` comes from imported histories of other schedulers; it counts as a failure.
    """

    SCHEDULED = "SCHEDULED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CRASHED = "CRASHED"
    CANCELLED = "CANCELLED"
    TIMEDOUT = "TIMEDOUT"

    @property
    def is_failure(self) -> bool:
        """True for the states a failure-warning model learns to predict."""
        return self in (RunState.FAILED, RunState.CRASHED, RunState.TIMEDOUT)

    @property
    def is_final(self) -> bool:
        """True once the run has ended one way or another."""
        return self not in (RunState.SCHEDULED, RunState.RUNNING)


FAILURE_STATES: frozenset[str] = frozenset(s.value for s in RunState if s.is_failure)
"""The run states that count as a failure (``FAILED``, ``CRASHED``, ``TIMEDOUT``): what the model predicts."""

FINAL_STATES: frozenset[str] = frozenset(s.value for s in RunState if s.is_final)
"""The run states that mean the run has ended, whatever its outcome."""

FAILED_ATTEMPT_OUTCOMES: frozenset[str] = frozenset(o.value for o in AttemptOutcome if o.is_failure)
"""The attempt outcomes that mean the task's own call did not produce a result (``failure``, ``timeout``)."""

NOT_RETRY_OUTCOMES: frozenset[str] = frozenset(
    o.value
    for o in (
        AttemptOutcome.FALLBACK,
        AttemptOutcome.FALLBACK_FAILURE,
        AttemptOutcome.CANCELLED,
        AttemptOutcome.ABANDONED,
        AttemptOutcome.COMPENSATED,
        AttemptOutcome.COMPENSATION_FAILURE,
    )
)
"""Attempt rows that are not a retry of the task's call: fallbacks, losing redundant copies, compensations."""

FEATURE_PREFIX = "feature_"
"""A run's pre-run attribute ``x`` travels as the column ``feature_x`` (import CSV, store reads, features)."""

HOSTNAME = socket.gethostname()

OPERATIONAL_FLOWS: frozenset[str] = frozenset(
    {"forewarn-train", "forewarn-backtest", "forewarn-forecast", "forewarn-monitor", "forewarn-import-prefect"}
)
"""forewarn's own operational flows (``flows/``): never imported as history, never forecast or warned."""


@overload
def parameters_hash(parameters: Mapping[str, Any]) -> str: ...
@overload
def parameters_hash(parameters: None) -> None: ...
def parameters_hash(parameters: Mapping[str, Any] | None) -> str | None:
    """The hash recorded with a run's parameters: first 16 hex digits of the SHA-256 of their canonical JSON.

    Canonical JSON sorts keys, uses no spaces and writes values JSON cannot represent as their ``str()``,
    so equal dicts hash equally whatever their key order, and a run has the same hash whether
    ``forewarn.flow`` recorded it, the store filled it in or it was imported. ``None`` (no parameters
    known) stays ``None``; a run without parameters is ``{}``.

    Example::

        >>> parameters_hash({"b": 1, "a": [1, 2]}) == parameters_hash({"a": [1, 2], "b": 1})
        True
        >>> parameters_hash({})
        '44136fa355b3678a'
        >>> parameters_hash(None) is None
        True
    """
    if parameters is None:
        return None
    canonical = json.dumps(parameters, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One attempt of one task run, as written to the ``task_attempts`` table."""

    flow_run_id: str | None
    task_run_id: str
    task_name: str
    attempt: int
    start_time: datetime
    end_time: datetime
    outcome: AttemptOutcome
    exception_type: str | None = None
    exception_message: str | None = None
    retryable: bool | None = None
    used_fallback: bool = False
    host: str = HOSTNAME
    wait_seconds: float | None = None
    """Seconds of the attempt spent waiting for a Prefect concurrency slot or rate limit (None: no limit)."""
    replica: int | None = None
    """Which redundant copy (1, 2, ...) this attempt was, for a task run with ``replicas`` or ``hedge_after``."""
    provider: str | None = None
    """Which of the task's ``providers`` served this attempt (its name), for a task with failover."""
    execution_id: str = ""
    """Which execution of the task run in a process made this attempt: 16 random hex digits drawn once per
    call of the ``forewarn.task`` wrapper, so a task run that Dask re-runs after its worker died (same
    ``task_run_id``, attempts numbered from 1 again) keeps both executions' rows. ``""`` for rows that were
    not recorded live (imports, simulated history) and for rows written before schema version 7."""

    @property
    def duration_seconds(self) -> float:
        """Wall-clock seconds between start and end."""
        return (self.end_time - self.start_time).total_seconds()


@dataclass(frozen=True, slots=True)
class FlowRunRecord:
    """One flow run, as written to the ``flow_runs`` table when it starts."""

    flow_run_id: str
    flow_name: str
    start_time: datetime | None
    state: RunState = RunState.RUNNING
    deployment: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    parameters_hash: str | None = None
    flow_version: str | None = None
    scheduled_start: datetime | None = None
    end_time: datetime | None = None
    host: str = HOSTNAME
    forewarn_version: str | None = None
    features: dict[str, Any] = field(default_factory=dict)
    """Pre-run attributes by name without the ``feature_`` prefix, e.g. ``{"input_rows": 1200}``."""
    tags: tuple[str, ...] = ()
    """The run's Prefect tags, e.g. ``("etl", "nightly")``; the store keeps them sorted, without repeats."""


PREDICTION_SOURCES: tuple[str, ...] = ("hook", "forecast")
"""Where a prediction was made: the flow's pre-run hook, or the forecast of upcoming scheduled runs."""


@dataclass(frozen=True, slots=True)
class PredictionRecord:
    """One failure-risk score of one flow run, as written to the ``predictions`` table.

    ``warned`` (``risk >= threshold``) and ``lead_seconds`` (``scheduled_start - predicted_at``, ``None``
    without a scheduled start) are derived, so they cannot disagree with the values they come from.
    ``reasons`` are short sentences, most important first. ``source`` is one of
    :data:`PREDICTION_SOURCES`.

    Example::

        >>> from datetime import datetime, timedelta, timezone
        >>> now = datetime(2026, 1, 1, tzinfo=timezone.utc)
        >>> rec = PredictionRecord("f1", "etl", predicted_at=now, risk=0.4, threshold=0.3,
        ...                        model_version="2026-01-01T00:00:00Z", scheduled_start=now + timedelta(hours=2),
        ...                        reasons=("2 of the last 5 runs failed",), source="forecast")
        >>> rec.warned, rec.lead_seconds
        (True, 7200.0)
    """

    flow_run_id: str
    flow_name: str
    predicted_at: datetime
    risk: float
    threshold: float
    model_version: str
    scheduled_start: datetime | None = None
    deployment: str | None = None
    reasons: tuple[str, ...] = ()
    source: str = "hook"

    @property
    def warned(self) -> bool:
        """True when the risk reached the warning threshold."""
        return self.risk >= self.threshold

    @property
    def lead_seconds(self) -> float | None:
        """Seconds between the prediction and the run's scheduled start (negative when made after it)."""
        if self.scheduled_start is None:
            return None
        return (self.scheduled_start - self.predicted_at).total_seconds()


__all__ = [
    "FAILED_ATTEMPT_OUTCOMES",
    "FAILURE_STATES",
    "FEATURE_PREFIX",
    "FINAL_STATES",
    "HOSTNAME",
    "OPERATIONAL_FLOWS",
    "NOT_RETRY_OUTCOMES",
    "PREDICTION_SOURCES",
    "AttemptOutcome",
    "AttemptRecord",
    "FlowRunRecord",
    "PredictionRecord",
    "RunState",
    "parameters_hash",
]
