"""The breaker's pure transition rules: each mode by example, and their invariants by property."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forewarn.errors import ConfigurationError
from forewarn.resilience.breaker_rules import (
    CLOSED,
    FAILURE,
    HALF_OPEN,
    OPEN,
    OUTCOMES,
    SLOW_FAILURE,
    STATES,
    SUCCESS,
    TIME_BUCKETS,
    BreakerConfig,
    BreakerSnapshot,
    Report,
    admit,
    outcome_of,
    record,
    record_all,
    state_at,
    window_counts,
)


def feed(config: BreakerConfig, outcomes: str, *, start: float = 0.0, step: float = 1.0) -> BreakerSnapshot:
    """Report each outcome character one ``step`` apart from ``start``."""
    return record_all(config, BreakerSnapshot(), [Report(start + i * step, o) for i, o in enumerate(outcomes)])


class TestCountWindow:
    """mode="count": the share of failed or slow calls among the last window_size calls."""

    config = BreakerConfig(mode="count", window_size=10, minimum_calls=4, failure_rate=0.5)

    def test_opens_at_the_failure_rate(self) -> None:
        """2 failures of 4 calls is 50 %: open; 1 of 4 is not."""
        assert feed(self.config, "SFSF").state == OPEN
        assert feed(self.config, "SSSF").state == CLOSED

    def test_needs_minimum_calls(self) -> None:
        """3 failures of 3 calls: below minimum_calls, still closed."""
        assert feed(self.config, "FFF").state == CLOSED

    def test_old_calls_leave_the_window(self) -> None:
        """Only the last window_size calls count: old failures drop out."""
        snap = feed(BreakerConfig(mode="count", window_size=4, minimum_calls=4, failure_rate=0.75), "FFSSSS")
        assert (snap.state, snap.outcomes) == (CLOSED, "SSSS")

    def test_slow_calls_open_it(self) -> None:
        """All calls succeed but 3 of 4 are slow, with slow_call_rate=0.75: open."""
        config = BreakerConfig(
            mode="count", window_size=10, minimum_calls=4, slow_call_seconds=2.0, slow_call_rate=0.75
        )
        outcomes = [outcome_of(config, failed=False, duration=d) for d in (2.5, 3.0, 0.1, 2.0)]
        assert "".join(outcomes) == "ssSs"
        assert feed(config, "".join(outcomes)).state == OPEN

    def test_half_open_needs_every_trial_to_succeed(self) -> None:
        """half_open_calls=2: two trials go, a third is refused; both successes close it."""
        config = BreakerConfig(mode="count", window_size=4, minimum_calls=2, half_open_calls=2, reset_timeout=10)
        snap = feed(config, "FF")
        snap, refused = admit(config, snap, 11.0)
        assert refused is None
        snap, refused = admit(config, snap, 11.0)
        assert refused is None
        assert admit(config, snap, 11.5)[1] == pytest.approx(9.5)
        snap = record(config, snap, 12.0, SUCCESS, trial=True)
        assert state_at(config, snap, 12.0) == HALF_OPEN
        snap = record(config, snap, 12.0, SUCCESS, trial=True)
        assert state_at(config, snap, 12.0) == CLOSED

    def test_a_success_that_was_not_a_trial_does_not_close_it(self) -> None:
        """In the rate modes only trial successes count half-open; a late success while open is ignored."""
        config = BreakerConfig(mode="count", window_size=4, minimum_calls=2, reset_timeout=10)
        snap = feed(config, "FF")
        assert record(config, snap, 5.0, SUCCESS) == snap
        assert record(config, snap, 12.0, SUCCESS).state == OPEN


class TestTimeWindow:
    """mode="time": the share over the calls of the last window_seconds, in 10 buckets."""

    config = BreakerConfig(mode="time", window_seconds=10.0, minimum_calls=4, failure_rate=0.5)

    def test_opens_on_calls_within_the_window(self) -> None:
        """4 calls, 2 failed, within 10 s: open."""
        assert feed(self.config, "FSFS", start=100.0, step=2.0).state == OPEN

    def test_calls_older_than_the_window_do_not_count(self) -> None:
        """Two failures at t=100, two more at t=111: the first pair left the window, so 2 calls, not 4."""
        reports = [Report(100.0, FAILURE), Report(100.5, FAILURE), Report(111.0, FAILURE), Report(111.5, SUCCESS)]
        snap = record_all(self.config, BreakerSnapshot(), reports)
        assert snap.state == CLOSED
        assert window_counts(self.config, snap, 111.5) == (2, 1, 0)

    def test_counts_fall_in_buckets(self) -> None:
        """Calls within one bucket (1 s wide) share it."""
        snap = feed(BreakerConfig(mode="time", window_seconds=10.0, minimum_calls=100), "SFS", start=50.0, step=0.25)
        assert [tuple(b) for b in snap.buckets] == [(50, 3, 1, 0)]

    def test_a_report_from_a_slower_clock_joins_its_own_bucket(self) -> None:
        """Reports out of order (another process's clock) are kept in bucket order."""
        config = BreakerConfig(mode="time", window_seconds=10.0, minimum_calls=100)
        snap = record_all(config, BreakerSnapshot(), [Report(55.0, SUCCESS), Report(53.0, FAILURE)])
        assert [tuple(b) for b in snap.buckets] == [(53, 1, 1, 0), (55, 1, 0, 0)]


class TestConsecutive:
    """mode="consecutive" (the default): failure_threshold failures in a row."""

    def test_a_success_starts_the_count_again(self) -> None:
        """FFSFF with threshold 3 stays closed; FFF opens."""
        config = BreakerConfig(failure_threshold=3)
        assert feed(config, "FFSFF").state == CLOSED
        assert feed(config, "FFF").state == OPEN

    def test_stale_reports_change_nothing(self) -> None:
        """A report stamped before the breaker opened (a late batch) is ignored, success or failure."""
        config = BreakerConfig(failure_threshold=1)
        snap = record(config, BreakerSnapshot(), 10.0, FAILURE)
        assert record(config, snap, 9.0, SUCCESS) == snap
        assert record(config, snap, 10.0, SUCCESS).state == CLOSED


class TestConfig:
    """Bad values raise ConfigurationError naming CircuitBreaker.<field>."""

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"mode": "sliding"}, "mode"),
            ({"window_size": 0}, "window_size"),
            ({"window_size": 10_001}, "window_size"),
            ({"window_seconds": 0}, "window_seconds"),
            ({"failure_rate": 0}, "failure_rate"),
            ({"failure_rate": float("nan")}, "failure_rate"),
            ({"minimum_calls": True}, "minimum_calls"),
            ({"slow_call_seconds": -1.0, "mode": "count"}, "slow_call_seconds"),
            ({"slow_call_seconds": 1.0}, "slow_call_seconds"),  # consecutive mode has no rate
            ({"slow_call_rate": 2}, "slow_call_rate"),
            ({"half_open_calls": 0}, "half_open_calls"),
        ],
    )
    def test_rejected(self, kwargs: dict[str, Any], field: str) -> None:
        """Each invalid value is named, with an example of a good one."""
        with pytest.raises(ConfigurationError) as info:
            BreakerConfig(**kwargs)
        assert info.value.setting == f"CircuitBreaker.{field}"
        assert "e.g." in info.value.expected or "seconds" in info.value.expected


