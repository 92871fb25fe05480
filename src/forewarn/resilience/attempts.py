"""The attempt loop behind ``forewarn.task``: circuit breaker, retries, timeout, telemetry, fallback.

This module knows nothing of Prefect. :class:`AttemptRunner` is handed the ids of the task run it serves
and a sink for :class:`~forewarn.records.AttemptRecord` values, so tests drive it with a fake clock, a list's
``append`` as ``sleep`` and a list as the sink, and assert the exact rows.

The order of the layers is documented once, in ``docs/architecture.md`` ("Wrapper order"): breaker
check → attempt under its own timeout → record → retry or stop → fallback after the last failure.

Example::

    >>> from datetime import datetime, timezone
    >>> from forewarn.resilience.retry import RetryPolicy
    >>> rows, waits = [], []
    >>> calls = iter([ConnectionError("reset"), "ok"])
    >>> def flaky():
    ...     item = next(calls)
    ...     if isinstance(item, Exception):
    ...         raise item
    ...     return item
    >>> runner = AttemptRunner("charge", RetryPolicy(attempts=3, wait_jitter=0), sink=rows.append,
    ...                        sleep=waits.append, clock=lambda: datetime(2026, 1, 1, tzinfo=timezone.utc))
    >>> runner.run(flaky, (), {}, task_run_id="t1", flow_run_id="f1")
    'ok'
    >>> [(r.attempt, r.outcome.value) for r in rows], waits
    ([(1, 'failure'), (2, 'success')], [0.5])
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from forewarn.errors import AttemptTimeoutError, CircuitOpenError, FallbackError
from forewarn.records import AttemptOutcome, AttemptRecord
from forewarn.redaction import Redactor
from forewarn.resilience.breaker import CircuitBreaker
from forewarn.resilience.retry import RetryPolicy
from forewarn.resilience.timeout import acall_with_timeout, call_with_timeout
from forewarn.timeutil import utc_now

Sink = Callable[[AttemptRecord], object]
Fallback = Callable[..., Any]


DEFAULT_EXTRA_ATTEMPTS = 2
"""Attempts a hardened run adds to every task's retry policy unless told otherwise (the ``"harden"`` policy)."""


@dataclass(frozen=True, slots=True)
class Hardening:
    """What a run scored at risk changes for its tasks (see :func:`hardened`).

    ``extra_attempts`` are added to every task's retry policy.
    """

    extra_attempts: int = DEFAULT_EXTRA_ATTEMPTS


_hardening: contextvars.ContextVar[Hardening | None] = contextvars.ContextVar("forewarn_hardening", default=None)


@contextlib.contextmanager
def hardened(hardening: Hardening | None = None) -> Iterator[Hardening]:
    """Give every ``forewarn.task`` called inside the block more attempts.

    ``forewarn.flow`` enters this for a run scored at risk when its warning policy is ``"harden"``.

    Example::

        >>> with hardened(Hardening(extra_attempts=3)) as h:
        ...     current_hardening().extra_attempts
        3
    """
    value = hardening or Hardening()
    token = _hardening.set(value)
    try:
        yield value
    finally:
        _hardening.reset(token)


def current_hardening() -> Hardening | None:
    """The hardening in force for the current context, if any."""
    return _hardening.get()


