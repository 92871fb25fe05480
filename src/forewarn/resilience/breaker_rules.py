"""A circuit breaker's rules as pure functions: a small immutable config, an immutable state, transitions.

Nothing here keeps state or reads a clock: :func:`admit` and :func:`record` take a
:class:`BreakerSnapshot` and the time, and return the next snapshot. :class:`~forewarn.resilience.breaker.
CircuitBreaker` keeps the snapshot in memory or in the telemetry store and calls these, so the same rules
hold in one process and across many, and they can be tested without running anything.

States and transitions::

    closed ──(the window trips)──▶ open ──(reset_timeout passes)──▶ half_open
    half_open ──(half_open_calls trial calls succeed)──▶ closed
    half_open ──(a call fails)──▶ open (the timer starts again)

When the window trips, by mode (compare resilience4j's ``slidingWindowType`` and Polly's ``FailureRatio``):

- ``"consecutive"``: ``failure_threshold`` failures in a row (a success starts the count again).
- ``"count"``: of the last ``window_size`` calls, at least ``minimum_calls`` were made and the share that
  failed is ``>= failure_rate``, or the share slower than ``slow_call_seconds`` is ``>= slow_call_rate``.
- ``"time"``: the same shares over the calls that ended in the last ``window_seconds`` (kept in 10 buckets
  of ``window_seconds / 10``, so a call leaves the window in that step).

A report stamped before the snapshot's last transition (``since``) is stale: a call that ended before the
breaker opened or closed, reported late, e.g. from another process's batch. It changes nothing.

Example::

    >>> config = BreakerConfig(failure_threshold=2, reset_timeout=10.0)
    >>> s = record(config, BreakerSnapshot(), 1.0, FAILURE)
    >>> s = record(config, s, 2.0, FAILURE)
    >>> state_at(config, s, 5.0), state_at(config, s, 12.0)
    ('open', 'half_open')
    >>> s, refused = admit(config, s, 12.0)
    >>> refused is None, s.trials
    (True, 1)
    >>> state_at(config, record(config, s, 13.0, SUCCESS, trial=True), 13.0)
    'closed'
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Literal, NamedTuple

from forewarn.errors import ConfigurationError

BreakerState = Literal["closed", "open", "half_open"]
"""The three states a circuit breaker can be in."""

CLOSED: BreakerState = "closed"
OPEN: BreakerState = "open"
HALF_OPEN: BreakerState = "half_open"
STATES: tuple[BreakerState, ...] = (CLOSED, OPEN, HALF_OPEN)

BreakerMode = Literal["consecutive", "count", "time"]
MODES: tuple[BreakerMode, ...] = ("consecutive", "count", "time")

# One call's outcome as one character, so a count window is a short string (and a text column).
SUCCESS = "S"
FAILURE = "F"
SLOW_SUCCESS = "s"
SLOW_FAILURE = "f"
OUTCOMES = frozenset(SUCCESS + FAILURE + SLOW_SUCCESS + SLOW_FAILURE)

TIME_BUCKETS = 10
"""A time window is kept as this many buckets of ``window_seconds / TIME_BUCKETS``."""

MAX_WINDOW_SIZE = 10_000
"""The longest count window (and consecutive threshold): the window is one text value of this many characters."""


class Bucket(NamedTuple):
    """The calls of a time window that ended in one bucket (``slot`` = ``floor(t / bucket width)``)."""

    slot: int
    calls: int
    failures: int
    slow: int


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """When a breaker opens and how it recovers; validated on creation (errors name ``CircuitBreaker.<field>``).

    Example::

        >>> BreakerConfig(mode="count", window_size=20, minimum_calls=10, failure_rate=0.5).window_size
        20
        >>> BreakerConfig(failure_rate=1.5)
        Traceback (most recent call last):
        ...
        forewarn.errors.ConfigurationError: CircuitBreaker.failure_rate=1.5 is invalid: ...
    """

    mode: BreakerMode = "consecutive"
    failure_threshold: int = 5
    reset_timeout: float = 30.0
    window_size: int = 100
    window_seconds: float = 60.0
    failure_rate: float = 0.5
    minimum_calls: int = 10
    slow_call_seconds: float | None = None
    slow_call_rate: float = 1.0
    half_open_calls: int = 1

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            _refuse("mode", self.mode, 'one of "consecutive", "count", "time", e.g. mode="count"')
        _whole("failure_threshold", self.failure_threshold, MAX_WINDOW_SIZE, "failure_threshold=5")
        _seconds("reset_timeout", self.reset_timeout, "before a trial call, e.g. reset_timeout=30.0")
        _whole("window_size", self.window_size, MAX_WINDOW_SIZE, "window_size=100 (calls)")
        _seconds("window_seconds", self.window_seconds, "of the time window, e.g. window_seconds=60.0")
        _rate("failure_rate", self.failure_rate, "failure_rate=0.5")
        _whole("minimum_calls", self.minimum_calls, MAX_WINDOW_SIZE, "minimum_calls=10")
        if self.slow_call_seconds is not None:
            _seconds("slow_call_seconds", self.slow_call_seconds, "a call takes to count as slow, e.g. 5.0")
            if self.mode == "consecutive":
                _refuse(
                    "slow_call_seconds",
                    self.slow_call_seconds,
                    'a slow-call rate needs mode="count" or mode="time", e.g. '
                    'CircuitBreaker(mode="count", slow_call_seconds=5.0, slow_call_rate=0.5)',
                )
        _rate("slow_call_rate", self.slow_call_rate, "slow_call_rate=0.8")
        _whole("half_open_calls", self.half_open_calls, 1000, "half_open_calls=1")

    @property
    def bucket_seconds(self) -> float:
        """Width of one bucket of a time window."""
        return self.window_seconds / TIME_BUCKETS


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """A breaker's whole state at one moment; what the store keeps in one row.

    ``state`` is the stored state: an ``"open"`` snapshot reads as half-open once ``reset_timeout`` has
    passed (:func:`state_at`). ``since`` is the clock time of the last transition (opened at, closed at).
    ``trials`` counts the trial calls let through in this half-open period, ``trial_successes`` those
    that succeeded, ``trial_at`` when the last was let through. ``outcomes`` is the count or consecutive
    window (one character per call), ``buckets`` the time window.
    """

    state: BreakerState = CLOSED
    since: float = -math.inf
    trials: int = 0
    trial_successes: int = 0
    trial_at: float = -math.inf
    outcomes: str = ""
    buckets: tuple[Bucket, ...] = field(default=())


class Report(NamedTuple):
    """One call's outcome as reported at clock time ``at``; ``trial`` when it was let through half-open."""

    at: float
    outcome: str
    trial: bool = False


