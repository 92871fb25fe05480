"""``forewarn.task``: a Prefect task whose every attempt is retried by policy and recorded.

It accepts every option of Prefect's ``@task`` and returns a real :class:`prefect.Task`: change ``@task`` to
``@forewarn.task`` and keep your options. Prefect's retry options (``retries``, ``retry_delay_seconds``,
``retry_jitter_factor``, ``retry_condition_fn``) keep Prefect's meaning but forewarn runs the retries, inside
the task call, so that each attempt is recorded (Prefect has no per-retry hook) and the fallback runs only
after the *last* attempt (:mod:`forewarn.orchestration.retry_options`). ``timeout_seconds`` applies to each
attempt rather than to the whole run. Every other option passes through to Prefect unchanged.

Example::

    import forewarn
    from forewarn import RetryPolicy

    def queue_for_later(exc, order_id):
        return {"order_id": order_id, "status": "queued"}

    @forewarn.task(retry=RetryPolicy(attempts=4, wait_initial=0.2, wait_max=5),
                   retry_on=ConnectionError, fallback=queue_for_later, timeout_seconds=10)
    def notify_customer(order_id: str) -> dict:
        ...
"""

from __future__ import annotations

import contextvars
import copy
import functools
import inspect
import logging
import os
import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypedDict, TypeVar, overload

import prefect
from prefect.context import TaskRunContext

from forewarn.errors import ConfigurationError
from forewarn.orchestration.breakers import share_through_the_store
from forewarn.orchestration.compensation import Compensate, PendingUndo, rollback_hook, stage_undo
from forewarn.orchestration.concurrency import LimitNames, limit_gates
from forewarn.orchestration.failure_response import note_task_call, respond_to_task_failure, task_failure, watch_breaker
from forewarn.orchestration.log_redaction import install_log_redaction
from forewarn.orchestration.recorder import default_recorder
from forewarn.orchestration.retry_options import RetryConditionFn, prefect_retry_policy
from forewarn.records import AttemptRecord
from forewarn.resilience.attempts import AttemptRunner, Fallback
from forewarn.resilience.breaker import CircuitBreaker
from forewarn.resilience.failover import Provider, providers_of
from forewarn.resilience.hedging import HedgingPolicy
from forewarn.resilience.retry import RetryOn, RetryPolicy
from forewarn.timeutil import utc_now

R = TypeVar("R")
logger = logging.getLogger("forewarn.tasks")


def _check_exclusive(retry: RetryPolicy | None, retry_on: RetryOn | None, prefect_retry: dict[str, Any]) -> None:
    """Prefect's retry options and forewarn's say the same thing twice: one spelling per task."""
    if retry is not None:
        for option in ("retry_delay_seconds", "retry_jitter_factor"):
            if prefect_retry.get(option) is not None:
                raise ConfigurationError(
                    option,
                    prefect_retry[option],
                    "either Prefect's spelling or retry=RetryPolicy(...), not both; the policy spells it "
                    "RetryPolicy(wait_schedule=(...), wait_jitter_factor=...)",
                )
    if retry_on is not None and prefect_retry.get("retry_condition_fn") is not None:
        raise ConfigurationError(
            "retry_condition_fn",
            prefect_retry["retry_condition_fn"],
            "either retry_condition_fn (Prefect's) or retry_on (forewarn's), not both",
        )


def _build_policy(retries: int | None, retry: RetryPolicy | None, retry_on: RetryOn | None) -> RetryPolicy:
    if retry is not None and retries is not None:
        raise ConfigurationError(
            "retries",
            retries,
            f"either retries=N or retry=RetryPolicy(...), not both; e.g. "
            f"retry=RetryPolicy(attempts={retries + 1}, ...)",
        )
    if retries is not None and (not isinstance(retries, int) or isinstance(retries, bool) or retries < 0):
        raise ConfigurationError("retries", retries, "a whole number >= 0, e.g. retries=3")
    policy = retry if retry is not None else RetryPolicy.from_settings()
    if retries is not None:
        policy = policy.with_options(attempts=retries + 1)
    if retry_on is not None:
        policy = policy.with_options(retry_on=retry_on)
    return policy


