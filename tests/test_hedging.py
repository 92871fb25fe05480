"""Hedged, redundant and failover calls without Prefect: the race's schedule, exact attempt rows, no sleeping."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from forewarn.errors import CircuitOpenError, ConfigurationError
from forewarn.records import AttemptOutcome, AttemptRecord
from forewarn.resilience.attempts import AttemptRunner
from forewarn.resilience.breaker import CircuitBreaker
from forewarn.resilience.failover import Provider, providers_of
from forewarn.resilience.hedging import HedgingPolicy, ThreadExecutor, VirtualExecutor, arace, race
from forewarn.resilience.retry import RetryPolicy

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
NO_WAIT = RetryPolicy(attempts=2, wait_initial=1.0, wait_jitter=0)


def copies(vx: VirtualExecutor, script: dict[int, tuple[float, object]]) -> Any:
    """A copy that takes ``script[replica][0]`` virtual seconds, then returns or raises ``script[replica][1]``."""

    def call(replica: int) -> object:
        seconds, outcome = script[replica]
        vx.sleep(seconds)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return call


def run_race(policy: HedgingPolicy, script: dict[int, tuple[float, object]]) -> tuple[object, list[tuple[Any, ...]]]:
    vx = VirtualExecutor()
    events: list[tuple[Any, ...]] = []
    result = race(
        copies(vx, script),
        policy,
        executor=vx,
        on_start=lambda r: events.append(("start", r, vx.now())),
        on_end=lambda r, status, exc: events.append((status, r, vx.now())),
    )
    return result, events


class TestHedgingPolicy:
    @pytest.mark.parametrize(
        ("kwargs", "setting"),
        [
            ({"replicas": 0}, "replicas"),
            ({"replicas": True}, "replicas"),
            ({"max_hedged": 0}, "max_hedged"),
            ({"hedge_after": -1.0}, "hedge_after"),
            ({"hedge_after": float("inf")}, "hedge_after"),
            ({"hedge_after": "2"}, "hedge_after"),
        ],
    )
    def test_bad_values_name_the_option(self, kwargs: dict[str, Any], setting: str) -> None:
        """Each bad value is a ConfigurationError naming its option."""
        with pytest.raises(ConfigurationError) as info:
            HedgingPolicy(**kwargs)
        assert info.value.setting == setting

    def test_max_hedged_counts_only_with_a_delay(self) -> None:
        """max_hedged adds copies only when hedge_after is set."""
        assert HedgingPolicy(replicas=2, max_hedged=3).copies == 2
        assert HedgingPolicy(replicas=2, hedge_after=1.0, max_hedged=3).copies == 5


class TestRace:
    def test_replicas_start_together_and_the_fastest_wins(self) -> None:
        """Three replicas start at t=0; the one done first wins, the others are reported lost."""
        result, events = run_race(HedgingPolicy(replicas=3), {1: (5.0, "a"), 2: (1.0, "b"), 3: (3.0, "c")})
        assert result == "b"
        assert events == [
            ("start", 1, 0.0),
            ("start", 2, 0.0),
            ("start", 3, 0.0),
            ("success", 2, 1.0),
            ("lost", 1, 1.0),
            ("lost", 3, 1.0),
        ]

    def test_a_hedge_starts_after_the_delay_and_one_more_after_another(self) -> None:
        """hedge_after=2, max_hedged=2: copies start at 0, 2 and 4; the third wins at 4.5."""
        script = {1: (10.0, "a"), 2: (10.0, "b"), 3: (0.5, "c")}
        result, events = run_race(HedgingPolicy(hedge_after=2.0, max_hedged=2), script)
        assert result == "c"
        assert events == [
            ("start", 1, 0.0),
            ("start", 2, 2.0),
            ("start", 3, 4.0),
            ("success", 3, 4.5),
            ("lost", 1, 4.5),
            ("lost", 2, 4.5),
        ]

    def test_no_hedge_when_the_first_copy_is_fast_enough(self) -> None:
        """A copy that succeeds within the delay runs alone."""
        result, events = run_race(HedgingPolicy(hedge_after=2.0), {1: (1.5, "a")})
        assert result == "a" and events == [("start", 1, 0.0), ("success", 1, 1.5)]

    def test_a_failure_starts_the_next_hedge_at_once(self) -> None:
        """A copy failing at t=0.5 starts the hedge then, not at the delay."""
        script = {1: (0.5, ConnectionError("reset")), 2: (1.0, "b")}
        result, events = run_race(HedgingPolicy(hedge_after=5.0), script)
        assert result == "b"
        assert events == [("start", 1, 0.0), ("failure", 1, 0.5), ("start", 2, 0.5), ("success", 2, 1.5)]

    def test_all_copies_failing_raise_the_last_error(self) -> None:
        """With every copy failed, the error of the copy that failed last is raised."""
        vx = VirtualExecutor()
        script = {1: (2.0, ConnectionError("one")), 2: (0.5, ConnectionError("two"))}
        with pytest.raises(ConnectionError, match="one"):
            race(copies(vx, script), HedgingPolicy(replicas=2), executor=vx, on_start=print, on_end=lambda *a: None)

    def test_an_error_not_worth_hedging_starts_no_copy(self) -> None:
        """hedge_on(error) false: the failure is final for that copy and no hedge follows it."""
        vx = VirtualExecutor()
        started: list[int] = []
        with pytest.raises(ValueError):
            race(
                copies(vx, {1: (0.1, ValueError("bad order"))}),
                HedgingPolicy(hedge_after=1.0),
                executor=vx,
                on_start=started.append,
                on_end=lambda *a: None,
                hedge_on=lambda exc: not isinstance(exc, ValueError),
            )
        assert started == [1]

    def test_threads_abandon_the_loser(self) -> None:
        """With real threads, a blocked first copy is abandoned when the hedge returns (no sleeping)."""
        release = threading.Event()
        ends: list[tuple[int, str]] = []

        def call(replica: int) -> int:
            if replica == 1:
                release.wait(30)
            return replica

        try:
            result = race(
                call,
                HedgingPolicy(hedge_after=0.0),
                executor=ThreadExecutor(),
                on_start=lambda r: None,
                on_end=lambda r, status, exc: ends.append((r, status)),
            )
        finally:
            release.set()
        assert result == 2 and ends == [(2, "success"), (1, "lost")]

    def test_async_losers_are_cancelled(self) -> None:
        """arace cancels the copy still running when another wins, before reporting it lost."""
        cancelled: list[int] = []

        async def call(replica: int) -> int:
            if replica == 1:
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    cancelled.append(replica)
                    raise
            return replica

        ends: list[tuple[int, str]] = []
        result = asyncio.run(
            arace(
                call,
                HedgingPolicy(hedge_after=0.0),
                on_start=lambda r: None,
                on_end=lambda r, status, exc: ends.append((r, status)),
            )
        )
        assert result == 2 and cancelled == [1] and ends == [(2, "success"), (1, "lost")]


def clocked(vx: VirtualExecutor) -> Any:
    return lambda: T0 + timedelta(seconds=vx.now())


def rows_of(rows: list[AttemptRecord]) -> list[tuple[Any, ...]]:
    return [
        (r.attempt, r.replica, r.provider, r.outcome.value, r.exception_type, r.duration_seconds, r.used_fallback)
        for r in rows
    ]


class TestRunnerWithHedging:
    def test_every_copy_is_one_row_with_its_replica(self) -> None:
        """A hedged call: the slow first copy is abandoned, the hedge succeeds; rows in start order."""
        vx = VirtualExecutor()
        rows: list[AttemptRecord] = []
        durations = iter([5.0, 1.0])

        def call(order: str) -> str:
            vx.sleep(next(durations))
            return f"ok {order}"

        runner = AttemptRunner(
            "quote",
            NO_WAIT,
            sink=rows.append,
            sleep=vx.sleep,
            clock=clocked(vx),
            hedging=HedgingPolicy(hedge_after=2.0),
            executor=vx,
        )
        assert runner.run(call, ("A-1",), {}, task_run_id="t1", flow_run_id="f1") == "ok A-1"
        assert rows_of(rows) == [
            (2, 2, None, "success", None, 1.0, False),
            (1, 1, None, "abandoned", None, 3.0, False),
        ]

    def test_a_race_lost_by_every_copy_is_retried_as_a_whole(self) -> None:
        """Two replicas both fail: the retry policy waits, then races two fresh copies; rows 1-4."""
        vx = VirtualExecutor()
        rows: list[AttemptRecord] = []
        waits: list[float] = []
        outcomes = iter([ConnectionError("a"), ConnectionError("b"), "ok", "late"])

        def call() -> str:
            item = next(outcomes)
            vx.sleep(1.0)
            if isinstance(item, Exception):
                raise item
            return item

        def sleep(seconds: float) -> None:
            waits.append(seconds)
            vx.sleep(seconds)

        runner = AttemptRunner(
            "quote",
            NO_WAIT,
            sink=rows.append,
            sleep=sleep,
            clock=clocked(vx),
            hedging=HedgingPolicy(replicas=2),
            executor=vx,
        )
        assert runner.run(call, (), {}, task_run_id="t1", flow_run_id="f1") == "ok"
        assert waits == [1.0]
        assert rows_of(rows) == [
            (1, 1, None, "failure", "ConnectionError", 1.0, False),
            (2, 2, None, "failure", "ConnectionError", 1.0, False),
            (3, 1, None, "success", None, 1.0, False),
            (4, 2, None, "abandoned", None, 1.0, False),
        ]

    def test_async_losers_are_recorded_cancelled(self) -> None:
        """An async task's losing copy is cancelled and recorded as such."""
        rows: list[AttemptRecord] = []
        calls = {"n": 0}

        async def call() -> str:
            calls["n"] += 1
            if calls["n"] == 1:
                await asyncio.Event().wait()
            return "fast"

        runner = AttemptRunner(
            "quote", NO_WAIT, sink=rows.append, clock=lambda: T0, hedging=HedgingPolicy(hedge_after=0.0)
        )
        assert asyncio.run(runner.arun(call, (), {}, task_run_id="t1", flow_run_id="f1")) == "fast"
        assert [(r.attempt, r.replica, r.outcome) for r in rows] == [
            (2, 2, AttemptOutcome.SUCCESS),
            (1, 1, AttemptOutcome.CANCELLED),
        ]


