"""CircuitBreaker over a shared state: cached reads, written-through transitions, batches, fallback, wiring.

Two breakers with one name over one backend stand for two processes; the multi-process tests with real
processes and a real store are in test_breaker_processes.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import pytest

from forewarn.errors import CircuitOpenError, StoreUnreachableError
from forewarn.resilience.attempts import AttemptRunner
from forewarn.resilience.breaker import CircuitBreaker, MemoryBackend
from forewarn.resilience.breaker_rules import BreakerSnapshot
from forewarn.resilience.retry import RetryPolicy
from test_breaker import FakeClock

T = TypeVar("T")


class CountingBackend(MemoryBackend):
    """A shared state that counts its round trips and can be made unreachable."""

    description = "the test's shared state"

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.changes = 0
        self.down = False

    def read(self, name: str) -> BreakerSnapshot:
        self._check()
        self.reads += 1
        return super().read(name)

    def change(self, name: str, change: Callable[[BreakerSnapshot], tuple[BreakerSnapshot, T]]) -> tuple[Any, T]:
        self._check()
        self.changes += 1
        return super().change(name, change)

    @property
    def trips(self) -> int:
        return self.reads + self.changes

    def _check(self) -> None:
        if self.down:
            raise StoreUnreachableError("the test's database does not answer", url="test://")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def backend() -> CountingBackend:
    return CountingBackend()


def shared(backend: CountingBackend, clock: FakeClock, **kwargs: Any) -> CircuitBreaker:
    options: dict[str, Any] = {"failure_threshold": 3, "reset_timeout": 10.0, "cache_seconds": 1.0}
    options.update(kwargs)
    return CircuitBreaker("payments", backend=backend, clock=clock, **options)


class TestCachedReads:
    """The common case costs no round trip: the state read is trusted for cache_seconds."""

    def test_closed_calls_within_the_cache_make_one_read(self, backend: CountingBackend, clock: FakeClock) -> None:
        """100 calls and successes within one cache period: one read, nothing written."""
        breaker = shared(backend, clock)
        for _ in range(100):
            breaker.before_call()
            breaker.record_success()
        assert (backend.reads, backend.changes) == (1, 0)

    def test_outcomes_go_in_one_batch_at_the_next_refresh(self, backend: CountingBackend, clock: FakeClock) -> None:
        """Successes wait for the refresh after cache_seconds and are sent in one change."""
        breaker = shared(backend, clock, mode="count", window_size=50, minimum_calls=50)
        for _ in range(20):
            breaker.before_call()
            breaker.record_success()
        assert backend.changes == 0
        clock.advance(1.0)
        breaker.before_call()
        assert backend.changes == 1
        assert backend.read("payments").outcomes == "S" * 20

    def test_opening_is_written_through(self, backend: CountingBackend, clock: FakeClock) -> None:
        """The failure that trips it is sent at once, with the two before it."""
        breaker = shared(backend, clock)
        breaker.before_call()
        for _ in range(2):
            breaker.record_failure()
        assert backend.changes == 0
        breaker.record_failure()
        assert backend.changes == 1
        assert backend.read("payments").state == "open"


class TestTwoProcesses:
    """Two breakers with one name over one state behave as one breaker, within cache_seconds."""

    def test_opened_by_one_refused_by_the_other_after_its_cache(
        self, backend: CountingBackend, clock: FakeClock
    ) -> None:
        """B read 'closed' just before A opened it: B still calls within its cache, and is refused after."""
        a, b = shared(backend, clock), shared(backend, clock)
        b.before_call()
        for _ in range(3):
            a.record_failure()
        clock.advance(0.5)
        b.before_call()  # within B's cache: it has not seen the opening yet
        clock.advance(0.5)
        with pytest.raises(CircuitOpenError) as info:
            b.before_call()
        assert info.value.retry_after == pytest.approx(9.0)

    def test_one_trial_at_a_time_even_with_a_fresh_cache(self, backend: CountingBackend, clock: FakeClock) -> None:
        """Half-open, both ask at the same instant: the trial place is taken atomically, once."""
        a, b = shared(backend, clock), shared(backend, clock)
        for _ in range(3):
            a.record_failure()
        b.state  # noqa: B018 - B reads 'open' now, so its cache is fresh when the wait ends
        clock.advance(10.0)
        a.before_call()
        with pytest.raises(CircuitOpenError):
            b.before_call()
        a.record_success()
        assert backend.read("payments").state == "closed"
        clock.advance(1.0)
        b.before_call()

    def test_a_failed_trial_reopens_it_for_everyone(self, backend: CountingBackend, clock: FakeClock) -> None:
        """A's trial fails: the state is open again at once, and B is refused."""
        a, b = shared(backend, clock), shared(backend, clock)
        for _ in range(3):
            a.record_failure()
        clock.advance(10.0)
        a.before_call()
        a.record_failure()
        clock.advance(1.0)
        with pytest.raises(CircuitOpenError) as info:
            b.before_call()
        assert info.value.retry_after == pytest.approx(9.0)

    def test_failures_of_two_processes_add_up(self, backend: CountingBackend, clock: FakeClock) -> None:
        """time mode: 3 failures in A and 3 successes and 2 failures in B make 5 of 8 in the window."""
        options = {"mode": "time", "window_seconds": 60.0, "minimum_calls": 8, "failure_rate": 0.6}
        a, b = shared(backend, clock, **options), shared(backend, clock, **options)
        for _ in range(3):
            a.record_failure()
            b.record_success()
        b.record_failure()
        clock.advance(1.0)
        a.flush()
        b.flush()
        assert backend.read("payments").state == "closed"  # 4 of 7: too few calls yet
        b.record_failure()  # 5 of 8 = 62.5 %
        assert backend.read("payments").state == "open"

    def test_reset_is_shared(self, backend: CountingBackend, clock: FakeClock) -> None:
        """reset() in one process closes the breaker for the other too."""
        a, b = shared(backend, clock), shared(backend, clock)
        for _ in range(3):
            a.record_failure()
        b.reset()
        clock.advance(1.0)
        a.before_call()


