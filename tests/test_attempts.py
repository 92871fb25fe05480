"""The attempt loop without Prefect: exact attempt rows, waits, fallbacks, timeouts and the breaker."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timedelta, timezone

import pytest

from forewarn.errors import FallbackError
from forewarn.records import AttemptOutcome, AttemptRecord
from forewarn.resilience.attempts import AttemptRunner, Hardening, hardened
from forewarn.resilience.breaker import CircuitBreaker
from forewarn.resilience.retry import RetryPolicy

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


class FakeClock:
    """Each reading is one second after the previous one."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        value = self.now
        self.now += timedelta(seconds=1)
        return value


def scripted(*outcomes: object):
    """A callable that raises or returns the given outcomes in order."""
    items = iter(outcomes)

    def call(*args: object, **kwargs: object) -> object:
        item = next(items)
        if isinstance(item, BaseException):
            raise item
        return item

    return call


def make_runner(rows: list[AttemptRecord], waits: list[float], **kwargs: object) -> AttemptRunner:
    policy = kwargs.pop("policy", RetryPolicy(attempts=3, wait_initial=1.0, wait_exp_base=2.0, wait_jitter=0))
    return AttemptRunner("charge", policy, sink=rows.append, sleep=waits.append, clock=FakeClock(), **kwargs)


def summary(rows: list[AttemptRecord]) -> list[tuple[int, str, str | None, bool | None, bool]]:
    return [(r.attempt, r.outcome.value, r.exception_type, r.retryable, r.used_fallback) for r in rows]


class TestRetries:
    def test_transient_error_is_retried_until_success(self) -> None:
        """A retryable error is retried with the policy's waits, and every attempt is recorded."""
        rows: list[AttemptRecord] = []
        waits: list[float] = []
        runner = make_runner(rows, waits)
        result = runner.run(
            scripted(ConnectionError("a"), TimeoutError("b"), "ok"), (), {}, task_run_id="t1", flow_run_id="f1"
        )
        assert result == "ok"
        assert summary(rows) == [
            (1, "failure", "ConnectionError", True, False),
            (2, "failure", "TimeoutError", True, False),
            (3, "success", None, None, False),
        ]
        assert waits == [1.0, 2.0]
        assert {(r.task_run_id, r.flow_run_id, r.task_name) for r in rows} == {("t1", "f1", "charge")}

    def test_exact_times_come_from_the_clock(self) -> None:
        """Start and end of each attempt are clock readings, in order."""
        rows: list[AttemptRecord] = []
        runner = make_runner(rows, [])
        runner.run(scripted(ConnectionError("a"), "ok"), (), {}, task_run_id="t", flow_run_id=None)
        assert [(r.start_time, r.end_time) for r in rows] == [
            (T0, T0 + timedelta(seconds=1)),
            (T0 + timedelta(seconds=2), T0 + timedelta(seconds=3)),
        ]
        assert rows[0].duration_seconds == 1.0

    def test_permanent_error_fails_at_once(self) -> None:
        """A ValueError is not retryable by default: one attempt, no wait, the error propagates."""
        rows: list[AttemptRecord] = []
        waits: list[float] = []
        runner = make_runner(rows, waits)
        with pytest.raises(ValueError, match="bad amount"):
            runner.run(scripted(ValueError("bad amount")), (), {}, task_run_id="t", flow_run_id=None)
        assert summary(rows) == [(1, "failure", "ValueError", False, False)]
        assert waits == []

    def test_retries_exhausted_raises_last_error(self) -> None:
        """After the last attempt the last error is raised unchanged."""
        rows: list[AttemptRecord] = []
        runner = make_runner(rows, [])
        with pytest.raises(ConnectionError, match="third"):
            runner.run(
                scripted(ConnectionError("first"), ConnectionError("second"), ConnectionError("third")),
                (),
                {},
                task_run_id="t",
                flow_run_id=None,
            )
        assert [r.attempt for r in rows] == [1, 2, 3]

    def test_messages_are_redacted(self) -> None:
        """Secrets in exception messages never reach the record."""
        rows: list[AttemptRecord] = []
        runner = make_runner(rows, [], policy=RetryPolicy(attempts=1))
        with pytest.raises(ConnectionError):
            runner.run(
                scripted(ConnectionError("login failed password=hunter2")), (), {}, task_run_id="t", flow_run_id=None
            )
        assert "hunter2" not in (rows[0].exception_message or "")
        assert "password=***" in (rows[0].exception_message or "")

    def test_hardening_adds_attempts(self) -> None:
        """Inside hardened(), a task gets the extra attempts."""
        rows: list[AttemptRecord] = []
        runner = make_runner(rows, [], policy=RetryPolicy(attempts=1, wait_jitter=0))
        with hardened(Hardening(extra_attempts=2)):
            assert (
                runner.run(
                    scripted(ConnectionError("a"), ConnectionError("b"), "ok"),
                    (),
                    {},
                    task_run_id="t",
                    flow_run_id=None,
                )
                == "ok"
            )
        assert [r.outcome for r in rows] == [AttemptOutcome.FAILURE, AttemptOutcome.FAILURE, AttemptOutcome.SUCCESS]


