"""Failure response: a Prefect event and a markdown artifact when a task or a flow finally fails, or a breaker opens.

A warning before a run (:mod:`forewarn.orchestration.warning`) says a run *may* fail; this module says what
happened when one *did*, and what forewarn had already tried, so an Automation (``automations/``) or a person
can respond:

===========================  ====================================  ===========================================
event                        resource                              related
===========================  ====================================  ===========================================
:data:`TASK_FAILED_EVENT`    ``prefect.task-run.<id>``             the flow run (role ``flow-run``), its flow
                                                                   and deployment when known
:data:`FLOW_FAILED_EVENT`    ``prefect.flow-run.<id>``             its flow and deployment when known
:data:`BREAKER_OPENED_EVENT` ``forewarn.breaker.<name>``           the flow run, task run, flow, deployment of
                                                                   the call that opened it, when known
===========================  ====================================  ===========================================

Each event's resource carries the label ``forewarn.failure-kind`` (``transient`` when the last error was one
forewarn retries or an open circuit breaker's refusal, else ``permanent``; ``open`` for a breaker) and a
flow failure also ``forewarn.run-count``, so a trigger can, say, rerun a run only after a transient failure
and at most twice. The payload says what was tried: attempts, retries, whether a fallback ran, the
exception type and its message (secrets masked, cut to ``FOREWARN_MESSAGE_MAX_CHARS``), and the task's
runbook hint (``@forewarn.task(runbook=...)``). A task's final failure and a flow's failure also get a
markdown artifact on the flow run.

Everything here is **fail-open**: an event or an artifact that cannot be sent costs one log line, and the
task's or flow's own outcome is unchanged.

Example::

    >>> failure = TaskFailure(task_name="charge", task_run_id="t1", flow_run_id="f1", attempts=4,
    ...     fallback_used=False, exception_type="ConnectionError", exception_message="reset",
    ...     kind="transient", runbook="Check the gateway status page")
    >>> failure.retries, failure.kind
    (3, 'transient')
    >>> task_failure_markdown(failure).splitlines()[0]
    '# forewarn: task `charge` failed after 4 attempts'
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from forewarn.errors import CircuitOpenError, FallbackError
from forewarn.records import AttemptOutcome, AttemptRecord
from forewarn.redaction import Redactor
from forewarn.resilience.breaker import CircuitBreaker
from forewarn.resilience.retry import default_retry_on

TASK_FAILED_EVENT = "forewarn.task.failed"
"""Emitted when a ``forewarn.task`` call finally fails (retries spent, fallback absent or failed)."""

FLOW_FAILED_EVENT = "forewarn.flow.failed"
"""Emitted when a ``forewarn.flow`` run ends ``FAILED`` or ``CRASHED``."""

BREAKER_OPENED_EVENT = "forewarn.breaker.opened"
"""Emitted when a circuit breaker used by a ``forewarn.task`` opens."""

TASK_ARTIFACT_KEY = "forewarn-task-failure"
FLOW_ARTIFACT_KEY = "forewarn-flow-failure"

logger = logging.getLogger("forewarn.failure_response")


@dataclass(frozen=True, slots=True)
class TaskFailure:
    """What forewarn tried for one task call that finally failed; the payload of :data:`TASK_FAILED_EVENT`.

    ``attempts`` counts the task's own attempts (not the fallback); ``kind`` is ``"transient"`` or
    ``"permanent"`` (:func:`failure_kind`).
    """

    task_name: str
    task_run_id: str
    flow_run_id: str | None
    attempts: int
    fallback_used: bool
    exception_type: str
    exception_message: str
    kind: str
    runbook: str | None = None

    @property
    def retries(self) -> int:
        """Attempts after the first."""
        return max(0, self.attempts - 1)

    def payload(self) -> dict[str, Any]:
        """The event payload (JSON-ready)."""
        return {
            "task_name": self.task_name,
            "task_run_id": self.task_run_id,
            "flow_run_id": self.flow_run_id,
            "attempts": self.attempts,
            "retries": self.retries,
            "fallback_used": self.fallback_used,
            "exception_type": self.exception_type,
            "exception_message": self.exception_message,
            "failure_kind": self.kind,
            "runbook": self.runbook,
        }


def task_failure(
    records: Sequence[AttemptRecord], error: BaseException, *, runbook: str | None, redactor: Redactor | None = None
) -> TaskFailure:
    """Summarise a failed task call from the attempt records it wrote and the error it raises.

    Example::

        >>> from datetime import datetime, timezone
        >>> t = datetime(2026, 1, 1, tzinfo=timezone.utc)
        >>> rows = [AttemptRecord("f", "t", "charge", n, t, t, AttemptOutcome.FAILURE, retryable=True) for n in (1, 2)]
        >>> task_failure(rows, ConnectionError("token=abc reset"), runbook=None).exception_message
        'token=*** reset'
    """
    redactor = redactor or Redactor.from_settings()
    own = [r for r in records if r.outcome not in (AttemptOutcome.FALLBACK, AttemptOutcome.FALLBACK_FAILURE)]
    last = own[-1] if own else None
    return TaskFailure(
        task_name=records[0].task_name if records else "task",
        task_run_id=records[0].task_run_id if records else "",
        flow_run_id=records[0].flow_run_id if records else None,
        attempts=len(own),
        fallback_used=any(r.used_fallback for r in records),
        exception_type=type(error).__name__,
        exception_message=redactor.redact(str(error)) or "",
        kind=failure_kind(error, retryable=last.retryable if last is not None else None),
        runbook=runbook,
    )


def failure_kind(error: BaseException | None, *, retryable: bool | None = None) -> str:
    """``"transient"`` if trying again later could succeed, else ``"permanent"``.

    Transient: an error the retry policy retried (``retryable``, when known), else one
    :func:`~forewarn.resilience.retry.default_retry_on` retries, and an open circuit breaker's refusal (the
    dependency may be back when the breaker half-opens). A failed fallback takes the kind of the task error
    that called for it.

    Example::

        >>> failure_kind(ConnectionError()), failure_kind(ValueError()), failure_kind(CircuitOpenError("db", 5.0))
        ('transient', 'permanent', 'transient')
    """
    if isinstance(error, FallbackError):
        error, retryable = error.task_error, None
    if isinstance(error, CircuitOpenError):
        return "transient"
    if retryable is None:
        retryable = error is not None and default_retry_on(error)
    return "transient" if retryable else "permanent"


# -- what happened in each flow run of this process, for the flow's own response ---------------------------


@dataclass
class RunTally:
    """What forewarn did during one flow run in this process: retries, fallbacks, failures, breakers opened."""

    retries: int = 0
    fallbacks: int = 0
    failed_tasks: list[TaskFailure] = field(default_factory=list)
    breakers_opened: list[str] = field(default_factory=list)


_tallies: dict[str, RunTally] = {}
_tallies_lock = threading.Lock()


def _tally(flow_run_id: str) -> RunTally:
    with _tallies_lock:
        return _tallies.setdefault(flow_run_id, RunTally())


def note_task_call(records: Sequence[AttemptRecord]) -> None:
    """Count a task call's retries and fallback towards its flow run's tally (only calls that had any)."""
    if not records or records[0].flow_run_id is None:
        return
    own = sum(1 for r in records if r.outcome not in (AttemptOutcome.FALLBACK, AttemptOutcome.FALLBACK_FAILURE))
    tally = _tally(records[0].flow_run_id)
    with _tallies_lock:
        tally.retries += max(0, own - 1)
        tally.fallbacks += any(r.used_fallback for r in records)


def pop_tally(flow_run_id: str) -> RunTally:
    """The tally of a flow run, forgotten (called as the run ends)."""
    with _tallies_lock:
        return _tallies.pop(flow_run_id, None) or RunTally()


# -- the responses -------------------------------------------------------------------------------------


def _related(flow_run_id: str | None, *, task_run_id: str | None = None) -> list[dict[str, str]]:
    """Related resources from the current Prefect run context: flow run, flow, deployment, task run."""
    from prefect.context import FlowRunContext

    related: list[dict[str, str]] = []
    if flow_run_id:
        related.append({"prefect.resource.id": f"prefect.flow-run.{flow_run_id}", "prefect.resource.role": "flow-run"})
    if task_run_id:
        related.append({"prefect.resource.id": f"prefect.task-run.{task_run_id}", "prefect.resource.role": "task-run"})
    ctx = FlowRunContext.get()
    run = ctx.flow_run if ctx is not None else None
    if run is not None and (flow_run_id is None or str(run.id) == flow_run_id):
        related.append({"prefect.resource.id": f"prefect.flow.{run.flow_id}", "prefect.resource.role": "flow"})
        if run.deployment_id is not None:
            related.append(
                {
                    "prefect.resource.id": f"prefect.deployment.{run.deployment_id}",
                    "prefect.resource.role": "deployment",
                }
            )
    return related


def _fail_open(what: str, exc: Exception) -> None:
    logger.warning(
        "forewarn could not publish %s (%s: %s); the run's outcome is unchanged", what, type(exc).__name__, exc
    )


def respond_to_task_failure(failure: TaskFailure) -> None:
    """Emit :data:`TASK_FAILED_EVENT` and the task failure artifact, and note it in the flow run's tally."""
    if failure.flow_run_id is not None:
        _tally(failure.flow_run_id).failed_tasks.append(failure)
    try:
        from prefect.events import emit_event

        emit_event(
            event=TASK_FAILED_EVENT,
            resource={
                "prefect.resource.id": f"prefect.task-run.{failure.task_run_id}",
                "prefect.resource.name": failure.task_name,
                "forewarn.failure-kind": failure.kind,
            },
            related=_related(failure.flow_run_id),
            payload=failure.payload(),
        )
    except Exception as exc:
        _fail_open(f"the {TASK_FAILED_EVENT} event", exc)
    _artifact(TASK_ARTIFACT_KEY, task_failure_markdown(failure), f"forewarn: task {failure.task_name} failed")