class TestFallback:
    """An unreachable shared state: in-process state, one log line, sharing again when it answers."""

    def test_falls_back_says_so_once_and_resumes(
        self, backend: CountingBackend, clock: FakeClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Down: the breaker still opens (locally) and logs one line; up again: one line, the shared state rules."""
        breaker = shared(backend, clock)
        breaker.before_call()
        backend.down = True
        clock.advance(1.0)
        with caplog.at_level(logging.WARNING, logger="forewarn.breaker"):
            for _ in range(3):
                breaker.before_call()
                breaker.record_failure()
            with pytest.raises(CircuitOpenError):
                breaker.before_call()
            assert breaker.shared is False
            down_lines = [r.getMessage() for r in caplog.records]
            assert len(down_lines) == 1
            assert "cannot reach its shared state in the test's shared state" in down_lines[0]
            assert "the test's database does not answer" in down_lines[0]
            backend.down = False
            clock.advance(1.0)
            assert breaker.state == "closed"  # the shared state never saw the local failures
            assert breaker.shared is True
        messages = [r.getMessage() for r in caplog.records]
        assert len(messages) == 2 and "answers again" in messages[1]

    def test_retries_the_shared_state_once_per_interval(self, backend: CountingBackend, clock: FakeClock) -> None:
        """While down, calls do not each try the database: at most one try per second of clock."""
        breaker = shared(backend, clock, cache_seconds=0.0)
        backend.down = True
        for _ in range(50):
            breaker.before_call()
            breaker.record_success()
        backend.down = False
        assert backend.trips == 0
        clock.advance(1.0)
        breaker.before_call()
        assert breaker.shared is True


class TestScopes:
    """Where the state lives: in-process when asked, shared when given a state."""

    def test_process_scope_ignores_a_shared_state(self, backend: CountingBackend, clock: FakeClock) -> None:
        """scope='process' never calls the factory it is offered."""
        breaker = CircuitBreaker("payments", scope="process", failure_threshold=1, clock=clock)
        offered: list[int] = []
        breaker.share_state(lambda: offered.append(1) or backend)
        breaker.record_failure()
        assert (offered, backend.trips, breaker.shared, breaker.state) == ([], 0, False, "open")

    def test_the_factory_is_asked_once(self, backend: CountingBackend, clock: FakeClock) -> None:
        """share_state's factory is called on first use, once, however many calls follow."""
        breaker = CircuitBreaker("payments", clock=clock, cache_seconds=0.0)
        opened: list[int] = []

        def factory() -> CountingBackend:
            opened.append(1)
            return backend

        breaker.share_state(factory)
        breaker.share_state(factory)
        for _ in range(5):
            breaker.before_call()
        assert opened == [1] and backend.reads == 5

    def test_a_factory_returning_none_keeps_it_in_memory(self, clock: FakeClock) -> None:
        """No store (telemetry disabled): an in-process breaker."""
        breaker = CircuitBreaker("payments", clock=clock, failure_threshold=1)
        breaker.share_state(lambda: None)
        breaker.record_failure()
        assert (breaker.shared, breaker.state) == (False, "open")

    @pytest.mark.parametrize(
        ("kwargs", "setting"),
        [({"scope": "cluster"}, "CircuitBreaker.scope"), ({"cache_seconds": -1}, "CircuitBreaker.cache_seconds")],
    )
    def test_rejected(self, kwargs: dict[str, Any], setting: str) -> None:
        """A scope or cache that is not one is named."""
        from forewarn.errors import ConfigurationError

        with pytest.raises(ConfigurationError) as info:
            CircuitBreaker(**kwargs)
        assert info.value.setting == setting


class TestSlowCallsThroughTheRunner:
    """The attempt loop reports each attempt's duration, measured on its injected clock."""

    def test_slow_successes_open_a_slow_call_breaker(self, clock: FakeClock) -> None:
        """Three successes of 3 s each, slow_call_seconds=2: the breaker opens; the next call is refused."""
        breaker = CircuitBreaker(
            "reports",
            scope="process",
            mode="count",
            window_size=3,
            minimum_calls=3,
            slow_call_seconds=2.0,
            slow_call_rate=1.0,
            clock=clock,
        )
        times = iter(datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=s) for s in range(0, 100, 3))
        runner = AttemptRunner(
            "report", RetryPolicy(attempts=1), breaker=breaker, sleep=lambda _: None, clock=lambda: next(times)
        )
        for _ in range(3):
            assert runner.run(lambda: "ok", (), {}, task_run_id="t", flow_run_id=None) == "ok"
        assert breaker.state == "open"
        with pytest.raises(CircuitOpenError):
            runner.run(lambda: "ok", (), {}, task_run_id="t", flow_run_id=None)