class TestFallback:
    def test_fallback_result_after_last_attempt(self) -> None:
        """The fallback receives the last error and the task's arguments; its row carries the next number."""
        rows: list[AttemptRecord] = []
        seen: list[tuple[object, ...]] = []

        def fallback(exc: Exception, order: str, *, amount: float) -> str:
            seen.append((type(exc).__name__, order, amount))
            return "secondary"

        runner = make_runner(rows, [], fallback=fallback, policy=RetryPolicy(attempts=2, wait_jitter=0))
        result = runner.run(
            scripted(ConnectionError("a"), ConnectionError("b")),
            ("o-1",),
            {"amount": 5.0},
            task_run_id="t",
            flow_run_id="f",
        )
        assert result == "secondary"
        assert seen == [("ConnectionError", "o-1", 5.0)]
        assert summary(rows) == [
            (1, "failure", "ConnectionError", True, False),
            (2, "failure", "ConnectionError", True, False),
            (3, "fallback", "ConnectionError", None, True),
        ]

    def test_fallback_used_at_once_for_permanent_error(self) -> None:
        """A non-retryable error goes straight to the fallback."""
        rows: list[AttemptRecord] = []
        runner = make_runner(rows, [], fallback=lambda exc: "fb")
        assert runner.run(scripted(ValueError("bad")), (), {}, task_run_id="t", flow_run_id=None) == "fb"
        assert [r.outcome.value for r in rows] == ["failure", "fallback"]

    def test_failing_fallback_shows_both_errors(self) -> None:
        """A fallback that fails raises FallbackError with both errors, and is recorded."""
        rows: list[AttemptRecord] = []

        def broken(exc: Exception) -> str:
            raise RuntimeError("secondary down")

        runner = make_runner(rows, [], fallback=broken, policy=RetryPolicy(attempts=1))
        with pytest.raises(FallbackError) as info:
            runner.run(scripted(ConnectionError("primary down")), (), {}, task_run_id="t", flow_run_id=None)
        assert isinstance(info.value.task_error, ConnectionError)
        assert isinstance(info.value.fallback_error, RuntimeError)
        assert isinstance(info.value.__cause__, RuntimeError)
        assert "primary down" in str(info.value) and "secondary down" in str(info.value)
        assert summary(rows) == [
            (1, "failure", "ConnectionError", True, False),
            (2, "fallback_failure", "RuntimeError", None, True),
        ]


class TestTimeout:
    def test_hung_sync_attempt_times_out_and_is_retried(self) -> None:
        """A sync attempt past timeout_seconds is recorded as a timeout and retried."""
        rows: list[AttemptRecord] = []
        release = threading.Event()
        calls = iter([lambda: release.wait(5), lambda: "ok"])

        def call() -> object:
            return next(calls)()

        # The hung first attempt waits out the whole limit; the second must finish within it even on a
        # loaded machine (a fresh thread per attempt), so the limit is generous rather than short.
        runner = make_runner(rows, [], timeout_seconds=1.0)
        try:
            assert runner.run(call, (), {}, task_run_id="t", flow_run_id=None) == "ok"
        finally:
            release.set()
        assert summary(rows) == [(1, "timeout", "AttemptTimeoutError", True, False), (2, "success", None, None, False)]

    def test_async_attempt_is_really_cancelled(self) -> None:
        """An async attempt past its timeout is cancelled (its finally block runs) and retried."""
        rows: list[AttemptRecord] = []
        cancelled: list[bool] = []
        waits: list[float] = []
        count = 0

        async def call() -> str:
            nonlocal count
            count += 1
            if count == 1:
                try:
                    await asyncio.sleep(5)
                finally:
                    cancelled.append(True)
            return "ok"

        async def fake_sleep(seconds: float) -> None:
            waits.append(seconds)

        runner = make_runner(rows, [], timeout_seconds=0.05)
        runner.asleep = fake_sleep
        assert asyncio.run(runner.arun(call, (), {}, task_run_id="t", flow_run_id=None)) == "ok"
        assert cancelled == [True]
        assert waits == [1.0]
        assert [r.outcome.value for r in rows] == ["timeout", "success"]


