"""Failure response: events and artifacts when a task or flow finally fails, or a breaker opens (fail-open)."""

from __future__ import annotations

from typing import Any

import prefect.artifacts
import prefect.events
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

import forewarn
from forewarn import CircuitBreaker
from forewarn.orchestration import failure_response
from forewarn.orchestration.failure_response import (
    BREAKER_OPENED_EVENT,
    FLOW_ARTIFACT_KEY,
    FLOW_FAILED_EVENT,
    TASK_ARTIFACT_KEY,
    TASK_FAILED_EVENT,
)

pytestmark = pytest.mark.usefixtures("prefect_harness")

NO_WAIT: dict[str, Any] = {"retry_delay_seconds": 0, "sleep": lambda seconds: None}


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every event forewarn emits in the test, as emit_event's keyword arguments (still sent to the API)."""
    sent: list[dict[str, Any]] = []
    real = prefect.events.emit_event

    def capture(**kwargs: Any) -> Any:
        sent.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(prefect.events, "emit_event", capture)
    return sent


def named(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == name]


def related_ids(event: dict[str, Any]) -> dict[str, str]:
    return {r["prefect.resource.role"]: r["prefect.resource.id"] for r in event["related"]}


def artifacts(flow_run_id: str) -> dict[str, str]:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: str(a.data) for a in found if a.key}


class TestTaskAndFlowFailure:
    def test_final_failure_emits_what_was_tried(self, events: list[dict[str, Any]]) -> None:
        """A task that spends its retries emits forewarn.task.failed, then its flow forewarn.flow.failed."""

        @forewarn.task(retries=2, runbook="Check https://status.example/gateway first", **NO_WAIT)
        def charge() -> None:
            raise ConnectionError("gateway reset; password=hunter2")

        @forewarn.flow(score=False)
        def orders() -> None:
            charge()

        state = orders(return_state=True)
        assert state.is_failed()
        flow_run_id = str(state.state_details.flow_run_id)

        [task_event] = named(events, TASK_FAILED_EVENT)
        payload = task_event["payload"]
        assert {k: payload[k] for k in ("task_name", "attempts", "retries", "fallback_used", "exception_type")} == {
            "task_name": "charge",
            "attempts": 3,
            "retries": 2,
            "fallback_used": False,
            "exception_type": "ConnectionError",
        }
        assert "hunter2" not in payload["exception_message"] and "gateway reset" in payload["exception_message"]
        assert payload["runbook"] == "Check https://status.example/gateway first"
        assert task_event["resource"]["forewarn.failure-kind"] == "transient"
        assert related_ids(task_event)["flow-run"] == f"prefect.flow-run.{flow_run_id}"

        [flow_event] = named(events, FLOW_FAILED_EVENT)
        assert flow_event["resource"]["prefect.resource.id"] == f"prefect.flow-run.{flow_run_id}"
        assert flow_event["resource"]["forewarn.failure-kind"] == "transient"
        assert flow_event["resource"]["forewarn.run-count"] == "1"
        flow_payload = flow_event["payload"]
        assert (flow_payload["exception_type"], flow_payload["retries"], flow_payload["fallbacks"]) == (
            "ConnectionError",
            2,
            0,
        )
        assert [t["task_name"] for t in flow_payload["failed_tasks"]] == ["charge"]
        assert "hunter2" not in str(flow_payload)

        found = artifacts(flow_run_id)
        assert "Check https://status.example/gateway first" in found[TASK_ARTIFACT_KEY]
        assert "failed after 3 attempts" in found[TASK_ARTIFACT_KEY]
        assert "| charge | 3 | none | ConnectionError |" in found[FLOW_ARTIFACT_KEY]
        assert "hunter2" not in found[TASK_ARTIFACT_KEY] + found[FLOW_ARTIFACT_KEY]

    def test_permanent_error_and_fallback_are_reported(self, events: list[dict[str, Any]]) -> None:
        """A fallback that saved one task is counted; a permanent error is labelled permanent, not retried."""

        @forewarn.task(retries=1, fallback=lambda exc: "queued", **NO_WAIT)
        def notify() -> str:
            raise ConnectionError("smtp down")

        @forewarn.task(retries=3, **NO_WAIT)
        def validate() -> None:
            raise ValueError("order has no items")

        @forewarn.flow(score=False)
        def orders() -> None:
            notify()
            validate()

        assert orders(return_state=True).is_failed()
        [task_event] = named(events, TASK_FAILED_EVENT)  # notify was saved by its fallback: no event
        assert (task_event["payload"]["task_name"], task_event["payload"]["attempts"]) == ("validate", 1)
        assert task_event["resource"]["forewarn.failure-kind"] == "permanent"
        [flow_event] = named(events, FLOW_FAILED_EVENT)
        assert (flow_event["payload"]["fallbacks"], flow_event["payload"]["retries"]) == (1, 1)
        assert flow_event["resource"]["forewarn.failure-kind"] == "permanent"

    def test_completed_run_emits_nothing_and_forgets_its_tally(self, events: list[dict[str, Any]]) -> None:
        """A run that completes, retries and all, emits no failure event and leaves no tally behind."""
        calls = {"n": 0}

        @forewarn.task(retries=2, **NO_WAIT)
        def flaky() -> str:
            calls["n"] += 1
            if calls["n"] == 1:
                raise ConnectionError("once")
            return "ok"

        @forewarn.flow(score=False)
        def orders() -> str:
            return flaky()

        state = orders(return_state=True)
        assert state.is_completed()
        assert named(events, TASK_FAILED_EVENT) == named(events, FLOW_FAILED_EVENT) == []
        assert str(state.state_details.flow_run_id) not in failure_response._tallies

    def test_crashed_run_is_reported_on_its_own_run(self, events: list[dict[str, Any]]) -> None:
        """A crash runs the hook outside the run's context: the event and artifact still name that run."""

        @forewarn.flow(score=False)
        def interrupted() -> None:
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            interrupted()
        [flow_event] = named(events, FLOW_FAILED_EVENT)
        assert flow_event["payload"]["state"] == "Crashed"
        assert "ended Crashed" in artifacts(flow_event["payload"]["flow_run_id"])[FLOW_ARTIFACT_KEY]


