"""A circuit breaker: stop calling a service that keeps failing, and try it again later.

States and transitions::

    closed ──(failure_threshold consecutive failures)──▶ open
    open ──(reset_timeout seconds pass)──▶ half_open
    half_open ──(the one trial call succeeds)──▶ closed
    half_open ──(the trial call fails)──▶ open (the timer starts again)

While open, :meth:`CircuitBreaker.before_call` raises :class:`~forewarn.errors.CircuitOpenError` without
touching the service. Half-open lets exactly one trial call through; others are refused until it ends.

The caller reports each outcome with :meth:`~CircuitBreaker.record_success` or
:meth:`~CircuitBreaker.record_failure`. The clock is injected, so tests move time by hand. Listeners in
``on_open`` are called with the breaker each time it opens (closed or half-open -> open), after its lock is
released; one that raises is logged and the others still run, so a listener never changes the outcome.

Example::

    >>> now = [0.0]
    >>> breaker = CircuitBreaker("payments", failure_threshold=2, reset_timeout=10.0, clock=lambda: now[0])
    >>> breaker.record_failure(); breaker.record_failure(); breaker.state
    'open'
    >>> now[0] = 10.0
    >>> breaker.state
    'half_open'
    >>> breaker.before_call(); breaker.record_success(); breaker.state
    'closed'
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from typing import Literal

from forewarn.errors import CircuitOpenError, ConfigurationError

BreakerState = Literal["closed", "open", "half_open"]
"""The three states a :class:`CircuitBreaker` can be in."""

CLOSED: BreakerState = "closed"
OPEN: BreakerState = "open"
HALF_OPEN: BreakerState = "half_open"

OpenListener = Callable[["CircuitBreaker"], object]
"""Called with the breaker as it opens (see ``CircuitBreaker.on_open``)."""

logger = logging.getLogger("forewarn.breaker")


class CircuitBreaker:
    """A thread-safe circuit breaker for one service (or one task), named for its error messages.

    ``failure_threshold`` consecutive failures open it; ``reset_timeout`` seconds later it lets one trial
    call through. ``clock`` returns seconds and only differences matter (``time.monotonic`` by default).
    ``on_open`` listeners (also appendable later to the ``on_open`` list) hear each opening.

    Rules worth knowing:

    - Any :meth:`record_success` closes the breaker and clears the failure count.
    - A failure reported while half-open reopens it, whether or not it came from the trial.
    - A failure reported while already open (a call that started before it opened) changes nothing.
    - If the trial call never reports back within ``reset_timeout`` (it hung, or its caller forgot), the
      trial is considered lost and the next :meth:`before_call` becomes the new trial, so a lost trial
      cannot keep the breaker refusing calls forever.

    Example::

        >>> breaker = CircuitBreaker("db", failure_threshold=1, reset_timeout=5.0, clock=lambda: 0.0)
        >>> breaker.record_failure()
        >>> try:
        ...     breaker.before_call()
        ... except Exception as exc:
        ...     print(type(exc).__name__, exc.retry_after)
        CircuitOpenError 5.0
    """

    def __init__(
        self,
        name: str = "default",
        *,
        failure_threshold: int = 5,
        reset_timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        on_open: Iterable[OpenListener] = (),
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigurationError("CircuitBreaker.name", name, 'a non-empty str, e.g. CircuitBreaker("payments")')
        if isinstance(failure_threshold, bool) or not isinstance(failure_threshold, int) or failure_threshold < 1:
            raise ConfigurationError(
                "CircuitBreaker.failure_threshold",
                failure_threshold,
                "a whole number >= 1 of consecutive failures, e.g. CircuitBreaker(failure_threshold=5)",
            )
        if (
            isinstance(reset_timeout, bool)
            or not isinstance(reset_timeout, (int, float))
            or not (0 < reset_timeout < math.inf)
        ):
            raise ConfigurationError(
                "CircuitBreaker.reset_timeout",
                reset_timeout,
                "finite seconds > 0 before a trial call, e.g. CircuitBreaker(reset_timeout=30.0)",
            )
        if not callable(clock):
            raise ConfigurationError(
                "CircuitBreaker.clock", clock, "a function returning seconds, e.g. clock=time.monotonic"
            )
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout = float(reset_timeout)
        self._clock = clock
        self._lock = threading.Lock()
        self._opened = False  # True from the moment it trips until a success closes it
        self._opened_at = 0.0
        self._failures = 0
        self._trial_started_at: float | None = None  # set while a half-open trial call is in flight
        self.on_open: list[OpenListener] = list(on_open)

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker({self.name!r}, state={self.state!r}, failures={self.failure_count}, "
            f"failure_threshold={self.failure_threshold}, reset_timeout={self.reset_timeout:g})"
        )

    def _state_at(self, now: float) -> BreakerState:
        if not self._opened:
            return CLOSED
        if now - self._opened_at >= self.reset_timeout:
            return HALF_OPEN
        return OPEN

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half_open"``, as of now.

        Example::

            >>> CircuitBreaker().state
            'closed'
        """
        with self._lock:
            return self._state_at(self._clock())

    @property
    def failure_count(self) -> int:
        """Consecutive failures recorded since the last success or reset.

        Example::

            >>> breaker = CircuitBreaker()
            >>> breaker.record_failure(); breaker.failure_count
            1
        """
        with self._lock:
            return self._failures

    def before_call(self) -> None:
        """Ask to make a call: returns if allowed, raises :class:`~forewarn.errors.CircuitOpenError` if not.

        Refused while open (``retry_after`` = seconds until half-open) and while half-open with the trial
        call still in flight (``retry_after`` = seconds until that trial counts as lost). When half-open
        and no trial is in flight, this call becomes the trial.

        Example::

            >>> CircuitBreaker().before_call() is None
            True
        """
        with self._lock:
            now = self._clock()
            state = self._state_at(now)
            if state == CLOSED:
                return
            if state == OPEN:
                raise CircuitOpenError(self.name, max(0.0, self._opened_at + self.reset_timeout - now))
            trial = self._trial_started_at
            if trial is not None and now - trial < self.reset_timeout:
                raise CircuitOpenError(self.name, max(0.0, trial + self.reset_timeout - now))
            self._trial_started_at = now

    def record_success(self) -> None:
        """Report that a call succeeded: the breaker closes and the failure count starts again from 0.

        Example::

            >>> breaker = CircuitBreaker(failure_threshold=1)
            >>> breaker.record_failure(); breaker.record_success(); breaker.state
            'closed'
        """
        with self._lock:
            self._opened = False
            self._failures = 0
            self._trial_started_at = None

    def record_failure(self) -> None:
        """Report that a call failed: counts toward ``failure_threshold``; reopens a half-open breaker.

        Example::

            >>> opened = []
            >>> breaker = CircuitBreaker(failure_threshold=2, on_open=[opened.append])
            >>> breaker.record_failure(); breaker.state
            'closed'
            >>> breaker.record_failure(); breaker.state, opened == [breaker]
            ('open', True)
        """
        with self._lock:
            now = self._clock()
            state = self._state_at(now)
            self._failures += 1
            opens = state == HALF_OPEN or (state == CLOSED and self._failures >= self.failure_threshold)
            if opens:
                self._opened = True
                self._opened_at = now
                self._trial_started_at = None
        if opens:
            self._notify_open()

    def _notify_open(self) -> None:
        # Outside the lock: a listener may read the breaker, and a slow one must not block other callers.
        for listener in list(self.on_open):
            try:
                listener(self)
            except Exception:  # a listener must never change what the breaker decided
                logger.exception("circuit breaker %r: on_open listener %r failed", self.name, listener)

    def reset(self) -> None:
        """Forget all history: closed, no failures, no trial in flight.

        Example::

            >>> breaker = CircuitBreaker(failure_threshold=1)
            >>> breaker.record_failure(); breaker.reset(); breaker.state
            'closed'
        """
        with self._lock:
            self._opened = False
            self._opened_at = 0.0
            self._failures = 0
            self._trial_started_at = None


__all__ = ["CLOSED", "HALF_OPEN", "OPEN", "BreakerState", "CircuitBreaker", "OpenListener"]