def _artifact(key: str, markdown: str, description: str) -> None:
    try:
        from prefect.artifacts import create_markdown_artifact

        cast(Any, create_markdown_artifact)(markdown=markdown, key=key, description=description, _sync=True)
    except Exception as exc:
        _fail_open(f"the {key} artifact", exc)


def _flow_run_artifact(flow_run_id: Any, markdown: str, description: str) -> None:
    """The flow failure artifact, tied to the run by id: a crashed run's hooks run outside its context."""
    try:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.actions import ArtifactCreate

        with get_client(sync_client=True) as client:
            client.create_artifact(
                ArtifactCreate(
                    key=FLOW_ARTIFACT_KEY,
                    type="markdown",
                    data=markdown,
                    description=description,
                    flow_run_id=flow_run_id,
                )
            )
    except Exception as exc:
        _fail_open(f"the {FLOW_ARTIFACT_KEY} artifact", exc)


def _code(text: str) -> str:
    return "```\n" + text.replace("```", "'''") + "\n```"


def task_failure_markdown(failure: TaskFailure) -> str:
    """The markdown artifact of a task's final failure: what failed, what was tried, the runbook hint."""
    fallback = "a fallback ran and failed too" if failure.fallback_used else "no fallback was configured"
    runbook = failure.runbook or "(none configured: `@forewarn.task(runbook=...)`)"
    return (
        f"# forewarn: task `{failure.task_name}` failed after {failure.attempts} attempts\n\n"
        f"- retries: {failure.retries}\n- fallback: {fallback}\n"
        f"- last error ({failure.kind}): `{failure.exception_type}`\n\n{_code(failure.exception_message)}\n\n"
        f"**Runbook:** {runbook}\n"
    )