class TestBreakerOpened:
    def test_opening_emits_an_event_related_to_the_run(self, events: list[dict[str, Any]]) -> None:
        """The breaker's on_open listener emits forewarn.breaker.opened with the flow run and task run."""
        breaker = CircuitBreaker("payments-api", failure_threshold=2, reset_timeout=60)

        @forewarn.task(retries=3, circuit_breaker=breaker, **NO_WAIT)
        def charge() -> None:
            raise ConnectionError("down")

        @forewarn.flow(score=False)
        def orders() -> None:
            charge()

        state = orders(return_state=True)
        assert state.is_failed()
        [opened] = named(events, BREAKER_OPENED_EVENT)
        assert opened["resource"]["prefect.resource.id"] == "forewarn.breaker.payments-api"
        assert opened["payload"]["failures"] == 2 and opened["payload"]["task_name"] == "charge"
        roles = related_ids(opened)
        assert roles["flow-run"] == f"prefect.flow-run.{state.state_details.flow_run_id}"
        assert roles["task-run"].startswith("prefect.task-run.")
        [flow_event] = named(events, FLOW_FAILED_EVENT)
        assert flow_event["payload"]["breakers_opened"] == ["payments-api"]
        # the third attempt was refused by the open breaker: not retried into it
        assert named(events, TASK_FAILED_EVENT)[0]["payload"]["exception_type"] == "CircuitOpenError"
        assert breaker.on_open.count(failure_response.breaker_opened) == 1


class TestFailOpen:
    def test_a_broken_event_pipe_changes_no_outcome(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """emit_event and artifacts raising: the task's own error still fails the run; nothing else does."""

        def broken(**kwargs: Any) -> None:
            raise RuntimeError("events API down")

        monkeypatch.setattr(prefect.events, "emit_event", broken)
        monkeypatch.setattr(prefect.artifacts, "create_markdown_artifact", broken)
        breaker = CircuitBreaker("svc", failure_threshold=1)

        @forewarn.task(retries=0, circuit_breaker=breaker, **NO_WAIT)
        def charge() -> None:
            raise ConnectionError("down")

        @forewarn.task(retries=0, fallback=lambda exc: "saved", **NO_WAIT)
        def notify() -> str:
            raise ConnectionError("down")

        @forewarn.flow(score=False)
        def fails() -> None:
            charge()

        @forewarn.flow(score=False)
        def saved() -> str:
            return notify()

        state = fails(return_state=True)
        assert state.is_failed()
        with pytest.raises(ConnectionError, match="down"):
            state.result()
        assert saved() == "saved"

    def test_runbook_must_be_text(self) -> None:
        with pytest.raises(forewarn.errors.ConfigurationError, match="runbook="):
            forewarn.task(runbook=["step 1"])
