"""The attempt loop behind ``forewarn.task``: circuit breaker, retries, timeout, telemetry, fallback.

This module knows nothing of Prefect. :class:`AttemptRunner` is handed the ids of the task run it serves
and a sink for :class:`~forewarn.records.AttemptRecord` values, so tests drive it with a fake clock, a list's
``append`` as ``sleep`` and a list as the sink, and assert the exact rows.

The order of the layers is documented once, in ``docs/architecture.md`` ("Wrapper order"): breaker
check → gate (a concurrency slot or rate limit, when given) → attempt under its own timeout → record →
retry or stop → fallback after the last failure.

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
Gate = Callable[[], contextlib.AbstractContextManager[Any]]
"""Entered around each attempt: blocks until the attempt may run (a bulkhead slot, a rate limit), or raises."""
AsyncGate = Callable[[], contextlib.AbstractAsyncContextManager[Any]]
"""The async twin of :data:`Gate`, for async tasks."""


class _Waited:
    """How long one attempt waited at its gate, and whether the gate refused it."""

    __slots__ = ("refused", "seconds")

    def __init__(self) -> None:
        self.seconds: float | None = None
        self.refused = False


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
        gate / agate: entered around each attempt, after the breaker allowed it (a concurrency slot held
            for the attempt, a rate-limit token): the time spent entering is recorded as the attempt's
            ``wait_seconds``; an error raised entering it (refused, timed out) fails the attempt without
            counting against the breaker, since the service was not called.
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
        gate: Gate | None = None,
        agate: AsyncGate | None = None,
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
        self.gate = gate
        self.agate = agate

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
        waited: _Waited | None = None,
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
                wait_seconds=waited.seconds if waited is not None else None,
            )
        )

    def _failed(
        self, ids: tuple[str, str | None], attempt: int, start: datetime, exc: Exception, waited: _Waited | None
    ) -> bool:
        """Record a failed attempt; return True when another attempt should follow."""
        # An open circuit is not the service failing again: never retry into it.
        retryable = not isinstance(exc, CircuitOpenError) and self.policy.is_retryable(exc)
        called = not isinstance(exc, CircuitOpenError) and not (waited is not None and waited.refused)
        if self.breaker is not None and called:
            self.breaker.record_failure(self._seconds_since(start))
        outcome = AttemptOutcome.TIMEOUT if isinstance(exc, AttemptTimeoutError) else AttemptOutcome.FAILURE
        self._record(ids, attempt, start, outcome, exc, retryable, waited)
        return retryable and attempt < self._attempts()

    def _succeeded(self, ids: tuple[str, str | None], attempt: int, start: datetime, waited: _Waited | None) -> None:
        if self.breaker is not None:
            self.breaker.record_success(self._seconds_since(start))
        self._record(ids, attempt, start, AttemptOutcome.SUCCESS, waited=waited)

    def _gated_call(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], waited: _Waited
    ) -> Any:
        assert self.gate is not None
        with contextlib.ExitStack() as stack:
            began = self.clock()
            try:
                stack.enter_context(self.gate())
            except Exception:
                waited.refused = True
                raise
            finally:
                waited.seconds = (self.clock() - began).total_seconds()
            return call_with_timeout(fn, args, kwargs, seconds=self.timeout_seconds, name=self.task_name)

    async def _agated_call(
        self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any], waited: _Waited
    ) -> Any:
        assert self.agate is not None
        async with contextlib.AsyncExitStack() as stack:
            began = self.clock()
            try:
                await stack.enter_async_context(self.agate())
            except Exception:
                waited.refused = True
                raise
            finally:
                waited.seconds = (self.clock() - began).total_seconds()
            return await acall_with_timeout(fn, args, kwargs, seconds=self.timeout_seconds, name=self.task_name)

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
            waited = None if self.gate is None else _Waited()
            try:
                if self.breaker is not None:
                    self.breaker.before_call()
                if waited is None:
                    result = call_with_timeout(fn, args, kwargs, seconds=self.timeout_seconds, name=self.task_name)
                else:
                    result = self._gated_call(fn, args, kwargs, waited)
            except Exception as exc:
                if self._failed(ids, attempt, start, exc, waited):
                    self.sleep(self.policy.wait(attempt))
                    continue
                error = exc
                break
            self._succeeded(ids, attempt, start, waited)
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
            waited = None if self.agate is None else _Waited()
            try:
                if self.breaker is not None:
                    self.breaker.before_call()
                if waited is None:
                    result = await acall_with_timeout(
                        fn, args, kwargs, seconds=self.timeout_seconds, name=self.task_name
                    )
                else:
                    result = await self._agated_call(fn, args, kwargs, waited)
            except Exception as exc:
                if self._failed(ids, attempt, start, exc, waited):
                    await asleep(self.policy.wait(attempt))
                    continue
                error = exc
                break
            self._succeeded(ids, attempt, start, waited)
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


__all__ = [
    "DEFAULT_EXTRA_ATTEMPTS",
    "AsyncGate",
    "AttemptRunner",
    "Gate",
    "Hardening",
    "current_hardening",
    "hardened",
]
