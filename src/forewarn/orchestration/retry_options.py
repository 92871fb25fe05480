"""Prefect's retry options, spelled as Prefect spells them, mapped onto forewarn's :class:`RetryPolicy`.

``@forewarn.task`` accepts ``retries``, ``retry_delay_seconds``, ``retry_jitter_factor`` and
``retry_condition_fn`` with the meaning Prefect's ``@task`` gives them, but forewarn runs the retries
itself, inside the task call, so that every attempt is recorded and the fallback runs after the *last*
one. The Prefect task underneath gets ``retries=0``.

=====================  =====================================================================================
Prefect option         forewarn's policy
=====================  =====================================================================================
``retries=N``          ``attempts = N + 1``
``retry_delay_seconds``  a number: every wait; a list: the waits in order, the last repeated; a callable:
                       called once with the number of retries, returns that list (Prefect's
                       ``exponential_backoff(backoff_factor=10)`` works). ``wait_schedule``
``retry_jitter_factor``  Prefect's clamped Poisson jitter around each wait (``wait_jitter_factor``); it
                       replaces forewarn's additive ``wait_jitter``
``retry_condition_fn``   ``fn(task, task_run, state) -> bool`` decides whether a failed attempt is retried,
                       instead of :func:`~forewarn.resilience.retry.default_retry_on`; ``state`` is
                       ``Failed(data=exc)`` as Prefect builds it; an error in ``fn`` means "do not retry".
=====================  =====================================================================================

Without ``retry_delay_seconds``, the waits are forewarn's exponential backoff (``FOREWARN_WAIT_*``), not
Prefect's ``PREFECT_TASKS_DEFAULT_RETRY_DELAY_SECONDS``. Two differences from Prefect, both deliberate:
``retry_condition_fn`` is asked after *every* failed attempt, the last one included, so the recorded
``retryable`` column says what it answered; and it receives ``task_run=None`` when the task is called
through ``.fn()`` (no task run exists then).

Example::

    >>> from forewarn.resilience.retry import RetryPolicy
    >>> policy = prefect_retry_policy(RetryPolicy(attempts=4), retry_delay_seconds=[1, 5])
    >>> [policy.wait(n) for n in (1, 2, 3)]
    [1.0, 5.0, 5.0]
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from forewarn.errors import ConfigurationError
from forewarn.limits import MAX_WAIT_SECONDS
from forewarn.resilience.retry import MAX_JITTER_FACTOR, MAX_WAIT_SCHEDULE, RetryPolicy

logger = logging.getLogger("forewarn.tasks")

RetryConditionFn = Callable[[Any, Any, Any], Any]
"""Prefect's ``retry_condition_fn(task, task_run, state) -> bool`` (or an awaitable of a bool)."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _schedule(retry_delay_seconds: Any, retries: int) -> tuple[float, ...]:
    """Prefect's ``retry_delay_seconds`` (number, list, or callable(retries) -> list) as a tuple of waits."""
    value = retry_delay_seconds
    if callable(value):
        try:
            value = value(retries)
        except Exception as exc:
            raise ConfigurationError(
                "retry_delay_seconds", retry_delay_seconds, f"a callable(retries) -> list of seconds; it raised {exc!r}"
            ) from exc
        if not isinstance(value, (list, tuple)):
            raise ConfigurationError(
                "retry_delay_seconds",
                retry_delay_seconds,
                f"a callable returning a list of seconds (it returned {value!r}), "
                "e.g. prefect.tasks.exponential_backoff(backoff_factor=10)",
            )
    if _is_number(value):
        return (float(value),)
    if isinstance(value, (list, tuple)) and len(value) <= MAX_WAIT_SCHEDULE:
        return tuple(float(x) if _is_number(x) else x for x in value)  # anything else fails the policy's check
    raise ConfigurationError(
        "retry_delay_seconds",
        retry_delay_seconds,
        f"seconds (retry_delay_seconds=10), a list of at most {MAX_WAIT_SCHEDULE} seconds "
        "(retry_delay_seconds=[1, 10, 60]) or a callable(retries) -> list",
    )


