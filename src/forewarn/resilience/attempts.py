"""The attempt loop behind ``forewarn.task``: circuit breaker, retries, timeout, telemetry, fallback.

This module knows nothing of Prefect. :class:`AttemptRunner` is handed the ids of the task run it serves
and a sink for :class:`~forewarn.records.AttemptRecord` values, so tests drive it with a fake clock, a list's
``append`` as ``sleep`` and a list as the sink, and assert the exact rows.

The order of the layers is documented once, in ``docs/architecture.md`` ("Wrapper order"): for each
provider in turn (failover) → retries → breaker check → gate (a concurrency slot or rate limit, when
given) → attempt (or a race of redundant copies) under its own timeout → record → retry or stop → next
provider → fallback after the last failure.

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
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from forewarn.errors import AttemptTimeoutError, CircuitOpenError, FallbackError
from forewarn.records import AttemptOutcome, AttemptRecord
from forewarn.redaction import Redactor
from forewarn.resilience.breaker import CircuitBreaker
from forewarn.resilience.failover import Provider
from forewarn.resilience.hedging import CopyExecutor, CopyStatus, HedgingPolicy, arace, race
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


Ids = tuple[str, str | None, str]
"""(task run id, flow run id, execution id) of one task call: what each of its rows is recorded under."""


class _Call:
    """One task call's bookkeeping: its ids (:data:`Ids`) and the next attempt number to record.

    Rows are numbered in the order their attempts *start*, across retries, redundant copies, providers and
    the fallback, so ``(task_run_id, execution_id, attempt)`` stays unique.
    """

    __slots__ = ("decided", "ids", "rows")

    def __init__(self, task_run_id: str, flow_run_id: str | None, execution_id: str) -> None:
        self.ids: Ids = (task_run_id, flow_run_id, execution_id)
        self.rows = 0
        # whether each failure (by the exception's id, alive while it propagates) is retried: asked once,
        # because a retry_condition_fn may be costly or count its calls
        self.decided: dict[int, bool] = {}

    def next_attempt(self) -> int:
        self.rows += 1
        return self.rows


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
        hedging: a :class:`~forewarn.resilience.hedging.HedgingPolicy`: each attempt races that many
            copies (idempotent calls only; the caller checks). Every copy is one recorded row with its
            ``replica`` number.
        providers: :class:`~forewarn.resilience.failover.Provider` values tried in order, each with the
            full retry policy, before the fallback. Rows carry the provider's name.
        executor: how sync copies run (:class:`~forewarn.resilience.hedging.ThreadExecutor` by default).
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
        hedging: HedgingPolicy | None = None,
        providers: Sequence[Provider] = (),
        executor: CopyExecutor | None = None,
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
        self.hedging = hedging if hedging is not None and hedging.redundant else None
        self.providers: tuple[Provider | None, ...] = tuple(providers) or (None,)
        self.executor = executor

    # -- one attempt's bookkeeping, shared by the sync and async loops ---------------------------------

    def _attempts(self) -> int:
        hardening = _hardening.get()
        return self.policy.attempts + (hardening.extra_attempts if hardening else 0)

    def _record(
        self,
        ids: Ids,
        attempt: int,
        start: datetime,
        outcome: AttemptOutcome,
        exc: BaseException | None = None,
        retryable: bool | None = None,
        waited: _Waited | None = None,
        *,
        provider: Provider | None = None,
        replica: int | None = None,
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
                replica=replica,
                provider=provider.name if provider is not None else None,
                execution_id=ids[2],
            )
        )

    def _retryable(self, exc: BaseException) -> bool:
        # An open circuit is not the service failing again: never retry into it.
        return isinstance(exc, Exception) and not isinstance(exc, CircuitOpenError) and self.policy.is_retryable(exc)

    def _decision(self, call: _Call, exc: BaseException) -> bool:
        """:meth:`_retryable` for ``exc``, asked once per failure of this call (recorded, then acted on)."""
        decided = call.decided.get(id(exc))
        if decided is None:
            decided = call.decided[id(exc)] = self._retryable(exc)
        return decided

    def _failed(
        self,
        call: _Call,
        attempt: int,
        start: datetime,
        exc: BaseException,
        provider: Provider | None,
        replica: int | None = None,
        waited: _Waited | None = None,
    ) -> None:
        """Record a failed attempt (and tell its breaker, when the service was called)."""
        breaker = self.breaker if provider is None else provider.breaker
        called = not isinstance(exc, CircuitOpenError) and not (waited is not None and waited.refused)
        if breaker is not None and called:
            breaker.record_failure(self._seconds_since(start))
        outcome = AttemptOutcome.TIMEOUT if isinstance(exc, AttemptTimeoutError) else AttemptOutcome.FAILURE
        self._record(
            call.ids,
            attempt,
            start,
            outcome,
            exc,
            self._decision(call, exc),
            waited,
            provider=provider,
            replica=replica,
        )

    def _succeeded(
        self,
        call: _Call,
        attempt: int,
        start: datetime,
        provider: Provider | None,
        replica: int | None = None,
        waited: _Waited | None = None,
    ) -> None:
        breaker = self.breaker if provider is None else provider.breaker
        if breaker is not None:
            breaker.record_success(self._seconds_since(start))
        self._record(
            call.ids, attempt, start, AttemptOutcome.SUCCESS, waited=waited, provider=provider, replica=replica
        )

    def _timed_call(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], waited: _Waited | None
    ) -> Any:
        """The call under its timeout, inside the gate when there is one (its wait noted in ``waited``)."""
        if self.gate is None or waited is None:
            return call_with_timeout(fn, args, kwargs, seconds=self.timeout_seconds, name=self.task_name)
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

    async def _atimed_call(
        self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any], waited: _Waited | None
    ) -> Any:
        """The async twin of :meth:`_timed_call`."""
        if self.agate is None or waited is None:
            return await acall_with_timeout(fn, args, kwargs, seconds=self.timeout_seconds, name=self.task_name)
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
        self, ids: Ids, attempt: int, start: datetime, error: Exception, fallback_error: Exception
    ) -> FallbackError:
        self._record(ids, attempt, start, AttemptOutcome.FALLBACK_FAILURE, fallback_error)
        return FallbackError(self.task_name, error, fallback_error)

    def _copy_hooks(
        self, call: _Call, provider: Provider | None, lost: AttemptOutcome
    ) -> tuple[Callable[[int], None], Callable[[int, CopyStatus, BaseException | None], None]]:
        """``on_start`` and ``on_end`` for a race: number each copy as it starts, record it as it ends."""
        starts: dict[int, tuple[int, datetime]] = {}

        def on_start(replica: int) -> None:
            starts[replica] = (call.next_attempt(), self.clock())

        def on_end(replica: int, status: CopyStatus, error: BaseException | None) -> None:
            attempt, start = starts[replica]
            if status == "success":
                self._succeeded(call, attempt, start, provider, replica)
            elif status == "failure":
                assert error is not None
                self._failed(call, attempt, start, error, provider, replica)
            else:
                self._record(call.ids, attempt, start, lost, provider=provider, replica=replica)

        return on_start, on_end

    # -- the sync path ----------------------------------------------------------------------------------

    def run(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        task_run_id: str,
        flow_run_id: str | None,
        execution_id: str = "",
    ) -> Any:
        """Call ``fn(*args, **kwargs)`` with retries, timeout and fallback; return its (or the fallback's) result.

        With providers, each is tried in turn with the whole retry policy before the fallback runs.
        ``execution_id`` goes into every row of this call (``forewarn.task`` draws one per call; ``""``
        when the caller does not tell executions of one task run apart).
        """
        call = _Call(task_run_id, flow_run_id, execution_id)
        error: Exception | None = None
        for provider in self.providers:
            try:
                return self._retries(fn, provider, args, kwargs, call)
            except Exception as exc:  # this provider has failed for good: the next one, then the fallback
                error = exc
        assert error is not None
        if self.fallback is None:
            raise error
        attempt, start = call.next_attempt(), self.clock()
        try:
            result = self.fallback(error, *args, **kwargs)
        except Exception as fallback_error:
            raise self._fallback_failed(call.ids, attempt, start, error, fallback_error) from fallback_error
        self._record(call.ids, attempt, start, AttemptOutcome.FALLBACK, error)
        return result

    def _retries(
        self,
        fn: Callable[..., Any],
        provider: Provider | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        call: _Call,
    ) -> Any:
        attempts = self._attempts()
        round_ = 1
        while True:
            try:
                return self._attempt(fn, provider, args, kwargs, call)
            except Exception as exc:
                if not (self._decision(call, exc) and round_ < attempts):
                    raise
            self.sleep(self.policy.wait(round_))
            round_ += 1

    def _attempt(
        self,
        fn: Callable[..., Any],
        provider: Provider | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        call: _Call,
    ) -> Any:
        """One attempt: a single call, or a race of copies when hedging; every call is recorded."""
        if provider is not None:
            fn, args, kwargs = provider.bind(fn, args, kwargs), (), {}
        breaker = self.breaker if provider is None else provider.breaker
        if self.hedging is not None:

            def copy(replica: int) -> Any:
                if breaker is not None:
                    breaker.before_call()
                return self._timed_call(fn, args, kwargs, _Waited())  # each copy holds its own slot

            on_start, on_end = self._copy_hooks(call, provider, AttemptOutcome.ABANDONED)
            return race(
                copy,
                self.hedging,
                on_start=on_start,
                on_end=on_end,
                executor=self.executor,
                hedge_on=lambda exc: self._decision(call, exc),
            )
        attempt, start = call.next_attempt(), self.clock()
        waited = None if self.gate is None else _Waited()
        try:
            if breaker is not None:
                breaker.before_call()
            result = self._timed_call(fn, args, kwargs, waited)
        except Exception as exc:
            self._failed(call, attempt, start, exc, provider, waited=waited)
            raise
        self._succeeded(call, attempt, start, provider, waited=waited)
        return result

    # -- the async path: the same steps; timeouts and losing copies are really cancelled ---------------

    async def arun(
        self,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        task_run_id: str,
        flow_run_id: str | None,
        execution_id: str = "",
    ) -> Any:
        """The async twin of :meth:`run`: the timeout really cancels the attempt; the fallback may be async."""
        import inspect

        call = _Call(task_run_id, flow_run_id, execution_id)
        error: Exception | None = None
        for provider in self.providers:
            try:
                return await self._aretries(fn, provider, args, kwargs, call)
            except Exception as exc:
                error = exc
        assert error is not None
        if self.fallback is None:
            raise error
        attempt, start = call.next_attempt(), self.clock()
        try:
            result = self.fallback(error, *args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
        except Exception as fallback_error:
            raise self._fallback_failed(call.ids, attempt, start, error, fallback_error) from fallback_error
        self._record(call.ids, attempt, start, AttemptOutcome.FALLBACK, error)
        return result

    async def _aretries(
        self,
        fn: Callable[..., Awaitable[Any]],
        provider: Provider | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        call: _Call,
    ) -> Any:
        import asyncio

        asleep = self.asleep or asyncio.sleep
        attempts = self._attempts()
        round_ = 1
        while True:
            try:
                return await self._aattempt(fn, provider, args, kwargs, call)
            except Exception as exc:
                if not (self._decision(call, exc) and round_ < attempts):
                    raise
            await asleep(self.policy.wait(round_))
            round_ += 1

    async def _aattempt(
        self,
        fn: Callable[..., Awaitable[Any]],
        provider: Provider | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        call: _Call,
    ) -> Any:
        if provider is not None:
            fn, args, kwargs = provider.bind(fn, args, kwargs), (), {}
        breaker = self.breaker if provider is None else provider.breaker
        if self.hedging is not None:

            async def copy(replica: int) -> Any:
                if breaker is not None:
                    breaker.before_call()
                return await self._atimed_call(fn, args, kwargs, _Waited())  # each copy holds its own slot

            on_start, on_end = self._copy_hooks(call, provider, AttemptOutcome.CANCELLED)
            return await arace(
                copy, self.hedging, on_start=on_start, on_end=on_end, hedge_on=lambda exc: self._decision(call, exc)
            )
        attempt, start = call.next_attempt(), self.clock()
        waited = None if self.agate is None else _Waited()
        try:
            if breaker is not None:
                breaker.before_call()
            result = await self._atimed_call(fn, args, kwargs, waited)
        except Exception as exc:
            self._failed(call, attempt, start, exc, provider, waited=waited)
            raise
        self._succeeded(call, attempt, start, provider, waited=waited)
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