def fail_a_task_once() -> CircuitBreaker:
    """A forewarn.task with a one-failure breaker, failed once through .fn(); its breaker."""
    import forewarn

    breaker = CircuitBreaker("ledger", failure_threshold=1)

    @forewarn.task(retries=0, circuit_breaker=breaker)
    def post() -> None:
        raise ConnectionError("ledger down")

    with pytest.raises(ConnectionError):
        post.fn()
    return breaker


class TestTaskWiring:
    """forewarn.task(circuit_breaker=...) shares the breaker through FOREWARN_DB_URL's store."""

    def test_a_task_breaker_lives_in_the_store(self) -> None:
        """A failure of the task's .fn() opens the breaker in the store's circuit_breakers row."""
        from forewarn.orchestration.recorder import default_recorder

        breaker = fail_a_task_once()
        recorder = default_recorder()
        assert recorder is not None
        assert breaker.shared is True
        assert recorder.store.breaker_state("ledger").state == "open"

    def test_without_telemetry_it_stays_in_process(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """FOREWARN_TELEMETRY_ENABLED=false: no store, the breaker works in memory."""
        from forewarn.settings import get_settings

        monkeypatch.setenv("FOREWARN_TELEMETRY_ENABLED", "false")
        get_settings.cache_clear()
        breaker = fail_a_task_once()
        assert (breaker.shared, breaker.state) == (False, "open")


class TestRepr:
    """repr names the window the breaker opens on."""

    @pytest.mark.parametrize(
        ("kwargs", "window"),
        [
            ({}, "failure_threshold=5"),
            ({"mode": "count", "window_size": 20}, "mode='count', window_size=20, failure_rate=0.5"),
            ({"mode": "time", "window_seconds": 30}, "mode='time', window_seconds=30, failure_rate=0.5"),
        ],
    )
    def test_repr(self, kwargs: dict[str, Any], window: str) -> None:
        """Name, state, failures in the window, the mode's parameters, reset_timeout."""
        breaker = CircuitBreaker("svc", scope="process", **kwargs)
        assert repr(breaker) == f"CircuitBreaker('svc', state='closed', failures=0, {window}, reset_timeout=30)"


class TestCacheSetting:
    """FOREWARN_BREAKER_CACHE_SECONDS sets how long a shared breaker trusts its last read."""

    def test_the_setting_is_the_default_cache(
        self, backend: CountingBackend, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """5 s from the environment: calls over 4.9 s make one read; at 5 s, a second."""
        from forewarn.settings import get_settings

        monkeypatch.setenv("FOREWARN_BREAKER_CACHE_SECONDS", "5")
        get_settings.cache_clear()
        breaker = CircuitBreaker("payments", backend=backend, clock=clock)
        for _ in range(50):
            breaker.before_call()
            clock.advance(0.1)
        assert backend.reads == 1
        clock.advance(0.1)
        breaker.before_call()
        assert backend.reads == 2

    @pytest.mark.parametrize(("value", "words"), [("-1", "greater than or equal to 0"), ("inf", "finite number")])
    def test_a_bad_value_names_the_variable(self, monkeypatch: pytest.MonkeyPatch, value: str, words: str) -> None:
        """Negative or infinite: refused at start, naming the variable."""
        from forewarn.errors import ConfigurationError
        from forewarn.settings import load_settings

        monkeypatch.setenv("FOREWARN_BREAKER_CACHE_SECONDS", value)
        with pytest.raises(ConfigurationError) as info:
            load_settings()
        assert info.value.setting == "FOREWARN_BREAKER_CACHE_SECONDS"
        assert words in str(info.value)