def outcome_of(config: BreakerConfig, *, failed: bool, duration: float | None = None) -> str:
    """The outcome character of a call: failed or not, slow or not (``duration >= slow_call_seconds``).

    Example::

        >>> outcome_of(BreakerConfig(mode="time", slow_call_seconds=2.0), failed=False, duration=3.0)
        's'
    """
    slow = config.slow_call_seconds is not None and duration is not None and duration >= config.slow_call_seconds
    if failed:
        return SLOW_FAILURE if slow else FAILURE
    return SLOW_SUCCESS if slow else SUCCESS


def state_at(config: BreakerConfig, snap: BreakerSnapshot, now: float) -> BreakerState:
    """The state as of ``now``: an open breaker reads half-open once ``reset_timeout`` has passed.

    Example::

        >>> state_at(BreakerConfig(), BreakerSnapshot(state=OPEN, since=0.0), 30.0)
        'half_open'
    """
    if snap.state == OPEN and now - snap.since >= config.reset_timeout:
        return HALF_OPEN
    return snap.state


def admit(config: BreakerConfig, snap: BreakerSnapshot, now: float) -> tuple[BreakerSnapshot, float | None]:
    """Ask to make a call at ``now``: ``(next snapshot, None)`` if allowed, ``(snap, retry_after)`` if refused.

    Closed: allowed, nothing changes. Open: refused until ``reset_timeout`` after it opened. Half-open:
    allowed as a trial while fewer than ``half_open_calls`` trials were let through in this period;
    trials that did not report back within ``reset_timeout`` count as lost and free their places, so a
    lost trial cannot keep the breaker refusing forever.

    Example::

        >>> admit(BreakerConfig(), BreakerSnapshot(state=OPEN, since=0.0), 10.0)[1]
        20.0
    """
    state = state_at(config, snap, now)
    if state == CLOSED:
        return snap, None
    if state == OPEN:
        return snap, _wait(config, snap.since, now)
    trials = snap.trials if snap.state == HALF_OPEN else 0
    successes = snap.trial_successes if snap.state == HALF_OPEN else 0
    if trials >= config.half_open_calls and now - snap.trial_at >= config.reset_timeout:
        trials = successes  # the trials still in flight are lost
    if trials >= config.half_open_calls:
        return snap, _wait(config, snap.trial_at, now)
    return replace(snap, state=HALF_OPEN, trials=trials + 1, trial_successes=successes, trial_at=now), None