def _check_timeout(timeout_seconds: float | None) -> None:
    if timeout_seconds is not None and (
        isinstance(timeout_seconds, bool) or not isinstance(timeout_seconds, (int, float)) or timeout_seconds <= 0
    ):
        raise ConfigurationError("timeout_seconds", timeout_seconds, "a number of seconds > 0, e.g. 30")


def _check_redundancy(
    idempotent: bool, replicas: int, hedge_after: float | None, max_hedged: int
) -> HedgingPolicy | None:
    if not isinstance(idempotent, bool):
        raise ConfigurationError("idempotent", idempotent, "True or False, e.g. idempotent=True")
    policy = HedgingPolicy(replicas=replicas, hedge_after=hedge_after, max_hedged=max_hedged)
    if policy.redundant and not idempotent:
        raise ConfigurationError(
            "idempotent",
            idempotent,
            "idempotent=True to run copies of this task at once (replicas / hedge_after): two copies of a call "
            "that is not idempotent may both take effect (charge a card twice). Mark it idempotent=True only "
            "if repeating the call is harmless, e.g. @forewarn.task(idempotent=True, hedge_after=2.0)",
        )
    return policy if policy.redundant else None


def _check_providers(
    providers: Sequence[Provider | Callable[..., Any] | Mapping[str, Any]] | None,
    circuit_breaker: CircuitBreaker | None,
) -> tuple[Provider, ...]:
    if providers is None:
        return ()
    if circuit_breaker is not None:
        raise ConfigurationError(
            "circuit_breaker",
            circuit_breaker,
            "no task-wide breaker with providers: give each provider its own, e.g. "
            'providers=[Provider("primary", call=charge_primary, breaker=primary_breaker), charge_backup]',
        )
    return providers_of(providers)


_last_attempt: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("forewarn_last_attempt", default=None)
"""While a task with ``compensate`` runs: the highest attempt number it recorded (its undo row comes next)."""




class _Ids(TypedDict):
    """What one recorded call's rows are recorded under (:meth:`AttemptRunner.run`'s keywords)."""

    task_run_id: str
    flow_run_id: str | None
    execution_id: str


_execution_ids = random.Random()  # seeded from os.urandom; private, so a user's random.seed() cannot repeat it
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_execution_ids.seed)  # a forked child draws its own ids


def _execution_id() -> str:
    """A new execution id: 16 random hex digits, one per recorded call of a ``forewarn.task``.

    Dask re-runs a task whose worker died under the same task run id, and the re-run numbers its attempts
    from 1 again: the execution id keeps the two executions' rows apart (``task_attempts`` is unique on
    ``(task_run_id, execution_id, attempt)``). Drawn from a private generator (no system call, a fraction
    of a microsecond), reseeded from the OS after a fork, so two processes never share a sequence.
    """
    return f"{_execution_ids.getrandbits(64):016x}"


def _run_ids() -> tuple[_Ids, bool]:
    """The ids the current call's rows are recorded under, and whether it runs inside a Prefect task run.

    Outside one (``task.fn()``) nothing is recorded: a fresh task run id, no flow run, no execution id.
    """
    ctx = TaskRunContext.get()
    if ctx is None:
        return {"task_run_id": str(uuid.uuid4()), "flow_run_id": None, "execution_id": ""}, False
    run = ctx.task_run
    flow_run_id = str(run.flow_run_id) if run.flow_run_id else None
    return {"task_run_id": str(run.id), "flow_run_id": flow_run_id, "execution_id": _execution_id()}, True


# The attempt records of the task call in progress, so its failure response can say what was tried.
_call_records: contextvars.ContextVar[list[AttemptRecord] | None] = contextvars.ContextVar(
    "forewarn_call_records", default=None
)