class TestCircuitBreaker:
    def test_open_circuit_skips_calls_and_uses_fallback(self) -> None:
        """Once open, the breaker refuses calls without retrying, and the fallback answers."""
        now = [0.0]
        breaker = CircuitBreaker("payments", failure_threshold=2, reset_timeout=30, clock=lambda: now[0])
        rows: list[AttemptRecord] = []
        calls: list[int] = []

        def down() -> str:
            calls.append(1)
            raise ConnectionError("down")

        runner = make_runner(
            rows, [], breaker=breaker, fallback=lambda exc: "fb", policy=RetryPolicy(attempts=2, wait_jitter=0)
        )
        assert runner.run(down, (), {}, task_run_id="t1", flow_run_id=None) == "fb"
        assert breaker.state == "open"
        rows.clear()
        assert runner.run(down, (), {}, task_run_id="t2", flow_run_id=None) == "fb"
        assert len(calls) == 2  # the second run never reached the service
        assert summary(rows) == [
            (1, "failure", "CircuitOpenError", False, False),
            (2, "fallback", "CircuitOpenError", None, True),
        ]


class Gate:
    """A gate that records entries and exits, makes the clock jump while entered, or refuses."""

    def __init__(self, clock: FakeClock, wait: float = 0.0, refuse: list[bool] | None = None) -> None:
        self.clock, self.wait, self.refuse = clock, wait, list(refuse or [])
        self.events: list[str] = []

    def __call__(self) -> Gate:
        return self

    def __enter__(self) -> None:
        self.clock.now += timedelta(seconds=self.wait)
        if self.refuse and self.refuse.pop(0):
            self.events.append("refused")
            raise TimeoutError("no slot within 5 s")
        self.events.append("enter")

    def __exit__(self, *exc: object) -> None:
        self.events.append("exit")

    async def __aenter__(self) -> None:
        self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__()


class TestGate:
    def test_wait_is_recorded_and_the_slot_held_per_attempt(self) -> None:
        """Each attempt enters the gate (its wait recorded) and leaves it before the backoff sleep."""
        rows: list[AttemptRecord] = []
        waits: list[float] = []
        clock = FakeClock()
        gate = Gate(clock, wait=2.5)
        runner = AttemptRunner(
            "charge",
            RetryPolicy(attempts=3, wait_initial=1.0, wait_jitter=0),
            sink=rows.append,
            sleep=waits.append,
            clock=clock,
            gate=gate,
        )
        result = runner.run(scripted(ConnectionError("reset"), "ok"), (), {}, task_run_id="t", flow_run_id="f")
        assert result == "ok"
        assert gate.events == ["enter", "exit", "enter", "exit"]
        # the clock ticks 1 s per reading: 2.5 s of gate plus the reading after it
        assert [r.wait_seconds for r in rows] == [3.5, 3.5]
        assert summary(rows) == [(1, "failure", "ConnectionError", True, False), (2, "success", None, None, False)]

    def test_refusal_fails_the_attempt_but_not_the_breaker(self) -> None:
        """A gate that refuses (timed out waiting) fails that attempt, is retried, and never trips the breaker."""
        rows: list[AttemptRecord] = []
        clock = FakeClock()
        breaker = CircuitBreaker("svc", failure_threshold=1)
        gate = Gate(clock, refuse=[True, False])
        runner = AttemptRunner(
            "charge",
            RetryPolicy(attempts=3, wait_jitter=0),
            sink=rows.append,
            sleep=lambda s: None,
            clock=clock,
            gate=gate,
            breaker=breaker,
        )
        assert runner.run(scripted("ok"), (), {}, task_run_id="t", flow_run_id="f") == "ok"
        assert gate.events == ["refused", "enter", "exit"]
        assert summary(rows) == [(1, "failure", "TimeoutError", True, False), (2, "success", None, None, False)]
        assert breaker.state == "closed" and breaker.failure_count == 0

    def test_without_a_gate_nothing_is_recorded_as_waited(self) -> None:
        rows: list[AttemptRecord] = []
        make_runner(rows, []).run(scripted("ok"), (), {}, task_run_id="t", flow_run_id="f")
        assert rows[0].wait_seconds is None

    def test_async_gate(self) -> None:
        """Async tasks use the async gate, with the same bookkeeping."""
        rows: list[AttemptRecord] = []
        clock = FakeClock()
        gate = Gate(clock, wait=1.0)
        runner = AttemptRunner("charge", RetryPolicy(attempts=1), sink=rows.append, clock=clock, agate=gate)

        async def call() -> str:
            return "ok"

        assert asyncio.run(runner.arun(call, (), {}, task_run_id="t", flow_run_id="f")) == "ok"
        assert gate.events == ["enter", "exit"]
        assert rows[0].wait_seconds == 2.0