# -- properties ------------------------------------------------------------------------------------------

configs = st.builds(
    BreakerConfig,
    mode=st.sampled_from(["consecutive", "count", "time"]),
    failure_threshold=st.integers(1, 6),
    reset_timeout=st.floats(0.5, 20.0),
    window_size=st.integers(1, 12),
    window_seconds=st.floats(1.0, 30.0),
    failure_rate=st.floats(0.05, 1.0),
    minimum_calls=st.integers(1, 8),
    half_open_calls=st.integers(1, 3),
)

steps = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.floats(0.0, 15.0)),
        st.tuples(st.just("admit"), st.just(0.0)),
        st.tuples(st.just("report"), st.sampled_from(sorted(OUTCOMES))),
    ),
    max_size=60,
)


def check_invariants(config: BreakerConfig, snap: BreakerSnapshot, now: float) -> None:
    assert snap.state in STATES
    assert 0 <= snap.trial_successes <= snap.trials <= config.half_open_calls
    if snap.state != HALF_OPEN:
        assert snap.trials == 0
    if config.mode == "count":
        assert len(snap.outcomes) <= config.window_size
    if config.mode == "consecutive":
        assert set(snap.outcomes) <= {FAILURE}
        assert snap.state != CLOSED or len(snap.outcomes) < config.failure_threshold
    slots = [b.slot for b in snap.buckets]
    assert slots == sorted(set(slots))
    assert len(slots) <= TIME_BUCKETS
    assert all(0 <= b.failures <= b.calls and 0 <= b.slow <= b.calls for b in snap.buckets)
    if snap.state == CLOSED and config.mode != "consecutive":
        calls, _, _ = window_counts(config, snap, now)
        assert calls <= (config.window_size if config.mode == "count" else math.inf)