_EXPECTED = {
    "retry_delay_seconds": f"finite seconds from 0 to {MAX_WAIT_SECONDS:g} (one day), alone or in a list of at most "
    f"{MAX_WAIT_SCHEDULE}, e.g. retry_delay_seconds=[1, 10, 60]",
    "retry_jitter_factor": f"a number from 0 to {MAX_JITTER_FACTOR:g}, e.g. retry_jitter_factor=0.5",
}


def _validated(policy: RetryPolicy, option: str, value: Any, **changes: Any) -> RetryPolicy:
    """``policy.with_options(**changes)``, an error naming the Prefect option the user wrote."""
    try:
        return policy.with_options(**changes)
    except ConfigurationError:
        raise ConfigurationError(option, value, _EXPECTED[option]) from None


def prefect_retry_policy(
    policy: RetryPolicy,
    *,
    retry_delay_seconds: Any = None,
    retry_jitter_factor: Any = None,
    retry_condition_fn: RetryConditionFn | None = None,
    task_ref: Callable[[], Any] = lambda: None,
) -> RetryPolicy:
    """``policy`` with Prefect's retry options applied, each with Prefect's meaning (see the module table).

    ``task_ref`` returns the Prefect task that ``retry_condition_fn`` receives as its first argument (the
    task does not exist yet while its policy is built). Invalid values raise
    :class:`~forewarn.errors.ConfigurationError` naming the Prefect option.

    Example::

        >>> from forewarn.resilience.retry import RetryPolicy
        >>> prefect_retry_policy(RetryPolicy(attempts=3), retry_delay_seconds=lambda n: [2.0] * n).wait_schedule
        (2.0, 2.0)
        >>> prefect_retry_policy(RetryPolicy(), retry_jitter_factor=-1)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        forewarn.errors.ConfigurationError: retry_jitter_factor=-1 is invalid: expected a number from 0 to 100, ...
    """
    if retry_delay_seconds is not None:
        schedule = _schedule(retry_delay_seconds, policy.attempts - 1)
        policy = _validated(policy, "retry_delay_seconds", retry_delay_seconds, wait_schedule=schedule)
    if retry_jitter_factor is not None:
        policy = _validated(
            policy, "retry_jitter_factor", retry_jitter_factor, wait_jitter_factor=retry_jitter_factor, wait_jitter=0.0
        )
    if retry_condition_fn is not None:
        if not callable(retry_condition_fn):
            raise ConfigurationError(
                "retry_condition_fn", retry_condition_fn, "a callable(task, task_run, state) -> bool, as in Prefect"
            )
        policy = policy.with_options(retry_on=retry_condition(retry_condition_fn, task_ref))
    return policy


def retry_condition(fn: RetryConditionFn, task_ref: Callable[[], Any]) -> Callable[[BaseException], bool]:
    """A ``retry_on`` predicate asking Prefect's ``fn(task, task_run, state)`` about each failed attempt.

    ``state`` is ``Failed(data=exc)``, built as Prefect builds it for its own ``retry_condition_fn``, so
    ``state.result(raise_on_failure=False)`` is the exception. Like Prefect, an awaitable answer is awaited
    and an error in ``fn`` is logged and means "do not retry".

    Example::

        >>> retry_if_timeout = retry_condition(
        ...     lambda task, run, state: isinstance(state.result(raise_on_failure=False), TimeoutError), lambda: None)
        >>> retry_if_timeout(TimeoutError()), retry_if_timeout(ConnectionError())
        (True, False)
    """
    from prefect.context import TaskRunContext
    from prefect.states import Failed

    def should_retry(exc: BaseException) -> bool:
        ctx = TaskRunContext.get()
        state: Any = Failed(data=exc, message=f"Task run encountered unexpected exception: {exc!r}")
        try:
            answer = fn(task_ref(), ctx.task_run if ctx is not None else None, state)
            if inspect.isawaitable(answer):
                from prefect.utilities.asyncutils import run_coro_as_sync

                answer = run_coro_as_sync(_awaited(answer))
            return bool(answer)
        except Exception:
            logger.exception("retry_condition_fn %r failed; the attempt is not retried (as in Prefect)", fn)
            return False

    return should_retry


async def _awaited(answer: Any) -> Any:
    return await answer


__all__ = ["RetryConditionFn", "prefect_retry_policy", "retry_condition"]
