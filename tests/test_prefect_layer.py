"""forewarn.task and forewarn.flow inside real Prefect runs: exact telemetry rows in the store."""

from __future__ import annotations

import asyncio
import inspect
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pandas as pd
import prefect
import pytest
from prefect.states import Cancelled, Cancelling, Completed, Crashed, Failed

import forewarn
from forewarn import RetryPolicy
from forewarn.errors import ConfigurationError, FallbackError
from forewarn.orchestration.flows import _record_end, parameters_hash
from forewarn.orchestration.recorder import default_recorder
from forewarn.settings import get_settings
from forewarn.store import TelemetryStore

pytestmark = pytest.mark.usefixtures("prefect_harness")

FAST = RetryPolicy(attempts=3, wait_initial=1.0, wait_exp_base=2.0, wait_jitter=0)


def store() -> TelemetryStore:
    return TelemetryStore(get_settings().db_url)


def attempt_rows(flow_run_id: str) -> list[tuple[Any, ...]]:
    frame = store().attempts(flow_run_id=flow_run_id).sort_values(["task_name", "attempt"])
    cols = ["task_name", "attempt", "outcome", "exception_type", "retryable", "used_fallback"]
    return [tuple(None if pd.isna(v) else v for v in row) for row in frame[cols].itertuples(index=False)]


def flaky(failures: int, error: type[Exception] = ConnectionError):
    state = {"calls": 0}

    def call() -> str:
        state["calls"] += 1
        if state["calls"] <= failures:
            raise error(f"failure {state['calls']}")
        return "ok"

    return call


class TestTaskOptions:
    def test_returns_a_real_prefect_task_with_prefect_options(self) -> None:
        """Prefect's own options pass through to a real prefect.Task."""

        @forewarn.task(name="charge-card", tags=["payments"], retries=2)
        def charge() -> int:
            return 1

        assert isinstance(charge, prefect.Task)
        assert charge.name == "charge-card"
        assert charge.tags == {"payments"}
        assert charge.retries == 0  # forewarn retries inside the call, Prefect does not
        assert forewarn.orchestration.tasks.runner_of(charge).policy.attempts == 3

    def test_prefect_retry_options_are_run_by_forewarn(self) -> None:
        """Prefect's retry options map onto forewarn's policy (tests/test_prefect_options.py has the detail)."""
        charge = forewarn.task(retries=1, retry_delay_seconds=2, retry_jitter_factor=0.1)(lambda: None)
        policy = forewarn.orchestration.tasks.runner_of(charge).policy
        assert (policy.attempts, policy.wait_schedule, policy.wait_jitter_factor) == (2, (2.0,), 0.1)
        assert (charge.retries, charge.retry_jitter_factor) == (0, None)

    @pytest.mark.parametrize(
        ("kwargs", "setting"),
        [
            ({"retries": -1}, "retries"),
            ({"timeout_seconds": 0}, "timeout_seconds"),
            ({"fallback": "queue"}, "fallback"),
            ({"retries": 1, "retry": FAST}, "retries"),
        ],
    )
    def test_bad_options_fail_at_decoration(self, kwargs: dict[str, Any], setting: str) -> None:
        """A bad option is a ConfigurationError naming it, raised when the task is defined."""
        with pytest.raises(ConfigurationError) as info:
            forewarn.task(**kwargs)(lambda: None)
        assert info.value.setting == setting

    def test_fn_is_fault_tolerant_but_records_nothing(self) -> None:
        """Calling task.fn() outside a run retries and falls back but writes no telemetry."""
        waits: list[float] = []
        call = flaky(1)

        @forewarn.task(retry=FAST, sleep=waits.append)
        def step() -> str:
            return call()

        assert step.fn() == "ok"
        assert waits == [1.0]
        assert store().attempts().empty


    def test_arguments_bind_as_they_would_to_the_function(self) -> None:
        """The wrapper carries fn's signature (computed once); positional, defaulted and keyword-only bind."""

        def add(a: int, b: int = 2, *args: int, c: int = 3, **extra: int) -> tuple[Any, ...]:
            return a, b, args, c, extra

        task = forewarn.task(add)

        @prefect.flow
        def calls() -> list[tuple[Any, ...]]:
            return [task(1), task(1, 5), task(1, 5, 6, 7, c=8, d=9), task(a=1, c=4)]

        assert inspect.signature(task.fn) == inspect.signature(add)
        assert calls() == [(1, 2, (), 3, {}), (1, 5, (), 3, {}), (1, 5, (6, 7), 8, {"d": 9}), (1, 2, (), 4, {})]
        with pytest.raises(TypeError):
            task.fn(1, 2, b=3)