def _sink(on_attempt: list[Callable[[AttemptRecord], Any]]) -> Callable[[AttemptRecord], None]:
    def emit(record: AttemptRecord) -> None:
        recorder = default_recorder()
        if recorder is not None:
            recorder.attempt(record)
        collected = _call_records.get()
        if collected is not None:
            collected.append(record)
        for hook in on_attempt:
            try:
                hook(record)
            except Exception:  # a user's hook must not break the task either
                logger.exception("on_attempt hook %r failed", hook)
        seen = _last_attempt.get()
        if seen is not None and record.attempt > seen[0]:
            seen[0] = record.attempt

    return emit


@overload
def task(__fn: Callable[..., R]) -> prefect.Task[..., R]: ...


@overload
def task(
    __fn: None = None,
    *,
    retries: int | None = None,
    retry_delay_seconds: float | list[float] | Callable[[int], list[float]] | None = None,
    retry_jitter_factor: float | None = None,
    retry_condition_fn: RetryConditionFn | None = None,
    retry: RetryPolicy | None = None,
    retry_on: RetryOn | None = None,
    fallback: Fallback | None = None,
    timeout_seconds: float | None = None,
    circuit_breaker: CircuitBreaker | None = None,
    concurrency: LimitNames | None = None,
    rate_limit: LimitNames | None = None,
    limit_timeout_seconds: float | None = None,
    limit_strict: bool = True,
    on_attempt: list[Callable[[AttemptRecord], Any]] | None = None,
    runbook: str | None = None,
    sleep: Callable[[float], Any] | None = None,
    clock: Callable[[], datetime] | None = None,
    idempotent: bool = False,
    replicas: int = 1,
    hedge_after: float | None = None,
    max_hedged: int = 1,
    providers: Sequence[Provider | Callable[..., Any] | Mapping[str, Any]] | None = None,
    compensate: Compensate | None = None,
    **prefect_options: Any,
) -> Callable[[Callable[..., R]], prefect.Task[..., R]]: ...


