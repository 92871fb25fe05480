"""Give one attempt of a call a time limit.

:func:`call_with_timeout` runs a sync callable in a worker thread and stops *waiting* for it after
``seconds``; :func:`acall_with_timeout` runs a coroutine function and really cancels it. Both raise
:class:`~forewarn.errors.AttemptTimeoutError` (a :class:`TimeoutError`, so retry policies retry it) and let
the callable's own exceptions through unchanged.

Python cannot interrupt a thread: after a sync timeout the abandoned call keeps running in the background
until it returns by itself, so make hung calls time out at the I/O layer too (socket, HTTP client and
database driver timeouts).

Example::

    >>> call_with_timeout(sum, ([1, 2, 3],), {}, seconds=1.0, name="add")
    6
    >>> import threading
    >>> release = threading.Event()
    >>> try:
    ...     call_with_timeout(release.wait, (), {}, seconds=0.01, name="stuck")
    ... except TimeoutError as exc:
    ...     print(exc)
    task 'stuck' attempt timed out after 0.01s
    >>> release.set()
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import math
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

from forewarn.errors import AttemptTimeoutError, ConfigurationError

T = TypeVar("T")


def _check_seconds(seconds: float, name: str) -> None:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not (0 < seconds < math.inf):
        raise ConfigurationError(
            f"timeout_seconds (of {name!r})",
            seconds,
            "finite seconds > 0, or None for no time limit, e.g. timeout_seconds=30",
        )


def call_with_timeout(
    fn: Callable[..., T],
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    seconds: float | None,
    name: str,
) -> T:
    """Call ``fn(*args, **kwargs)`` and return its result, or raise ``AttemptTimeoutError`` after ``seconds``.

    With ``seconds=None`` the call runs directly in the calling thread. Otherwise it runs in a fresh
    daemon thread, inside a copy of the caller's :mod:`contextvars` context (so Prefect's run context is
    visible there; changes the call makes to context variables stay in the copy), and the caller waits
    at most ``seconds``. Exceptions from ``fn`` are re-raised unchanged. ``name`` names the call in the
    timeout error.

    Python cannot interrupt a thread; the abandoned call keeps running in the background, so make hung
    calls time out at the I/O layer too. A daemon thread does not keep the interpreter alive at exit.

    Example::

        >>> call_with_timeout(divmod, (7, 2), {}, seconds=None, name="divide")
        (3, 1)
    """
    kwargs = {} if kwargs is None else kwargs
    if inspect.iscoroutinefunction(fn):
        raise ConfigurationError(
            f"call_with_timeout(fn) (of {name!r})",
            fn,
            "a sync callable; use `await acall_with_timeout(...)` for a coroutine function",
        )
    if seconds is None:
        return fn(*args, **kwargs)
    _check_seconds(seconds, name)

    # One fresh daemon thread per call rather than a pooled executor: an abandoned (hung) call keeps its
    # thread busy forever, so a bounded pool would eventually queue the *retry* of a hung attempt behind
    # the hung attempt itself, and concurrent.futures joins its workers at interpreter exit, so a hung
    # call would block shutdown. Starting a thread costs tens of microseconds, nothing next to I/O.
    context = contextvars.copy_context()
    done = threading.Event()
    outcome: list[Any] = []  # [True, result] or [False, exception], written once by the worker

    def run() -> None:
        try:
            outcome.extend((True, context.run(fn, *args, **kwargs)))
        except BaseException as exc:  # handed to the caller, who re-raises it
            outcome.extend((False, exc))
        finally:
            done.set()

    worker = threading.Thread(target=run, name=f"forewarn-timeout:{name}", daemon=True)
    worker.start()
    if not done.wait(seconds):
        raise AttemptTimeoutError(name, seconds)
    succeeded, value = outcome
    if succeeded:
        return cast(T, value)
    try:
        raise value
    finally:
        del value  # break the frame <-> traceback cycle
        outcome.clear()


async def acall_with_timeout(
    fn: Callable[..., Awaitable[T]],
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    seconds: float | None,
    name: str,
) -> T:
    """Await ``fn(*args, **kwargs)``; after ``seconds``, cancel it and raise ``AttemptTimeoutError``.

    The coroutine runs as its own task, in a copy of the caller's context. On timeout it is cancelled and
    awaited until it has finished unwinding (its ``finally`` blocks have run) before the error is raised;
    a coroutine that ignores cancellation delays that, as with :func:`asyncio.wait_for`. If the caller is
    cancelled meanwhile, the call is cancelled too. A ``TimeoutError`` the call raises by itself
    propagates unchanged, so it is never mistaken for this timeout. ``seconds=None`` awaits directly.

    Example::

        >>> import asyncio
        >>> async def stuck():
        ...     await asyncio.sleep(60)
        >>> try:
        ...     asyncio.run(acall_with_timeout(stuck, (), {}, seconds=0.01, name="stuck"))
        ... except TimeoutError as exc:
        ...     print(exc)
        task 'stuck' attempt timed out after 0.01s
    """
    kwargs = {} if kwargs is None else kwargs
    if seconds is None:
        return await fn(*args, **kwargs)
    _check_seconds(seconds, name)
    awaitable = fn(*args, **kwargs)
    if not inspect.isawaitable(awaitable):
        raise ConfigurationError(
            f"acall_with_timeout(fn) (of {name!r})",
            fn,
            "a coroutine function (async def); use call_with_timeout(...) for a sync callable",
        )
    task: asyncio.Future[T] = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    except BaseException:  # we were cancelled (or interrupted): take the attempt down with us
        task.cancel()
        raise
    if task in done:
        return task.result()
    task.cancel()
    # asyncio.wait never raises the task's exception; it raises only if *we* are cancelled meanwhile.
    await asyncio.wait({task})
    if not task.cancelled():
        task.exception()  # it finished anyway (ignored the cancel): mark its outcome as seen
    raise AttemptTimeoutError(name, seconds)


__all__ = ["acall_with_timeout", "call_with_timeout"]