class TestFlowTelemetry:
    def test_retried_task_rows_and_completed_run(self) -> None:
        """A flow whose task recovers on its third attempt: three attempt rows, run COMPLETED."""
        waits: list[float] = []
        call = flaky(2)

        @forewarn.task(retry=FAST, sleep=waits.append)
        def reserve(order_id: str) -> str:
            return call()

        @forewarn.flow(name="orders-test")
        def orders(order_id: str = "A-1") -> str:
            return reserve(order_id)

        state = orders(order_id="A-7", return_state=True)
        assert state.is_completed()
        run_id = str(state.state_details.flow_run_id)
        assert attempt_rows(run_id) == [
            ("reserve", 1, "failure", "ConnectionError", True, False),
            ("reserve", 2, "failure", "ConnectionError", True, False),
            ("reserve", 3, "success", None, None, False),
        ]
        assert waits == [1.0, 2.0]
        run = store().runs(flow_name="orders-test").iloc[0]
        assert (run.flow_run_id, run.state, run.source) == (run_id, "COMPLETED", "forewarn")
        assert run.parameters == {"order_id": "A-7"}
        assert run.parameters_hash == parameters_hash({"order_id": "A-7"})
        assert run.forewarn_version == forewarn.__version__
        assert run.start_time <= run.end_time
        assert run.scheduled_start is not None and not pd.isna(run.scheduled_start)

    def test_failed_run_with_permanent_error(self) -> None:
        """A ValueError fails at once; the run ends FAILED with one attempt row."""

        @forewarn.task(retry=FAST, sleep=lambda s: None)
        def validate() -> None:
            raise ValueError("amount must be positive")

        @forewarn.flow(name="validate-test")
        def checkout() -> None:
            validate()

        state = checkout(return_state=True)
        assert state.is_failed()
        run_id = str(state.state_details.flow_run_id)
        assert attempt_rows(run_id) == [("validate", 1, "failure", "ValueError", False, False)]
        assert store().runs(flow_name="validate-test").iloc[0].state == "FAILED"

    def test_fallback_produces_the_result(self) -> None:
        """When retries run out the fallback's result is the task's, recorded as a fallback row."""
        call = flaky(99)

        @forewarn.task(
            retry=FAST.with_options(attempts=2),
            sleep=lambda s: None,
            fallback=lambda exc, order_id: f"secondary-{order_id}",
        )
        def charge(order_id: str) -> str:
            return call()

        @forewarn.flow(name="fallback-test")
        def pay() -> str:
            return charge("A-1")

        state = pay(return_state=True)
        assert state.result() == "secondary-A-1"
        assert attempt_rows(str(state.state_details.flow_run_id)) == [
            ("charge", 1, "failure", "ConnectionError", True, False),
            ("charge", 2, "failure", "ConnectionError", True, False),
            ("charge", 3, "fallback", "ConnectionError", None, True),
        ]

    def test_failing_fallback_fails_the_run_with_both_errors(self) -> None:
        """A fallback that fails makes the task fail with FallbackError naming both errors."""

        def broken(exc: Exception) -> str:
            raise RuntimeError("secondary gateway down")

        @forewarn.task(retry=FAST.with_options(attempts=1), fallback=broken)
        def charge() -> str:
            raise ConnectionError("primary gateway down")

        @forewarn.flow(name="fallback-fail-test")
        def pay() -> str:
            return charge()

        state = pay(return_state=True)
        assert state.is_failed()
        with pytest.raises(FallbackError, match=r"primary gateway down.*secondary gateway down"):
            state.result()
        assert [r[2] for r in attempt_rows(str(state.state_details.flow_run_id))] == ["failure", "fallback_failure"]

    def test_async_task_timeout_is_recorded_and_retried(self) -> None:
        """An async task that hangs is cancelled after timeout_seconds and retried."""
        calls = {"n": 0}

        waits: list[float] = []

        @forewarn.task(retry=FAST, timeout_seconds=0.1, sleep=waits.append)
        async def ship() -> str:
            calls["n"] += 1
            if calls["n"] == 1:
                await asyncio.sleep(10)
            return "shipped"

        @forewarn.flow(name="timeout-test")
        async def fulfil() -> str:
            return await ship()

        state = asyncio.run(fulfil(return_state=True))
        assert state.is_completed()
        assert waits == [1.0]
        assert [r[2] for r in attempt_rows(str(state.state_details.flow_run_id))] == ["timeout", "success"]

    def test_submitted_tasks_record_their_own_task_run_ids(self) -> None:
        """Concurrent .submit() calls record under distinct task run ids of the same flow run."""

        @forewarn.task(retry=FAST)
        def item(i: int) -> int:
            return i * 2

        @forewarn.flow(name="submit-test")
        def fan_out() -> list[int]:
            return [f.result() for f in [item.submit(i) for i in range(5)]]

        state = fan_out(return_state=True)
        assert state.result() == [0, 2, 4, 6, 8]
        frame = store().attempts(flow_run_id=str(state.state_details.flow_run_id))
        assert len(frame) == 5 and frame["task_run_id"].nunique() == 5
        assert set(frame["outcome"]) == {"success"}

    def test_pre_run_features_are_recorded(self) -> None:
        """features(parameters) is recorded with the run and read back as feature_* columns."""

        @forewarn.flow(name="features-test", features=lambda p: {"input_rows": len(p["rows"]), "source": "sap"})
        def load(rows: list[int]) -> int:
            return len(rows)

        assert load(rows=[1, 2, 3]) == 3
        run = store().runs(flow_name="features-test").iloc[0]
        assert run.features == {"input_rows": 3, "source": "sap"}
        assert (run.feature_input_rows, run.feature_source) == (3, "sap")

    def test_broken_features_function_does_not_fail_the_run(self) -> None:
        """A features function that raises is logged; the run goes on and is recorded without features."""

        @forewarn.flow(name="features-broken-test", features=lambda p: 1 / 0)
        def load() -> str:
            return "ok"

        assert load() == "ok"
        assert store().runs(flow_name="features-broken-test").iloc[0].features in ({}, None)

    def test_crash_is_recorded(self) -> None:
        """A flow interrupted by a BaseException ends CRASHED in the store."""

        @forewarn.flow(name="crash-test")
        def interrupted() -> None:
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            interrupted()
        assert store().runs(flow_name="crash-test").iloc[0].state == "CRASHED"