class TestFailover:
    def test_providers_are_named_and_checked(self) -> None:
        """Callables by __name__, dicts by position; duplicates and non-callables refused."""

        def primary() -> None: ...

        assert [p.name for p in providers_of([primary, {"host": "b"}, Provider("x", call=print)])] == [
            "primary",
            "parameters 2",
            "x",
        ]
        with pytest.raises(ConfigurationError, match="distinct provider names"):
            providers_of([primary, primary])
        with pytest.raises(ConfigurationError) as info:
            providers_of([primary, 42])
        assert info.value.setting == "providers[1]"
        with pytest.raises(ConfigurationError, match="at least one provider"):
            providers_of({"host": "b"})

    def test_next_provider_after_the_retries_of_the_first(self) -> None:
        """The primary fails its two attempts; the backup serves; rows carry both names, numbered on."""
        rows: list[AttemptRecord] = []
        waits: list[float] = []

        def primary(order: str) -> str:
            raise ConnectionError("primary down")

        def backup(order: str) -> str:
            return f"backup {order}"

        runner = AttemptRunner(
            "charge",
            NO_WAIT,
            sink=rows.append,
            sleep=waits.append,
            clock=lambda: T0,
            providers=providers_of([primary, backup]),
        )
        assert runner.run(lambda order: "never", ("A-1",), {}, task_run_id="t1", flow_run_id="f1") == "backup A-1"
        assert waits == [1.0]
        assert [(r.attempt, r.provider, r.outcome.value, r.retryable) for r in rows] == [
            (1, "primary", "failure", True),
            (2, "primary", "failure", True),
            (3, "backup", "success", None),
        ]

    def test_an_open_breaker_moves_on_at_once(self) -> None:
        """A provider whose breaker is open is skipped after one refused attempt, without a wait."""
        rows: list[AttemptRecord] = []
        waits: list[float] = []
        open_breaker = CircuitBreaker("gw-a", failure_threshold=1, clock=lambda: 0.0)
        open_breaker.record_failure()
        calls: list[str] = []
        runner = AttemptRunner(
            "charge",
            NO_WAIT,
            sink=rows.append,
            sleep=waits.append,
            clock=lambda: T0,
            providers=(
                Provider("a", parameters={"gateway": "a"}, breaker=open_breaker),
                Provider("b", parameters={"gateway": "b"}),
            ),
        )

        def charge(gateway: str = "none") -> str:
            calls.append(gateway)
            return gateway

        assert runner.run(charge, (), {}, task_run_id="t1", flow_run_id=None) == "b"
        assert calls == ["b"] and waits == []
        assert [(r.attempt, r.provider, r.outcome.value, r.exception_type) for r in rows] == [
            (1, "a", "failure", CircuitOpenError.__name__),
            (2, "b", "success", None),
        ]

    def test_fallback_after_every_provider_failed(self) -> None:
        """All providers fail for good: the fallback runs with the last error, recorded last."""
        rows: list[AttemptRecord] = []

        def a() -> str:
            raise ValueError("declined")  # permanent: no retry, straight to the next provider

        def b() -> str:
            raise ValueError("declined again")

        runner = AttemptRunner(
            "charge",
            NO_WAIT,
            sink=rows.append,
            sleep=lambda s: None,
            clock=lambda: T0,
            providers=providers_of([a, b]),
            fallback=lambda exc: f"queued after {exc}",
        )
        assert runner.run(lambda: "never", (), {}, task_run_id="t1", flow_run_id=None) == "queued after declined again"
        assert [(r.attempt, r.provider, r.outcome.value) for r in rows] == [
            (1, "a", "failure"),
            (2, "b", "failure"),
            (3, None, "fallback"),
        ]