class AttemptRunner:
    """Runs one task call through the fault-tolerance layers and records each attempt.

    Args:
        task_name: recorded with every attempt.
        policy: the :class:`~forewarn.resilience.retry.RetryPolicy` (attempts, waits, which errors to retry).
        fallback: called as ``fallback(exc, *args, **kwargs)`` after the last failed attempt, or at once
            for an error that is not retryable; its result becomes the task's result.
        timeout_seconds: limit for each attempt (see :mod:`forewarn.resilience.timeout` for what a sync limit can do).
        breaker: an optional :class:`~forewarn.resilience.breaker.CircuitBreaker` shared by the task's calls.
        sink: receives each :class:`~forewarn.records.AttemptRecord`; it must not raise (the recorder
            swallows its own errors).
        sleep / asleep / clock: injectable for tests; real defaults.
        redactor: cleans exception messages before they are recorded.
    """

    def __init__(
        self,
        task_name: str,
        policy: RetryPolicy,
        *,
        fallback: Fallback | None = None,
        timeout_seconds: float | None = None,
        breaker: CircuitBreaker | None = None,
        sink: Sink | None = None,
        sleep: Callable[[float], Any] = time.sleep,
        asleep: Callable[[float], Awaitable[Any]] | None = None,
        clock: Callable[[], datetime] = utc_now,
        redactor: Redactor | None = None,
    ) -> None:
        self.task_name = task_name
        self.policy = policy
        self.fallback = fallback
        self.timeout_seconds = timeout_seconds
        self.breaker = breaker
        self.sink = sink
        self.sleep = sleep
        self.asleep = asleep
        self.clock = clock
        self.redactor = redactor or Redactor()

    # -- one attempt's bookkeeping, shared by the sync and async loops ---------------------------------

    def _attempts(self) -> int:
        hardening = _hardening.get()
        return self.policy.attempts + (hardening.extra_attempts if hardening else 0)

    def _record(
        self,
        ids: tuple[str, str | None],
        attempt: int,
        start: datetime,
        outcome: AttemptOutcome,
        exc: BaseException | None = None,
        retryable: bool | None = None,
    ) -> None:
        if self.sink is None:
            return
        self.sink(
            AttemptRecord(
                flow_run_id=ids[1],
                task_run_id=ids[0],
                task_name=self.task_name,
                attempt=attempt,
                start_time=start,
                end_time=self.clock(),
                outcome=outcome,
                exception_type=type(exc).__name__ if exc is not None else None,
                exception_message=self.redactor.redact(str(exc)) if exc is not None else None,
                retryable=retryable,
                used_fallback=outcome in (AttemptOutcome.FALLBACK, AttemptOutcome.FALLBACK_FAILURE),
            )
        )

    def _failed(self, ids: tuple[str, str | None], attempt: int, start: datetime, exc: Exception) -> bool:
        """Record a failed attempt; return True when another attempt should follow."""
        # An open circuit is not the service failing again: never retry into it.
        retryable = not isinstance(exc, CircuitOpenError) and self.policy.is_retryable(exc)
        if self.breaker is not None and not isinstance(exc, CircuitOpenError):
            self.breaker.record_failure(self._seconds_since(start))
        outcome = AttemptOutcome.TIMEOUT if isinstance(exc, AttemptTimeoutError) else AttemptOutcome.FAILURE
        self._record(ids, attempt, start, outcome, exc, retryable)
        return retryable and attempt < self._attempts()

    def _succeeded(self, ids: tuple[str, str | None], attempt: int, start: datetime) -> None:
        if self.breaker is not None:
            self.breaker.record_success(self._seconds_since(start))
        self._record(ids, attempt, start, AttemptOutcome.SUCCESS)

    def _seconds_since(self, start: datetime) -> float:
        """The attempt's duration so far, for the breaker's slow-call rate."""
        return (self.clock() - start).total_seconds()

    def _fallback_failed(
        self, ids: tuple[str, str | None], attempt: int, start: datetime, error: Exception, fallback_error: Exception
    ) -> FallbackError:
        self._record(ids, attempt, start, AttemptOutcome.FALLBACK_FAILURE, fallback_error)
        return FallbackError(self.task_name, error, fallback_error)

    # -- the loops -------------------------------------------------------------------------------------

    def run(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        task_run_id: str,
        flow_run_id: str | None,
    ) -> Any:
        """Call ``fn(*args, **kwargs)`` with retries, timeout and fallback; return its (or the fallback's) result."""
        ids = (task_run_id, flow_run_id)
        attempt = 0
        while True:
            attempt += 1
            start = self.clock()
            try:
                if self.breaker is not None:
                    self.breaker.before_call()
                result = call_with_timeout(fn, args, kwargs, seconds=self.timeout_seconds, name=self.task_name)
            except Exception as exc:
                if self._failed(ids, attempt, start, exc):
                    self.sleep(self.policy.wait(attempt))
                    continue
                error = exc
                break
            self._succeeded(ids, attempt, start)
            return result

        if self.fallback is None:
            raise error
        attempt += 1
        start = self.clock()
        try:
            result = self.fallback(error, *args, **kwargs)
        except Exception as fallback_error:
            raise self._fallback_failed(ids, attempt, start, error, fallback_error) from fallback_error
        self._record(ids, attempt, start, AttemptOutcome.FALLBACK, error)
        return result

    async def arun(
        self,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        task_run_id: str,
        flow_run_id: str | None,
    ) -> Any:
        """The async twin of :meth:`run`: the timeout really cancels the attempt; the fallback may be async."""
        import asyncio
        import inspect

        asleep = self.asleep or asyncio.sleep
        ids = (task_run_id, flow_run_id)
        attempt = 0
        while True:
            attempt += 1
            start = self.clock()
            try:
                if self.breaker is not None:
                    self.breaker.before_call()
                result = await acall_with_timeout(fn, args, kwargs, seconds=self.timeout_seconds, name=self.task_name)
            except Exception as exc:
                if self._failed(ids, attempt, start, exc):
                    await asleep(self.policy.wait(attempt))
                    continue
                error = exc
                break
            self._succeeded(ids, attempt, start)
            return result

        if self.fallback is None:
            raise error
        attempt += 1
        start = self.clock()
        try:
            result = self.fallback(error, *args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
        except Exception as fallback_error:
            raise self._fallback_failed(ids, attempt, start, error, fallback_error) from fallback_error
        self._record(ids, attempt, start, AttemptOutcome.FALLBACK, error)
        return result


__all__ = ["DEFAULT_EXTRA_ATTEMPTS", "AttemptRunner", "Hardening", "current_hardening", "hardened"]