def task(
    __fn: Callable[..., Any] | None = None,
    *,
    retries: int | None = None,
    retry_delay_seconds: float | list[float] | Callable[[int], list[float]] | None = None,
    retry_jitter_factor: float | None = None,
    retry_condition_fn: RetryConditionFn | None = None,
    retry: RetryPolicy | None = None,
    retry_on: RetryOn | None = None,
    fallback: Fallback | None = None,
    timeout_seconds: float | None = None,
    circuit_breaker: CircuitBreaker | None = None,
    concurrency: LimitNames | None = None,
    rate_limit: LimitNames | None = None,
    limit_timeout_seconds: float | None = None,
    limit_strict: bool = True,
    on_attempt: list[Callable[[AttemptRecord], Any]] | None = None,
    runbook: str | None = None,
    sleep: Callable[[float], Any] | None = None,
    clock: Callable[[], datetime] | None = None,
    idempotent: bool = False,
    replicas: int = 1,
    hedge_after: float | None = None,
    max_hedged: int = 1,
    providers: Sequence[Provider | Callable[..., Any] | Mapping[str, Any]] | None = None,
    compensate: Compensate | None = None,
    **prefect_options: Any,
) -> Any:
    """Make ``fn`` a Prefect task that retries by policy, falls back, times out and records every attempt.

    Args:
        retries: attempts after the first (Prefect's meaning); default ``FOREWARN_RETRIES``.
        retry_delay_seconds / retry_jitter_factor / retry_condition_fn: Prefect's options, with Prefect's
            meaning, run by forewarn so every attempt is recorded (see
            :mod:`forewarn.orchestration.retry_options`). Without ``retry_delay_seconds`` the waits are
            forewarn's exponential backoff.
        retry: a full :class:`~forewarn.resilience.retry.RetryPolicy` (exclusive with ``retries``).
        retry_on: which errors are transient: an exception type, a tuple of them, or a predicate.
            Default: everything but permanent errors such as ``ValueError`` (see ``forewarn.resilience.retry``).
        fallback: ``fallback(exc, *args, **kwargs)`` produces the result once the task has finally failed.
        timeout_seconds: limit for *each* attempt. Async tasks are really cancelled; a sync task's call
            cannot be interrupted in a thread, so forewarn stops waiting for it and it runs on unobserved.
        circuit_breaker: a :class:`~forewarn.resilience.breaker.CircuitBreaker`, usually shared by the tasks that call
            one service; while open, calls fail fast and go to the fallback. Its state is shared through the
            telemetry store by every process using it (unless made with ``scope="process"``).
        concurrency: a Prefect global concurrency limit's name (or a list): a slot is held for each attempt,
            a bulkhead across workers (:mod:`forewarn.orchestration.concurrency`).
        rate_limit: a limit with slot decay taken before each attempt (calls per second across workers).
        limit_timeout_seconds: longest wait for those slots before the attempt is refused (default: no limit).
        limit_strict: a limit that does not exist fails the attempt (True) or is ignored, as in Prefect (False).
        on_attempt: callables receiving each :class:`~forewarn.records.AttemptRecord` as it is written.
        runbook: a hint for whoever responds when the task finally fails (a URL, a first step), carried by
            the ``forewarn.task.failed`` event and the failure artifact
            (:mod:`forewarn.orchestration.failure_response`).
        sleep / clock: injectable for tests (``sleep=waits.append``).
        idempotent: declare that running the call twice is harmless; required by ``replicas`` and
            ``hedge_after``.
        replicas: copies of each attempt started at once; the first success wins (see
            :mod:`forewarn.resilience.hedging`). Losing async copies are cancelled, sync ones abandoned.
        hedge_after / max_hedged: seconds without a success after which one more copy starts, at most
            ``max_hedged`` more (Polly's hedging delay and maximum hedged attempts).
        providers: an ordered list of callables (used instead of the task's function), keyword-argument
            dicts (laid over the call's) or :class:`~forewarn.resilience.failover.Provider` values (each with
            its own breaker); each is tried with the whole retry policy, then the next, then the fallback.
        compensate: ``compensate(result, *args, **kwargs)`` undoes a succeeded call when an enclosing
            ``prefect.transactions.transaction()`` fails later (see :mod:`forewarn.orchestration.compensation`).
        **prefect_options: anything Prefect's ``@task`` takes (name, tags, cache_policy, ...).

    Example::

        >>> import forewarn
        >>> @forewarn.task(retries=2, retry_on=ConnectionError)
        ... def reserve_inventory(order_id: str) -> bool:
        ...     return True
        >>> reserve_inventory.name
        'reserve_inventory'
        >>> @forewarn.task(retries=3, retry_delay_seconds=[1, 10, 60])  # Prefect's spelling, Prefect's meaning
        ... def ship(order_id: str) -> bool:
        ...     return True
        >>> runner_of(ship).policy.wait_schedule
        (1.0, 10.0, 60.0)
        >>> runner_of(ship.with_options(retries=1, name="ship-fast")).policy.attempts  # forewarn's meaning too
        2
        >>> @forewarn.task(idempotent=True, hedge_after=0.5, providers=[{"region": "eu"}, {"region": "us"}])
        ... def quote(item: str, region: str = "eu") -> float:
        ...     return 1.0
        >>> runner_of(quote).hedging, [p.name for p in runner_of(quote).providers]
        (HedgingPolicy(replicas=1, hedge_after=0.5, max_hedged=1), ['parameters 1', 'parameters 2'])
    """
    # Every option as given, so that Task.with_options can build the task again with some changed.
    given = {name: value for name, value in locals().items() if name not in ("__fn", "prefect_options")}
    given.update(prefect_options)
    _check_exclusive(
        retry,
        retry_on,
        {
            "retry_delay_seconds": retry_delay_seconds,
            "retry_jitter_factor": retry_jitter_factor,
            "retry_condition_fn": retry_condition_fn,
        },
    )
    task_cell: list[prefect.Task[..., Any]] = []  # retry_condition_fn gets the task, made below
    policy = prefect_retry_policy(
        _build_policy(retries, retry, retry_on),
        retry_delay_seconds=retry_delay_seconds,
        retry_jitter_factor=retry_jitter_factor,
        retry_condition_fn=retry_condition_fn,
        task_ref=lambda: task_cell[0] if task_cell else None,
    )
    _check_timeout(timeout_seconds)
    if fallback is not None and not callable(fallback):
        raise ConfigurationError("fallback", fallback, "a callable fallback(exc, *args, **kwargs)")
    if runbook is not None and not isinstance(runbook, str):
        raise ConfigurationError("runbook", runbook, 'a str, e.g. runbook="https://wiki/payments#gateway-down"')
    if circuit_breaker is not None:
        watch_breaker(circuit_breaker)  # its openings emit forewarn.breaker.opened
    gate, agate = limit_gates(
        concurrency=concurrency, rate_limit=rate_limit, timeout_seconds=limit_timeout_seconds, strict=limit_strict
    )
    hedging = _check_redundancy(idempotent, replicas, hedge_after, max_hedged)
    routes = _check_providers(providers, circuit_breaker)
    if compensate is not None and not callable(compensate):
        raise ConfigurationError("compensate", compensate, "a callable compensate(result, *args, **kwargs)")
    hooks = list(on_attempt or [])
    if circuit_breaker is not None:
        share_through_the_store(circuit_breaker)  # shared by every process using FOREWARN_DB_URL's store

    def decorate(fn: Callable[..., Any]) -> prefect.Task[..., Any]:
        install_log_redaction()  # Prefect logs a failed task's exception text: secrets masked first
        name = str(prefect_options.get("name") or getattr(fn, "__name__", "task"))
        runner = AttemptRunner(
            name,
            policy,
            fallback=fallback,
            timeout_seconds=timeout_seconds,
            breaker=circuit_breaker,
            sink=_sink(hooks),
            sleep=sleep or _real_sleep,
            asleep=_as_async(sleep) if sleep is not None else None,
            clock=clock or utc_now,
            gate=gate,
            agate=agate,
            hedging=hedging,
            providers=routes,
        )

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_call(*args: Any, **kwargs: Any) -> Any:
                ids, in_run = _run_ids()
                if not in_run:  # called as .fn(): no run to record, still fault tolerant
                    return await _unrecorded(runner).arun(fn, args, kwargs, **ids)
                with _responding(runbook):
                    if compensate is None:
                        return await runner.arun(fn, args, kwargs, **ids)
                    seen = [0]
                    token = _last_attempt.set(seen)
                    try:
                        result = await runner.arun(fn, args, kwargs, **ids)
                    finally:
                        _last_attempt.reset(token)
                    stage_undo(PendingUndo(result, args, kwargs, **ids, attempt=seen[0] + 1))
                    return result

            wrapped: Callable[..., Any] = async_call
        else:

            @functools.wraps(fn)
            def sync_call(*args: Any, **kwargs: Any) -> Any:
                ids, in_run = _run_ids()
                if not in_run:
                    return _unrecorded(runner).run(fn, args, kwargs, **ids)
                with _responding(runbook):
                    if compensate is None:
                        return runner.run(fn, args, kwargs, **ids)
                    seen = [0]
                    token = _last_attempt.set(seen)
                    try:
                        result = runner.run(fn, args, kwargs, **ids)
                    finally:
                        _last_attempt.reset(token)
                    stage_undo(PendingUndo(result, args, kwargs, **ids, attempt=seen[0] + 1))
                    return result

            wrapped = sync_call

        # Prefect reads the task function's signature three times per call (binding the call, rebuilding
        # args); the wrapper's is fn's and never changes, so it is computed once here. inspect stops at
        # ``__signature__`` before following ``__wrapped__`` (kept: Prefect hashes fn's source through it).
        wrapped.__signature__ = inspect.signature(fn)  # type: ignore[attr-defined]
        # forewarn enforces timeout_seconds per attempt; Prefect's whole-run timeout stays off.
        prefect_task: prefect.Task[..., Any] = prefect.task(**prefect_options)(wrapped)
        if compensate is not None:  # Prefect runs it when an enclosing transaction rolls back
            undo = rollback_hook(name, compensate, _sink(hooks), clock or utc_now, runner.redactor)
            wrapped.forewarn_rollback = undo  # type: ignore[attr-defined]  # named, so it pickles by reference
            undo.__module__, undo.__qualname__ = fn.__module__, f"{fn.__qualname__}.fn.forewarn_rollback"
            prefect_task.on_rollback(undo)
        # on the function, not the task: a shipped task's __dict__ is pickled, its function by reference
        wrapped.forewarn_runner = runner  # type: ignore[attr-defined]
        prefect_task.with_options = _with_options(given, fn)  # type: ignore[method-assign]
        _by_reference(prefect_task, fn)
        task_cell[:] = [prefect_task]
        return prefect_task

    if __fn is not None:
        return decorate(__fn)
    return decorate