class TestRealEndings:
    """States Prefect itself gives a run, recorded through the real engine and hooks."""

    def test_a_run_past_its_timeout_is_stored_timedout(self) -> None:
        """Prefect's flow timeout interrupts the body; the run is TimedOut there and TIMEDOUT in the store."""

        @forewarn.flow(name="too-slow", timeout_seconds=0.5)
        def too_slow() -> None:
            time.sleep(60)  # interrupted by Prefect's own timeout after 0.5 s

        started = time.monotonic()
        state = too_slow(return_state=True)
        assert state.name == "TimedOut" and time.monotonic() - started < 30
        recorder = default_recorder()
        assert recorder is not None and recorder.flush(30)
        assert store().runs(flow_name="too-slow").iloc[0].state == "TIMEDOUT"


class TestFinalStateHook:
    @pytest.mark.parametrize(
        ("state", "expected"),
        [
            (Completed(), "COMPLETED"),
            (Failed(), "FAILED"),
            (Cancelled(), "CANCELLED"),
            (Cancelling(), "CANCELLED"),  # what Prefect hands on_cancellation hooks
            (Crashed(), "CRASHED"),
            (Failed(name="TimedOut"), "TIMEDOUT"),
        ],
    )
    def test_hook_writes_the_final_state(self, state: Any, expected: str) -> None:
        """The (flow, flow_run, state) hook maps Prefect's state to the stored final state."""
        from forewarn.records import FlowRunRecord

        t0 = datetime.now(timezone.utc) - timedelta(seconds=5)
        s = store()
        s.record_flow_run_start(FlowRunRecord("run-1", "hooked", start_time=t0))

        class FakeRun:
            id = "run-1"

        _record_end(None, FakeRun(), state)
        row = s.runs(flow_name="hooked").iloc[0]
        assert row.state == expected
        assert row.end_time >= t0


class TestTelemetryNeverFailsTheFlow:
    def test_unreachable_store_is_logged_and_counted(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """With the database down, the flow still completes; the recorder counts and logs the errors."""
        monkeypatch.setenv("FOREWARN_DB_URL", "postgresql+psycopg://u:s3cret@127.0.0.1:1/none")
        get_settings.cache_clear()

        @forewarn.task(retry=FAST)
        def step() -> str:
            return "done"

        @forewarn.flow(name="no-store-test")
        def resilient() -> str:
            return step()

        assert resilient() == "done"
        recorder = default_recorder()
        assert recorder is not None
        # the run start, the attempt and the run end wait in the spool; each failed drain is counted
        assert not recorder.flush(0.3)
        assert recorder.pending == 3 and recorder.errors >= 1
        assert "could not record" in caplog.text
        assert "s3cret" not in caplog.text
