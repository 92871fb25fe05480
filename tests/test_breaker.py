"""CircuitBreaker: closed -> open -> half_open -> closed/open, driven by a fake clock."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from forewarn.errors import CircuitOpenError, ConfigurationError, ForewarnError
from forewarn.resilience.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make(clock: FakeClock, threshold: int = 3, reset_timeout: float = 10.0) -> CircuitBreaker:
    return CircuitBreaker("svc", failure_threshold=threshold, reset_timeout=reset_timeout, clock=clock)


def trip(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.failure_threshold):
        breaker.before_call()
        breaker.record_failure()


class TestClosed:
    """A closed breaker lets calls through and counts consecutive failures."""

    def test_starts_closed(self, clock: FakeClock) -> None:
        """A new breaker is closed and allows calls."""
        breaker = make(clock)
        assert breaker.state == CLOSED == "closed"
        breaker.before_call()
        assert breaker.failure_count == 0

    def test_opens_at_threshold(self, clock: FakeClock) -> None:
        """failure_threshold consecutive failures open it; one fewer does not."""
        breaker = make(clock, threshold=3)
        for _ in range(2):
            breaker.before_call()
            breaker.record_failure()
        assert breaker.state == "closed"
        breaker.before_call()
        breaker.record_failure()
        assert breaker.state == OPEN == "open"

    def test_success_resets_the_count(self, clock: FakeClock) -> None:
        """Failures must be consecutive: a success in between starts the count again."""
        breaker = make(clock, threshold=3)
        breaker.record_failure()
        breaker.record_failure()
        breaker.record_success()
        breaker.record_failure()
        breaker.record_failure()
        assert breaker.state == "closed"
        assert breaker.failure_count == 2

    def test_threshold_one(self, clock: FakeClock) -> None:
        """failure_threshold=1 opens on the first failure."""
        breaker = make(clock, threshold=1)
        breaker.record_failure()
        assert breaker.state == "open"


class TestOpen:
    """An open breaker refuses calls with CircuitOpenError until reset_timeout passes."""

    def test_refuses_with_retry_after(self, clock: FakeClock) -> None:
        """The error names the breaker and says when the trial comes."""
        breaker = make(clock, reset_timeout=10.0)
        trip(breaker)
        clock.advance(4.0)
        with pytest.raises(CircuitOpenError) as info:
            breaker.before_call()
        assert info.value.name == "svc"
        assert info.value.retry_after == pytest.approx(6.0)
        assert isinstance(info.value, ForewarnError)
        assert "next trial in 6.0s" in str(info.value)

    def test_stays_open_until_timeout(self, clock: FakeClock) -> None:
        """Just before reset_timeout it is still open."""
        breaker = make(clock, reset_timeout=10.0)
        trip(breaker)
        clock.advance(9.999)
        assert breaker.state == "open"
        with pytest.raises(CircuitOpenError):
            breaker.before_call()

    def test_late_failures_do_not_extend(self, clock: FakeClock) -> None:
        """A failure reported while open (a call started earlier) does not restart the timer."""
        breaker = make(clock, reset_timeout=10.0)
        trip(breaker)
        clock.advance(5.0)
        breaker.record_failure()
        clock.advance(5.0)
        assert breaker.state == "half_open"

    def test_success_while_open_closes(self, clock: FakeClock) -> None:
        """A success from a call already in flight shows the service works: it closes."""
        breaker = make(clock)
        trip(breaker)
        breaker.record_success()
        assert breaker.state == "closed"
        breaker.before_call()


class TestHalfOpen:
    """After reset_timeout exactly one trial call goes through; its outcome decides."""

    def test_half_opens_after_timeout(self, clock: FakeClock) -> None:
        """At reset_timeout the state reads half_open."""
        breaker = make(clock, reset_timeout=10.0)
        trip(breaker)
        clock.advance(10.0)
        assert breaker.state == HALF_OPEN == "half_open"

    def test_only_one_trial(self, clock: FakeClock) -> None:
        """The first call is the trial; a second one is refused while it is in flight."""
        breaker = make(clock, reset_timeout=10.0)
        trip(breaker)
        clock.advance(10.0)
        breaker.before_call()
        clock.advance(2.0)
        with pytest.raises(CircuitOpenError) as info:
            breaker.before_call()
        assert info.value.retry_after == pytest.approx(8.0)
        assert breaker.state == "half_open"

    def test_trial_success_closes(self, clock: FakeClock) -> None:
        """A successful trial closes the breaker and clears the failure count."""
        breaker = make(clock, reset_timeout=10.0)
        trip(breaker)
        clock.advance(10.0)
        breaker.before_call()
        breaker.record_success()
        assert breaker.state == "closed"
        assert breaker.failure_count == 0
        breaker.before_call()
        breaker.before_call()

    def test_trial_failure_reopens_and_restarts_timer(self, clock: FakeClock) -> None:
        """A failed trial reopens it for another full reset_timeout."""
        breaker = make(clock, reset_timeout=10.0)
        trip(breaker)
        clock.advance(12.0)
        breaker.before_call()
        clock.advance(1.0)
        breaker.record_failure()
        assert breaker.state == "open"
        with pytest.raises(CircuitOpenError) as info:
            breaker.before_call()
        assert info.value.retry_after == pytest.approx(10.0)
        clock.advance(10.0)
        assert breaker.state == "half_open"
        breaker.before_call()

    def test_lost_trial_is_replaced(self, clock: FakeClock) -> None:
        """A trial that never reports back for reset_timeout no longer blocks a new trial."""
        breaker = make(clock, reset_timeout=10.0)
        trip(breaker)
        clock.advance(10.0)
        breaker.before_call()
        clock.advance(9.0)
        with pytest.raises(CircuitOpenError):
            breaker.before_call()
        clock.advance(1.0)
        breaker.before_call()
        with pytest.raises(CircuitOpenError):
            breaker.before_call()

    def test_full_cycle_sequence(self, clock: FakeClock) -> None:
        """The state names follow closed, open, half_open, open, half_open, closed."""
        breaker = make(clock, threshold=2, reset_timeout=5.0)
        states = [breaker.state]
        trip(breaker)
        states.append(breaker.state)
        clock.advance(5.0)
        states.append(breaker.state)
        breaker.before_call()
        breaker.record_failure()
        states.append(breaker.state)
        clock.advance(5.0)
        states.append(breaker.state)
        breaker.before_call()
        breaker.record_success()
        states.append(breaker.state)
        assert states == ["closed", "open", "half_open", "open", "half_open", "closed"]


class TestOnOpen:
    def test_listeners_hear_each_opening_only(self, clock: FakeClock) -> None:
        """on_open fires when closed -> open and half_open -> open, never for failures while already open."""
        opened: list[tuple[CircuitBreaker, str]] = []
        breaker = make(clock, threshold=2)
        breaker.on_open.append(lambda b: opened.append((b, b.state)))
        breaker.record_failure()
        assert opened == []
        breaker.record_failure()
        assert opened == [(breaker, OPEN)]
        breaker.record_failure()  # a late failure while open: no second opening
        assert len(opened) == 1
        clock.advance(10.0)
        breaker.before_call()  # the half-open trial
        breaker.record_failure()
        assert [state for _, state in opened] == [OPEN, OPEN]

    def test_a_failing_listener_changes_nothing(self, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
        """A listener that raises is logged; the breaker still opens and the next listener still runs."""
        heard: list[str] = []

        def broken(breaker: CircuitBreaker) -> None:
            raise RuntimeError("listener bug")

        breaker = CircuitBreaker(
            "svc", failure_threshold=1, clock=clock, on_open=[broken, lambda b: heard.append(b.name)]
        )
        breaker.record_failure()
        assert breaker.state == OPEN
        assert heard == ["svc"]
        assert "on_open listener" in caplog.text


class TestReset:
    """reset() forgets everything."""

    def test_reset_from_open(self, clock: FakeClock) -> None:
        """An open breaker becomes closed with no failures."""
        breaker = make(clock)
        trip(breaker)
        breaker.reset()
        assert (breaker.state, breaker.failure_count) == ("closed", 0)
        breaker.before_call()

    def test_reset_clears_trial(self, clock: FakeClock) -> None:
        """After a reset a later trip gets a fresh trial."""
        breaker = make(clock, threshold=1, reset_timeout=1.0)
        breaker.record_failure()
        clock.advance(1.0)
        breaker.before_call()
        breaker.reset()
        breaker.record_failure()
        clock.advance(1.0)
        breaker.before_call()

    def test_repr(self, clock: FakeClock) -> None:
        """repr shows the name, state and counts."""
        breaker = make(clock)
        breaker.record_failure()
        assert repr(breaker) == (
            "CircuitBreaker('svc', state='closed', failures=1, failure_threshold=3, reset_timeout=10)"
        )


class TestValidation:
    """Bad constructor arguments raise ConfigurationError naming the argument."""

    @pytest.mark.parametrize(
        ("kwargs", "setting"),
        [
            ({"name": ""}, "CircuitBreaker.name"),
            ({"name": 3}, "CircuitBreaker.name"),
            ({"failure_threshold": 0}, "CircuitBreaker.failure_threshold"),
            ({"failure_threshold": 2.5}, "CircuitBreaker.failure_threshold"),
            ({"failure_threshold": True}, "CircuitBreaker.failure_threshold"),
            ({"reset_timeout": 0}, "CircuitBreaker.reset_timeout"),
            ({"reset_timeout": -1.0}, "CircuitBreaker.reset_timeout"),
            ({"reset_timeout": float("inf")}, "CircuitBreaker.reset_timeout"),
            ({"reset_timeout": float("nan")}, "CircuitBreaker.reset_timeout"),
            ({"reset_timeout": "30"}, "CircuitBreaker.reset_timeout"),
            ({"clock": 5}, "CircuitBreaker.clock"),
        ],
    )
    def test_rejected(self, kwargs: dict[str, Any], setting: str) -> None:
        """Each invalid argument is named in the error, which is also a ValueError."""
        with pytest.raises(ConfigurationError) as info:
            CircuitBreaker(**kwargs)
        assert info.value.setting == setting
        assert isinstance(info.value, ValueError)
        assert "e.g." in info.value.expected

    def test_defaults(self) -> None:
        """Defaults: name 'default', 5 failures, 30 s."""
        breaker = CircuitBreaker()
        assert (breaker.name, breaker.failure_threshold, breaker.reset_timeout) == ("default", 5, 30.0)


class TestThreadSafety:
    """Concurrent callers see one consistent breaker."""

    def test_only_one_trial_across_threads(self, clock: FakeClock) -> None:
        """Of many threads asking at once in half-open, exactly one gets the trial."""
        breaker = make(clock, threshold=1, reset_timeout=1.0)
        breaker.record_failure()
        clock.advance(1.0)
        start = threading.Barrier(16)
        allowed: list[int] = []
        refused: list[int] = []

        def ask(i: int) -> None:
            start.wait()
            try:
                breaker.before_call()
                allowed.append(i)
            except CircuitOpenError:
                refused.append(i)

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert (len(allowed), len(refused)) == (1, 15)

    def test_concurrent_failures_are_all_counted(self, clock: FakeClock) -> None:
        """No failure is lost when many threads record at once."""
        breaker = make(clock, threshold=10_000)

        def fail() -> None:
            for _ in range(500):
                breaker.record_failure()

        threads = [threading.Thread(target=fail) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert breaker.failure_count == 4000