def _by_reference(prefect_task: prefect.Task[..., Any], fn: Callable[..., Any]) -> None:
    """Let a module-level task's functions pickle as ``<module>.<task>.fn``, never by value.

    An executor that ships a task to another process (``prefect_dask.DaskTaskRunner``) pickles it with
    its ``__dict__``. The wrapper and ``with_options`` are closures over the retry runner, the circuit
    breaker and telemetry state (locks, context variables, engines), which cannot and should not cross
    processes. Named as attributes of the task, cloudpickle pickles them by reference: the worker imports
    the module and uses its own task, built the same way (a ``scope="shared"`` breaker still shares its
    state through the store). A task defined inside a function has no such name and cannot be shipped.
    """
    for attribute in ("fn", "with_options"):
        function = getattr(prefect_task, attribute)
        function.__module__ = fn.__module__
        function.__qualname__ = f"{fn.__qualname__}.{attribute}"


def _with_options(given: dict[str, Any], fn: Callable[..., Any]) -> Callable[..., prefect.Task[..., Any]]:
    """Prefect's ``Task.with_options`` for a forewarn task: the same task built again with ``changes``.

    Prefect's own would copy the task with Prefect's retries and timeout switched back on, on top of
    forewarn's; this one gives every option the meaning ``@forewarn.task`` gives it.
    """

    def with_options(**changes: Any) -> prefect.Task[..., Any]:
        return task(**{**given, **changes})(fn)  # type: ignore[no-any-return]

    return with_options


