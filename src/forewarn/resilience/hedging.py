"""Hedged and redundant calls: run more than one copy of an idempotent call and keep the first success.

A :class:`HedgingPolicy` says how many copies one call may start (compare Polly's hedging strategy,
``Delay`` and ``MaxHedgedAttempts``):

- ``replicas`` copies start at once (redundant execution);
- with ``hedge_after`` set, each time ``hedge_after`` seconds pass after the latest copy started without
  a success, one more copy starts, at most ``max_hedged`` times (hedging). A copy that fails with an error
  worth retrying starts the next hedged copy at once instead of waiting out the delay;
- the first copy to succeed wins. Copies still running lose: :func:`arace` cancels them (async), and
  :func:`race` abandons them (a sync copy runs in a thread, which Python cannot stop: its result is ignored);
- if every copy fails, the race raises the error of the copy that failed last.

Only idempotent calls may be raced: two copies of a payment may both charge.

The race itself is pure scheduling. It starts copies through an injected :class:`CopyExecutor` and reports
each copy's start and end through callbacks, all from the calling thread, so the caller records exactly
one row per copy. :class:`ThreadExecutor` runs copies on threads; :class:`VirtualExecutor` runs them
at once on a virtual clock (each copy "takes" the seconds it passed to :meth:`VirtualExecutor.sleep`), so
tests and the ER experiment never wait.

Example::

    >>> vx = VirtualExecutor()
    >>> def call(replica):
    ...     vx.sleep({1: 5.0, 2: 1.0}[replica])      # copy 1 is slow, copy 2 is not
    ...     return f"copy {replica}"
    >>> events = []
    >>> race(call, HedgingPolicy(hedge_after=2.0), executor=vx,
    ...      on_start=lambda r: events.append(("start", r, vx.now())),
    ...      on_end=lambda r, status, exc: events.append((status, r, vx.now())))
    'copy 2'
    >>> events
    [('start', 1, 0.0), ('start', 2, 2.0), ('success', 2, 3.0), ('lost', 1, 3.0)]
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import heapq
import math
import threading
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

from forewarn.errors import ConfigurationError

T = TypeVar("T")

CopyStatus = Literal["success", "failure", "lost"]
"""How one copy ended, as :func:`race` reports it: it won, it failed, or another copy won first."""

OnStart = Callable[[int], object]
OnEnd = Callable[[int, CopyStatus, BaseException | None], object]


@dataclass(frozen=True, slots=True)
class HedgingPolicy:
    """How many copies of one call may run, and when they start.

    ``replicas`` copies start at once; with ``hedge_after`` (seconds), up to ``max_hedged`` more start one
    at a time, each after ``hedge_after`` seconds without a success (or at once when a copy fails).

    Example::

        >>> HedgingPolicy(replicas=2).copies, HedgingPolicy(hedge_after=0.5, max_hedged=2).copies
        (2, 3)
        >>> HedgingPolicy().redundant
        False
        >>> try:
        ...     HedgingPolicy(replicas=0)
        ... except ValueError as exc:
        ...     print(exc.setting)
        replicas
    """

    replicas: int = 1
    hedge_after: float | None = None
    max_hedged: int = 1

    def __post_init__(self) -> None:
        for name, low in (("replicas", 1), ("max_hedged", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 16:
                raise ConfigurationError(name, value, f"a whole number from {low} to 16, e.g. {name}=2")
        after = self.hedge_after
        if after is not None and (
            isinstance(after, bool) or not isinstance(after, (int, float)) or not 0 <= after < math.inf
        ):
            raise ConfigurationError(
                "hedge_after", after, "finite seconds >= 0 before another copy starts, e.g. hedge_after=2.0"
            )

    @property
    def copies(self) -> int:
        """The most copies one call may start."""
        return self.replicas + (self.max_hedged if self.hedge_after is not None else 0)

    @property
    def redundant(self) -> bool:
        """True when a call may run more than one copy."""
        return self.copies > 1


class CopyExecutor(Protocol):
    """Starts copies and waits for them; :class:`ThreadExecutor` and :class:`VirtualExecutor` are two."""

    def submit(self, fn: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        """Start ``fn()`` and return a future for its result."""
        ...

    def wait(
        self, futures: Collection[concurrent.futures.Future[Any]], timeout: float | None
    ) -> set[concurrent.futures.Future[Any]]:
        """Block until at least one of ``futures`` is done or ``timeout`` seconds pass; return the done ones."""
        ...


class ThreadExecutor:
    """Runs each copy on its own daemon thread, in a copy of the caller's context (Prefect's run context).

    A fresh thread per copy rather than a pool, for the reason ``timeout.call_with_timeout`` gives: an
    abandoned copy may hang forever, and must neither hold a pool slot nor block interpreter exit.
    """

    def submit(self, fn: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        context = contextvars.copy_context()

        def run() -> None:
            try:
                future.set_result(context.run(fn))
            except BaseException as exc:  # handed to the race, which records it
                future.set_exception(exc)

        threading.Thread(target=run, name="forewarn-copy", daemon=True).start()
        return future

    def wait(
        self, futures: Collection[concurrent.futures.Future[Any]], timeout: float | None
    ) -> set[concurrent.futures.Future[Any]]:
        done, _ = concurrent.futures.wait(futures, timeout, return_when=concurrent.futures.FIRST_COMPLETED)
        return done


class VirtualExecutor:
    """Runs copies at once on a virtual clock: a deterministic stand-in for threads, with no waiting.

    A copy's duration is the sum of what it passed to :meth:`sleep` while it ran; its future is done when
    the virtual clock reaches its start plus that duration. :meth:`wait` moves the clock to the first end
    or by ``timeout``, whichever comes first. Give the code under test ``sleep`` (and ``now`` as its clock).

    Example::

        >>> vx = VirtualExecutor()
        >>> slow = vx.submit(lambda: vx.sleep(3.0) or "done")
        >>> vx.wait([slow], timeout=1.0), vx.now()
        (set(), 1.0)
        >>> vx.wait([slow], timeout=None) == {slow}, vx.now(), slow.result()
        (True, 3.0, 'done')
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._elapsed: float | None = None  # seconds slept by the copy now running, None outside copies
        self._ends: list[tuple[float, int, concurrent.futures.Future[Any]]] = []
        self._pending: dict[int, tuple[bool, Any]] = {}
        self._sequence = 0

    def now(self) -> float:
        """Virtual seconds since the start, plus what copies and :meth:`sleep` outside copies added."""
        return self._now

    def sleep(self, seconds: float) -> None:
        """Inside a copy, add to its duration; outside, move the clock on (a retry's backoff)."""
        if self._elapsed is None:
            self._now += seconds
        else:
            self._elapsed += seconds

    def submit(self, fn: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        outer, self._elapsed = self._elapsed, 0.0
        try:
            outcome: tuple[bool, Any] = (True, fn())
        except Exception as exc:
            outcome = (False, exc)
        finally:
            duration, self._elapsed = self._elapsed, outer
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._sequence += 1
        self._pending[self._sequence] = outcome
        heapq.heappush(self._ends, (self._now + (duration or 0.0), self._sequence, future))
        return future

    def wait(
        self, futures: Collection[concurrent.futures.Future[Any]], timeout: float | None
    ) -> set[concurrent.futures.Future[Any]]:
        wanted = set(futures)
        done = {f for f in wanted if f.done()}
        if done:
            return done
        ends = sorted(e for e in self._ends if e[2] in wanted)
        if not ends:
            raise RuntimeError("VirtualExecutor.wait on futures it did not start")
        first, sequence, future = ends[0]
        if timeout is not None and first > self._now + timeout:
            self._now += timeout
            return set()
        self._now = max(self._now, first)
        self._ends.remove(ends[0])
        heapq.heapify(self._ends)
        succeeded, value = self._pending.pop(sequence)
        if succeeded:
            future.set_result(value)
        else:
            future.set_exception(value)
        return {future}


def _next_timeout(policy: HedgingPolicy, hedges_left: int) -> float | None:
    return policy.hedge_after if hedges_left > 0 else None


def race(
    copy: Callable[[int], T],
    policy: HedgingPolicy,
    *,
    on_start: OnStart,
    on_end: OnEnd,
    executor: CopyExecutor | None = None,
    hedge_on: Callable[[BaseException], bool] = lambda exc: True,
) -> T:
    """Run ``copy(replica)`` for replicas 1, 2, ... as ``policy`` says; return the first success.

    ``on_start(replica)`` is called just before a copy starts, and ``on_end(replica, status, error)`` once
    per started copy: ``"failure"`` with its error as it fails, then ``"success"`` for the winner and
    ``"lost"`` for every copy still running (abandoned: its thread runs on, its result is ignored), in
    replica order. A failure for which ``hedge_on(error)`` is false starts no new copy. Raises the last
    copy's error when every copy failed.
    """
    executor = executor or ThreadExecutor()
    pending: dict[concurrent.futures.Future[Any], int] = {}
    started = 0

    def start() -> None:
        nonlocal started
        started += 1
        replica = started
        on_start(replica)
        pending[executor.submit(lambda: copy(replica))] = replica

    for _ in range(policy.replicas):
        start()
    hedges_left = policy.max_hedged if policy.hedge_after is not None else 0
    last_error: BaseException | None = None
    while pending:
        done = executor.wait(list(pending), _next_timeout(policy, hedges_left))
        if not done:  # the delay passed with no success: hedge
            hedges_left -= 1
            start()
            continue
        for future in sorted(done, key=pending.__getitem__):
            replica = pending.pop(future)
            error = future.exception()
            if error is None:
                on_end(replica, "success", None)
                for loser in sorted(pending.values()):
                    on_end(loser, "lost", None)
                return future.result()  # type: ignore[no-any-return]
            on_end(replica, "failure", error)
            last_error = error
            if hedges_left > 0 and hedge_on(error):
                hedges_left -= 1
                start()
    assert last_error is not None  # at least one copy started, and none succeeded
    raise last_error


async def arace(
    copy: Callable[[int], Awaitable[T]],
    policy: HedgingPolicy,
    *,
    on_start: OnStart,
    on_end: OnEnd,
    hedge_on: Callable[[BaseException], bool] = lambda exc: True,
) -> T:
    """The async twin of :func:`race`: copies are tasks on the running loop, and losers are *cancelled*
    (and awaited) before they are reported ``"lost"``.

    Example::

        >>> async def call(replica):
        ...     if replica == 1:
        ...         await asyncio.Event().wait()           # hangs until cancelled
        ...     return replica
        >>> ends = []
        >>> asyncio.run(arace(call, HedgingPolicy(hedge_after=0), on_start=lambda r: None,
        ...                   on_end=lambda r, status, exc: ends.append((r, status))))
        2
        >>> ends
        [(2, 'success'), (1, 'lost')]
    """
    pending: dict[asyncio.Task[Any], int] = {}
    started = 0

    def start() -> None:
        nonlocal started
        started += 1
        replica = started
        on_start(replica)
        pending[asyncio.ensure_future(copy(replica))] = replica

    for _ in range(policy.replicas):
        start()
    hedges_left = policy.max_hedged if policy.hedge_after is not None else 0
    last_error: BaseException | None = None
    try:
        while pending:
            done, _ = await asyncio.wait(
                list(pending), timeout=_next_timeout(policy, hedges_left), return_when=asyncio.FIRST_COMPLETED
            )
            if not done:
                hedges_left -= 1
                start()
                continue
            for task in sorted(done, key=pending.__getitem__):
                replica = pending.pop(task)
                error = task.exception()
                if error is None:
                    await _cancel(pending)
                    on_end(replica, "success", None)
                    for loser in sorted(pending.values()):
                        on_end(loser, "lost", None)
                    pending.clear()
                    return task.result()  # type: ignore[no-any-return]
                on_end(replica, "failure", error)
                last_error = error
                if hedges_left > 0 and hedge_on(error):
                    hedges_left -= 1
                    start()
    finally:
        await _cancel(pending)  # the race itself was cancelled: take its copies with it
    assert last_error is not None
    raise last_error


async def _cancel(tasks: Collection[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)


__all__ = [
    "CopyExecutor",
    "CopyStatus",
    "HedgingPolicy",
    "ThreadExecutor",
    "VirtualExecutor",
    "arace",
    "race",
]