class TestProperties:
    """Whatever happens, in any order, the snapshot stays a valid breaker state."""

    @settings(max_examples=300, deadline=None, derandomize=True)
    @given(configs, steps)
    def test_invariants_hold_after_every_step(self, config: BreakerConfig, ops: list[tuple[str, Any]]) -> None:
        """States, trial counts, window lengths and buckets stay in bounds; closed never refuses; open refuses
        for at most reset_timeout; at most half_open_calls trials are in flight at once."""
        snap, now, in_flight = BreakerSnapshot(), 0.0, 0
        for op, arg in ops:
            if op == "advance":
                now += arg
                continue
            if op == "admit":
                state = state_at(config, snap, now)
                nxt, refused = admit(config, snap, now)
                if state == CLOSED:
                    assert refused is None and nxt == snap
                elif refused is not None:
                    assert 0 <= refused <= config.reset_timeout and nxt == snap
                else:
                    assert state == HALF_OPEN and nxt.state == HALF_OPEN
                    in_flight = nxt.trials - nxt.trial_successes
                    assert in_flight <= config.half_open_calls
                snap = nxt
            else:
                trial = snap.state == HALF_OPEN and snap.trials > snap.trial_successes
                snap = record(config, snap, now, arg, trial=trial)
            check_invariants(config, snap, now)

    @settings(max_examples=200, deadline=None, derandomize=True)
    @given(configs, st.text(alphabet=sorted(OUTCOMES), max_size=30), st.floats(0.0, 100.0))
    def test_stale_reports_never_change_anything(self, config: BreakerConfig, outcomes: str, before: float) -> None:
        """Any report stamped before the last transition leaves the snapshot as it was."""
        snap = BreakerSnapshot(state=OPEN, since=1000.0)
        reports = [Report(1000.0 - before - 0.001, o) for o in outcomes]
        assert record_all(config, snap, reports) == snap

    @settings(max_examples=200, deadline=None, derandomize=True)
    @given(configs.filter(lambda c: c.mode != "consecutive"), st.integers(0, 7))
    def test_fewer_than_minimum_calls_never_open(self, config: BreakerConfig, n: int) -> None:
        """Failures alone, fewer than minimum_calls of them (within the window): still closed."""
        n = min(n, config.minimum_calls - 1, config.window_size - 1)
        assert feed(config, FAILURE * max(n, 0), step=0.0).state == CLOSED

    @settings(max_examples=100, deadline=None, derandomize=True)
    @given(configs.filter(lambda c: c.mode != "consecutive"), st.integers(1, 20))
    def test_all_slow_failures_open_once_there_are_enough(self, config: BreakerConfig, extra: int) -> None:
        """A window full of failures opens as soon as it holds minimum_calls calls."""
        needed = min(config.minimum_calls, config.window_size) if config.mode == "count" else config.minimum_calls
        n = needed + extra
        assert feed(config, SLOW_FAILURE * n, step=0.0).state == OPEN