def _real_sleep(seconds: float) -> None:
    # Looked up at call time so tests may patch time.sleep globally.
    time.sleep(seconds)


def _as_async(sleep: Callable[[float], Any]) -> Callable[[float], Any]:
    """Let one injected ``sleep`` serve async tasks too, so tests never wait for backoff."""

    async def asleep(seconds: float) -> None:
        sleep(seconds)

    return asleep


class _responding:
    """Collects a recorded task call's attempts; on its final failure, emits the failure response (fail-open)."""

    __slots__ = ("records", "runbook", "token")

    def __init__(self, runbook: str | None) -> None:
        self.runbook = runbook
        self.records: list[AttemptRecord] = []

    def __enter__(self) -> None:
        self.token = _call_records.set(self.records)

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        _call_records.reset(self.token)
        records = self.records
        if isinstance(exc, Exception):
            try:
                respond_to_task_failure(task_failure(records, exc, runbook=self.runbook))
            except Exception:  # the response is best effort; the task's own error is what propagates
                logger.exception("forewarn could not respond to the failure of a task")
        if len(records) > 1:
            note_task_call(records)


def _unrecorded(runner: AttemptRunner) -> AttemptRunner:
    """The same runner without the store sink: unit tests calling ``task.fn()`` write no telemetry."""
    clone = copy.copy(runner)
    clone.sink = None
    return clone


def runner_of(task_: prefect.Task[..., Any]) -> AttemptRunner:
    """The :class:`~forewarn.resilience.attempts.AttemptRunner` behind a ``forewarn.task`` (for tests and tooling)."""
    try:
        return task_.fn.forewarn_runner  # type: ignore[attr-defined, no-any-return]
    except AttributeError:
        raise ConfigurationError("task", task_, "a task made with @forewarn.task") from None


__all__ = ["runner_of", "task"]