def record(
    config: BreakerConfig, snap: BreakerSnapshot, at: float, outcome: str, *, trial: bool = False
) -> BreakerSnapshot:
    """The snapshot after a call reported ``outcome`` (see :data:`OUTCOMES`) at clock time ``at``.

    Closed: the outcome joins the window, which may trip the breaker open. Open: a success closes it in
    ``"consecutive"`` mode (a call that was in flight shows the service works); anything else changes
    nothing. Half-open: a failure reopens it; a trial success counts, and ``half_open_calls`` of them
    close it (in ``"consecutive"`` mode any success closes it). A report older than ``since`` changes nothing.

    Example::

        >>> s = record(BreakerConfig(failure_threshold=1), BreakerSnapshot(), 5.0, FAILURE)
        >>> s.state, s.since
        ('open', 5.0)
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown call outcome {outcome!r}; expected one of {sorted(OUTCOMES)}")
    if at < snap.since:
        return snap
    failed = outcome in (FAILURE, SLOW_FAILURE)
    state = state_at(config, snap, at)
    if state == CLOSED:
        window = _add(config, snap, at, outcome)
        return _opened(at) if _trips(config, window, at) else window
    consecutive = config.mode == "consecutive"
    if state == OPEN:
        return _closed(at) if consecutive and not failed else snap
    if failed:
        return _opened(at)
    if consecutive:
        return _closed(at)
    if not trial or snap.state != HALF_OPEN:
        return snap
    successes = snap.trial_successes + 1
    return _closed(at) if successes >= config.half_open_calls else replace(snap, trial_successes=successes)


def record_all(config: BreakerConfig, snap: BreakerSnapshot, reports: Iterable[Report]) -> BreakerSnapshot:
    """:func:`record` each report in turn: how a batch of outcomes from one process joins the shared state.

    Example::

        >>> config = BreakerConfig(failure_threshold=2)
        >>> record_all(config, BreakerSnapshot(), [Report(1.0, FAILURE), Report(2.0, FAILURE)]).state
        'open'
    """
    for report in reports:
        snap = record(config, snap, report.at, report.outcome, trial=report.trial)
    return snap


def window_counts(config: BreakerConfig, snap: BreakerSnapshot, now: float) -> tuple[int, int, int]:
    """``(calls, failures, slow calls)`` in the window as of ``now``.

    Example::

        >>> window_counts(BreakerConfig(mode="count"), BreakerSnapshot(outcomes="SFfs"), 0.0)
        (4, 2, 2)
    """
    if config.mode == "time":
        buckets = _live_buckets(config, snap.buckets, now)
        return sum(b.calls for b in buckets), sum(b.failures for b in buckets), sum(b.slow for b in buckets)
    text = snap.outcomes
    failures = text.count(FAILURE) + text.count(SLOW_FAILURE)
    return len(text), failures, text.count(SLOW_SUCCESS) + text.count(SLOW_FAILURE)


def reset_snapshot(now: float) -> BreakerSnapshot:
    """A closed breaker with an empty window, as of ``now`` (reports from before ``now`` are stale).

    Example::

        >>> reset_snapshot(3.0).state
        'closed'
    """
    return _closed(now)


# -- helpers ---------------------------------------------------------------------------------------------


def _wait(config: BreakerConfig, started: float, now: float) -> float:
    """Seconds until ``reset_timeout`` after ``started``, within [0, reset_timeout] despite float rounding."""
    return min(config.reset_timeout, max(0.0, started + config.reset_timeout - now))


def _opened(at: float) -> BreakerSnapshot:
    return BreakerSnapshot(state=OPEN, since=at)


def _closed(at: float) -> BreakerSnapshot:
    return BreakerSnapshot(state=CLOSED, since=at)


def _add(config: BreakerConfig, snap: BreakerSnapshot, at: float, outcome: str) -> BreakerSnapshot:
    if config.mode == "consecutive":
        if outcome not in (FAILURE, SLOW_FAILURE):
            return replace(snap, outcomes="") if snap.outcomes else snap  # the common case: nothing to copy
        return replace(snap, outcomes=(snap.outcomes + FAILURE)[-config.failure_threshold :])
    if config.mode == "count":
        return replace(snap, outcomes=(snap.outcomes + outcome)[-config.window_size :])
    index = math.floor(at / config.bucket_seconds)
    failures = int(outcome in (FAILURE, SLOW_FAILURE))
    slow = int(outcome in (SLOW_SUCCESS, SLOW_FAILURE))
    buckets = list(_live_buckets(config, snap.buckets, at))
    if buckets and buckets[-1].slot == index:
        last = buckets[-1]
        buckets[-1] = Bucket(index, last.calls + 1, last.failures + failures, last.slow + slow)
    elif buckets and buckets[-1].slot > index:  # a report from a slower clock: into its own bucket, in order
        buckets = sorted([*buckets, Bucket(index, 1, failures, slow)])
        buckets = _merge_same_index(buckets)
    else:
        buckets.append(Bucket(index, 1, failures, slow))
    return replace(snap, buckets=tuple(buckets))


def _merge_same_index(buckets: list[Bucket]) -> list[Bucket]:
    merged: list[Bucket] = []
    for bucket in buckets:
        if merged and merged[-1].slot == bucket.slot:
            last = merged[-1]
            merged[-1] = Bucket(
                last.slot, last.calls + bucket.calls, last.failures + bucket.failures, last.slow + bucket.slow
            )
        else:
            merged.append(bucket)
    return merged


def _live_buckets(config: BreakerConfig, buckets: tuple[Bucket, ...], now: float) -> tuple[Bucket, ...]:
    """The buckets still inside the window that ends at ``now``."""
    oldest = math.floor(now / config.bucket_seconds) - TIME_BUCKETS + 1
    return tuple(b for b in buckets if b.slot >= oldest)


def _trips(config: BreakerConfig, snap: BreakerSnapshot, now: float) -> bool:
    if config.mode == "consecutive":
        return len(snap.outcomes) >= config.failure_threshold
    calls, failures, slow = window_counts(config, snap, now)
    needed = min(config.minimum_calls, config.window_size) if config.mode == "count" else config.minimum_calls
    if calls == 0 or calls < needed:
        return False
    if failures / calls >= config.failure_rate:
        return True
    return config.slow_call_seconds is not None and slow / calls >= config.slow_call_rate


def _refuse(name: str, value: object, expected: str) -> None:
    raise ConfigurationError(f"CircuitBreaker.{name}", value, expected)


def _whole(name: str, value: object, maximum: int, example: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        _refuse(name, value, f"a whole number from 1 to {maximum}, e.g. {example}")


def _seconds(name: str, value: object, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        _refuse(name, value, f"finite seconds > 0 {what}")


def _rate(name: str, value: object, example: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        _refuse(name, value, f"a share of calls above 0 and at most 1, e.g. {example}")


__all__ = [
    "CLOSED",
    "FAILURE",
    "HALF_OPEN",
    "MAX_WINDOW_SIZE",
    "MODES",
    "OPEN",
    "OUTCOMES",
    "SLOW_FAILURE",
    "SLOW_SUCCESS",
    "STATES",
    "SUCCESS",
    "TIME_BUCKETS",
    "BreakerConfig",
    "BreakerMode",
    "BreakerSnapshot",
    "BreakerState",
    "Bucket",
    "Report",
    "admit",
    "outcome_of",
    "record",
    "record_all",
    "reset_snapshot",
    "state_at",
    "window_counts",
]