def _state_error(state: Any) -> BaseException | None:
    data = getattr(state, "data", None)
    if isinstance(data, BaseException):
        return data
    try:
        result = state.result(raise_on_failure=False, _sync=True)
    except Exception:  # the result may live in storage this process cannot read: the message still says it
        return None
    return result if isinstance(result, BaseException) else None


def flow_failure_payload(flow: Any, flow_run: Any, state: Any, tally: RunTally, redactor: Redactor) -> dict[str, Any]:
    """The payload of :data:`FLOW_FAILED_EVENT`: the run, its final state and error, what forewarn tried."""
    error = _state_error(state)
    message = str(error) if error is not None else str(getattr(state, "message", "") or "")
    return {
        "flow_name": str(getattr(flow, "name", "")),
        "flow_run_id": str(flow_run.id),
        "state": str(getattr(state, "name", "")),
        "exception_type": type(error).__name__ if error is not None else None,
        "exception_message": redactor.redact(message),
        "failure_kind": failure_kind(error),
        "run_count": int(getattr(flow_run, "run_count", 0) or 0),
        "retries": tally.retries,
        "fallbacks": tally.fallbacks,
        "failed_tasks": [f.payload() for f in tally.failed_tasks],
        "breakers_opened": list(tally.breakers_opened),
    }


