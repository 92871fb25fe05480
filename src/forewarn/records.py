"""The values forewarn records: one task attempt, one flow run.

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
import socket
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class AttemptOutcome(str, enum.Enum):
    """How one attempt of a task ended.

    ``FALLBACK`` and ``FALLBACK_FAILURE`` are the rows written for the fallback call that follows the
    task's last failed attempt; they carry the next attempt number and ``used_fallback=True``.
    """

    SUCCESS = "success"
    FAILURE = "failure"
    TIMEOUT = "timeout"
    FALLBACK = "fallback"
    FALLBACK_FAILURE = "fallback_failure"

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


HOSTNAME = socket.gethostname()


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


__all__ = ["HOSTNAME", "AttemptOutcome", "AttemptRecord", "FlowRunRecord", "RunState"]