def flow_failure_markdown(payload: dict[str, Any]) -> str:
    """The markdown artifact of a failed flow run: its error, the tasks that failed and their runbooks."""
    lines = [
        f"# forewarn: flow `{payload['flow_name']}` ended {payload['state']}\n",
        f"- last error ({payload['failure_kind']}): `{payload['exception_type']}`\n",
        _code(payload["exception_message"]) + "\n",
        f"- forewarn retried {payload['retries']} time(s) and used {payload['fallbacks']} fallback(s) in this run",
    ]
    if payload["breakers_opened"]:
        lines.append(f"- circuit breakers opened: {', '.join(payload['breakers_opened'])}")
    if payload["failed_tasks"]:
        lines.append("\n| task | attempts | fallback | error | runbook |\n|---|---|---|---|---|")
        for task in payload["failed_tasks"]:
            lines.append(
                f"| {task['task_name']} | {task['attempts']} | {'failed' if task['fallback_used'] else 'none'} "
                f"| {task['exception_type']} | {(task['runbook'] or '').replace('|', '/')} |"
            )
    return "\n".join(lines) + "\n"


def flow_ended(flow: Any, flow_run: Any, state: Any) -> None:
    """Prefect state hook ``(flow, flow_run, state)``: forget the run's tally; on failure, respond to it."""
    tally = pop_tally(str(flow_run.id))
    if not (state.is_failed() or state.is_crashed()):
        return
    try:
        payload = flow_failure_payload(flow, flow_run, state, tally, Redactor.from_settings())
    except Exception as exc:
        _fail_open(f"the {FLOW_FAILED_EVENT} event", exc)
        return
    try:
        from prefect.events import emit_event

        related = [{"prefect.resource.id": f"prefect.flow.{flow_run.flow_id}", "prefect.resource.role": "flow"}]
        if getattr(flow_run, "deployment_id", None) is not None:
            related.append(
                {
                    "prefect.resource.id": f"prefect.deployment.{flow_run.deployment_id}",
                    "prefect.resource.role": "deployment",
                }
            )
        emit_event(
            event=FLOW_FAILED_EVENT,
            resource={
                "prefect.resource.id": f"prefect.flow-run.{flow_run.id}",
                "prefect.resource.name": payload["flow_name"],
                "forewarn.failure-kind": payload["failure_kind"],
                "forewarn.run-count": str(payload["run_count"]),
            },
            related=related,
            payload=payload,
        )
    except Exception as exc:
        _fail_open(f"the {FLOW_FAILED_EVENT} event", exc)
    _flow_run_artifact(flow_run.id, flow_failure_markdown(payload), f"forewarn: flow {payload['flow_name']} failed")


def breaker_opened(breaker: CircuitBreaker) -> None:
    """``CircuitBreaker.on_open`` listener: emit :data:`BREAKER_OPENED_EVENT` for the run whose call opened it."""
    try:
        from prefect.context import TaskRunContext
        from prefect.events import emit_event

        ctx = TaskRunContext.get()
        task_run = ctx.task_run if ctx is not None else None
        flow_run_id = str(task_run.flow_run_id) if task_run is not None and task_run.flow_run_id else None
        if flow_run_id is not None:
            _tally(flow_run_id).breakers_opened.append(breaker.name)
        emit_event(
            event=BREAKER_OPENED_EVENT,
            resource={
                "prefect.resource.id": f"forewarn.breaker.{breaker.name}",
                "prefect.resource.name": breaker.name,
                "forewarn.failure-kind": "open",
            },
            related=_related(flow_run_id, task_run_id=str(task_run.id) if task_run is not None else None),
            payload={
                "breaker": breaker.name,
                "failures": breaker.failure_count if breaker.failures_at_open is None else breaker.failures_at_open,
                "failure_threshold": breaker.failure_threshold,
                "reset_timeout": breaker.reset_timeout,
                "flow_run_id": flow_run_id,
                "task_name": ctx.task.name if ctx is not None else None,
            },
        )
    except Exception as exc:
        _fail_open(f"the {BREAKER_OPENED_EVENT} event", exc)


def watch_breaker(breaker: CircuitBreaker) -> None:
    """Make ``breaker`` emit :data:`BREAKER_OPENED_EVENT` when it opens (once per breaker, however many tasks)."""
    if breaker_opened not in breaker.on_open:
        breaker.on_open.append(breaker_opened)


__all__ = [
    "BREAKER_OPENED_EVENT",
    "FLOW_ARTIFACT_KEY",
    "FLOW_FAILED_EVENT",
    "TASK_ARTIFACT_KEY",
    "TASK_FAILED_EVENT",
    "RunTally",
    "TaskFailure",
    "breaker_opened",
    "failure_kind",
    "flow_ended",
    "flow_failure_markdown",
    "flow_failure_payload",
    "note_task_call",
    "pop_tally",
    "respond_to_task_failure",
    "task_failure",
    "task_failure_markdown",
    "watch_breaker",
]
