"""A circuit breaker: stop calling a service that keeps failing, and try it again later, in one process or many.

The rules (when it opens, half-opens and closes; the count, time and slow-call windows) are pure functions
in :mod:`forewarn.resilience.breaker_rules`. :class:`CircuitBreaker` applies them to a state kept by a
:class:`BreakerBackend`:

- ``scope="process"``: this process's memory (:class:`MemoryBackend`), as a plain in-process breaker.
- ``scope="shared"`` (the default): a state shared by processes. ``forewarn.task(circuit_breaker=...)``
  installs the telemetry store's ``circuit_breakers`` table (:meth:`CircuitBreaker.share_state`), so every
  process using the same store sees one breaker: opened by one, refused in all. ``backend=`` installs one
  directly. A shared breaker used bare, never given to a task nor a backend (as in this docstring), keeps
  its state in memory: there is nothing to share it through.

Reading a shared state does not cost a database round trip per call: the last state read is trusted for
``cache_seconds`` (``FOREWARN_BREAKER_CACHE_SECONDS``). Transitions (opening, a half-open trial, closing)
are written through at once, atomically; outcomes that change nothing are sent in a batch with the next
refresh. So another process notices an open breaker within ``cache_seconds``. If the shared state cannot be
reached, the breaker carries on with in-process state, logs that once, and shares again when it answers.

While open, :meth:`CircuitBreaker.before_call` raises :class:`~forewarn.errors.CircuitOpenError` without
touching the service. The caller reports each outcome with :meth:`~CircuitBreaker.record_success` or
:meth:`~CircuitBreaker.record_failure`. The clock is injected, so tests move time by hand.

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
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Literal, Protocol, TypeVar

from forewarn.errors import CircuitOpenError, ConfigurationError, StoreError
from forewarn.resilience.breaker_rules import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    BreakerConfig,
    BreakerMode,
    BreakerSnapshot,
    BreakerState,
    Report,
    admit,
    outcome_of,
    record,
    record_all,
    reset_snapshot,
    state_at,
    window_counts,
)

T = TypeVar("T")
logger = logging.getLogger("forewarn.breaker")

Scope = Literal["shared", "process"]
OpenListener = Callable[["CircuitBreaker"], object]
"""Called with the breaker as it opens (see ``CircuitBreaker.on_open``)."""
Change = Callable[[BreakerSnapshot], tuple[BreakerSnapshot, T]]

DEFAULT_CACHE_SECONDS = 1.0
"""How long a shared breaker trusts the state it last read, when ``FOREWARN_BREAKER_CACHE_SECONDS`` is unset."""

MIN_RETRY_SECONDS = 1.0
"""After the shared state failed, the shortest wait before it is tried again (a zero ``cache_seconds`` too)."""

MAX_PENDING = 1000
"""Outcomes a shared breaker keeps before it sends them, even within ``cache_seconds``."""


class BreakerBackend(Protocol):
    """Where breakers keep their state: a :class:`BreakerSnapshot` per breaker name.

    :meth:`change` must be atomic: ``change(current)`` returns the snapshot to store and a result, and no
    other change of the same name may interleave (a lock, a row lock, ``BEGIN IMMEDIATE``). A backend that
    cannot be reached raises :class:`~forewarn.errors.StoreError`.
    """

    description: str
    """Where the state lives, for log lines (``"the telemetry store sqlite:///…"``)."""

    def read(self, name: str) -> BreakerSnapshot:
        """The stored snapshot of ``name`` (a new closed one if there is none)."""
        ...

    def change(self, name: str, change: Change[T]) -> tuple[BreakerSnapshot, T]:
        """Apply ``change`` atomically; return the snapshot now stored and ``change``'s result."""
        ...


class MemoryBackend:
    """Breaker state in this process's memory, guarded by a lock.

    Example::

        >>> backend = MemoryBackend()
        >>> backend.change("db", lambda s: (s, "seen"))[1]
        'seen'
        >>> backend.read("db").state
        'closed'
    """

    description = "this process's memory"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, BreakerSnapshot] = {}

    def read(self, name: str) -> BreakerSnapshot:
        with self._lock:
            return self._states.get(name, BreakerSnapshot())

    def change(self, name: str, change: Change[T]) -> tuple[BreakerSnapshot, T]:
        with self._lock:
            new, result = change(self._states.get(name, BreakerSnapshot()))
            self._states[name] = new
            return new, result


StateFactory = Callable[[], "BreakerBackend | None"]
"""Opens the shared state for a breaker: called once per breaker and process, on first use."""


class CircuitBreaker:
    """A thread-safe circuit breaker for one service, named for its errors and its shared state.

    The default (``mode="consecutive"``): ``failure_threshold`` failures in a row open it; after
    ``reset_timeout`` seconds ``half_open_calls`` trial calls go through, and their success closes it.
    ``mode="count"`` and ``mode="time"`` open it on the share of failed (or slow) calls among the last
    ``window_size`` calls or the last ``window_seconds`` (see :mod:`forewarn.resilience.breaker_rules`).

    ``scope="shared"`` shares the state with every process using the same telemetry store (see the module
    docstring); ``scope="process"`` keeps it here. ``backend`` sets the state's home directly.
    ``clock`` returns seconds; shared state compares them between processes, so the default is
    ``time.time`` (wall clock; keep the machines' clocks synchronised), and ``time.monotonic`` for
    ``scope="process"``. ``on_open`` listeners (also appendable later to the ``on_open`` list) are called
    with the breaker when a change of this process opens it (closed or half-open -> open), after its lock
    is released.

    Rules worth knowing:

    - A failure reported while already open (a call that started before it opened) changes nothing.
    - In ``"consecutive"`` mode any success closes it (a call in flight shows the service works); in the
      rate modes only trial successes do.
    - A trial that never reports back within ``reset_timeout`` counts as lost: a new trial may go.

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
        mode: BreakerMode = "consecutive",
        window_size: int = 100,
        window_seconds: float = 60.0,
        failure_rate: float = 0.5,
        minimum_calls: int = 10,
        slow_call_seconds: float | None = None,
        slow_call_rate: float = 1.0,
        half_open_calls: int = 1,
        scope: Scope = "shared",
        cache_seconds: float | None = None,
        clock: Callable[[], float] | None = None,
        backend: BreakerBackend | None = None,
        on_open: Iterable[OpenListener] = (),
    ) -> None:
        if not isinstance(name, str) or not name or len(name) > 255:
            raise ConfigurationError(
                "CircuitBreaker.name",
                name,
                'a non-empty str of at most 255 characters, e.g. CircuitBreaker("payments")',
            )
        self.config = BreakerConfig(
            mode=mode,
            failure_threshold=failure_threshold,
            reset_timeout=reset_timeout,
            window_size=window_size,
            window_seconds=window_seconds,
            failure_rate=failure_rate,
            minimum_calls=minimum_calls,
            slow_call_seconds=slow_call_seconds,
            slow_call_rate=slow_call_rate,
            half_open_calls=half_open_calls,
        )
        if scope not in ("shared", "process"):
            raise ConfigurationError("CircuitBreaker.scope", scope, 'scope="shared" (the default) or scope="process"')
        if cache_seconds is not None and (
            isinstance(cache_seconds, bool)
            or not isinstance(cache_seconds, (int, float))
            or not 0 <= cache_seconds < math.inf
        ):
            raise ConfigurationError(
                "CircuitBreaker.cache_seconds", cache_seconds, "finite seconds >= 0, e.g. cache_seconds=1.0"
            )
        if clock is None:  # shared state compares times between processes: wall time; alone, monotonic
            clock = time.monotonic if scope == "process" else time.time
        if not callable(clock):
            raise ConfigurationError(
                "CircuitBreaker.clock", clock, "a function returning seconds, e.g. clock=time.time"
            )
        self.name = name
        self.scope: Scope = scope
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._explicit_backend = backend
        self._lock = threading.Lock()
        self._local = MemoryBackend()
        self._shared_factory: StateFactory | None = None
        self._shared: BreakerBackend | None = None
        self._shared_pid: int | None = None
        self._degraded = False
        self._retry_shared_at = -math.inf
        self._cached = BreakerSnapshot()  # the state last read or written
        self._known = self._cached  # that, with this process's outcomes since (self._pending) applied
        self._read_at = -math.inf
        self._pending: list[Report] = []
        self._trials_held = 0
        self.on_open: list[OpenListener] = list(on_open)
        self._opened = False  # set by _write when its change opened the breaker; heard outside the lock
        self.failures_at_open: int | None = None
        """Failures in the window when this process last opened the breaker (the window then starts afresh)."""

    # -- configuration, as attributes --------------------------------------------------------------

    @property
    def failure_threshold(self) -> int:
        """Failures in a row that open a ``"consecutive"`` breaker."""
        return self.config.failure_threshold

    @property
    def reset_timeout(self) -> float:
        """Seconds an open breaker waits before letting a trial call through."""
        return float(self.config.reset_timeout)

    def __repr__(self) -> str:
        config = self.config
        if config.mode == "consecutive":
            window = f"failure_threshold={config.failure_threshold}"
        elif config.mode == "count":
            window = f"mode='count', window_size={config.window_size}, failure_rate={config.failure_rate:g}"
        else:
            window = f"mode='time', window_seconds={config.window_seconds:g}, failure_rate={config.failure_rate:g}"
        return (
            f"CircuitBreaker({self.name!r}, state={self.state!r}, failures={self.failure_count}, {window}, "
            f"reset_timeout={self.reset_timeout:g})"
        )

    # -- reading -----------------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half_open"``, as of now (a shared state at most ``cache_seconds`` old).

        Example::

            >>> CircuitBreaker().state
            'closed'
        """
        with self._lock:
            now = self._clock()
            return state_at(self.config, self._current(now), now)

    @property
    def failure_count(self) -> int:
        """Failures in the window: in a row for ``"consecutive"``, else among the window's calls.

        Example::

            >>> breaker = CircuitBreaker()
            >>> breaker.record_failure(); breaker.failure_count
            1
        """
        with self._lock:
            now = self._clock()
            return window_counts(self.config, self._current(now), now)[1]

    @property
    def shared(self) -> bool:
        """True while the state is shared with other processes (False in-process or after a fallback).

        Example::

            >>> CircuitBreaker(scope="process").shared
            False
        """
        with self._lock:
            return self._backend() is not self._local

    # -- the protocol ------------------------------------------------------------------------------

    def before_call(self) -> None:
        """Ask to make a call: returns if allowed, raises :class:`~forewarn.errors.CircuitOpenError` if not.

        Refused while open (``retry_after`` = seconds until half-open) and while half-open with all its
        trials in flight (``retry_after`` = seconds until they count as lost). When half-open with a trial
        place free, this call becomes a trial; taking the place is written through, so across processes
        only ``half_open_calls`` trials go at a time.

        Example::

            >>> CircuitBreaker().before_call() is None
            True
        """
        with self._lock:
            now = self._clock()
            snap = self._current(now)
            nxt, retry_after = admit(self.config, snap, now)
            if retry_after is not None:
                raise CircuitOpenError(self.name, retry_after)
            if nxt is snap:  # closed: nothing to write
                return
            _, retry_after = self._write(now, lambda current: admit(self.config, current, now))
            if retry_after is not None:
                raise CircuitOpenError(self.name, retry_after)
            self._trials_held += 1

    def record_success(self, duration: float | None = None) -> None:
        """Report that a call succeeded (``duration`` seconds long, for the slow-call rate).

        Example::

            >>> breaker = CircuitBreaker(failure_threshold=1)
            >>> breaker.record_failure(); breaker.record_success(); breaker.state
            'closed'
        """
        self._report(failed=False, duration=duration)

    def record_failure(self, duration: float | None = None) -> None:
        """Report that a call failed: it counts toward opening; it reopens a half-open breaker.

        Example::

            >>> breaker = CircuitBreaker(failure_threshold=2)
            >>> breaker.record_failure(); breaker.state
            'closed'
            >>> breaker.record_failure(); breaker.state
            'open'
        """
        self._report(failed=True, duration=duration)

    def flush(self) -> None:
        """Send outcomes kept for the next refresh to the shared state now (at exit, in tests).

        Example::

            >>> CircuitBreaker().flush()
        """
        with self._lock:
            now = self._clock()
            if self._pending:
                self._write(now, lambda current: (current, None))
        self._notify_open()

    def reset(self) -> None:
        """Forget all history, for every process sharing the breaker: closed, empty window, no trial.

        Example::

            >>> breaker = CircuitBreaker(failure_threshold=1)
            >>> breaker.record_failure(); breaker.reset(); breaker.state
            'closed'
        """
        with self._lock:
            now = self._clock()
            self._pending.clear()
            self._known = self._cached
            self._trials_held = 0
            self._write(now, lambda _current: (reset_snapshot(now), None))

    def share_state(self, factory: StateFactory) -> None:
        """Keep a ``scope="shared"`` breaker's state where ``factory()`` says (``None`` from it: in memory).

        ``forewarn.task(circuit_breaker=...)`` calls this with the telemetry store's breaker table. A
        ``scope="process"`` breaker, or one given a ``backend``, ignores it. Calling it again with the same
        factory changes nothing.

        Example::

            >>> breaker = CircuitBreaker("db")
            >>> breaker.share_state(lambda: MemoryBackend()); breaker.shared
            True
        """
        if self.scope == "process" or self._explicit_backend is not None:
            return
        with self._lock:
            if factory is not self._shared_factory:
                self._shared_factory, self._shared_pid, self._shared = factory, None, None

    # -- internals ---------------------------------------------------------------------------------

    def _report(self, *, failed: bool, duration: float | None) -> None:
        with self._lock:
            now = self._clock()
            trial = self._trials_held > 0
            if trial:
                self._trials_held -= 1
            report = Report(now, outcome_of(self.config, failed=failed, duration=duration), trial)
            self._pending.append(report)
            self._known = record(self.config, self._known, report.at, report.outcome, trial=trial)
            if (
                trial
                or self._known.state != self._cached.state  # it would trip (or close): written through now
                or self._stale(now)
                or len(self._pending) >= MAX_PENDING
            ):
                self._write(now, lambda current: (current, None))
        self._notify_open()

    def _notify_open(self) -> None:
        """Tell the ``on_open`` listeners, outside the lock, if this process's last change opened the breaker.

        Only the process whose atomic change made the transition hears it, so an opening shared by eight
        processes is announced once. A listener that raises is logged; it never changes the breaker.
        """
        if not self._opened:
            return
        self._opened = False
        for listener in list(self.on_open):
            try:
                listener(self)
            except Exception:  # a listener must never change what the breaker decided
                logger.exception("circuit breaker %r: on_open listener %r failed", self.name, listener)

    def _stale(self, now: float) -> bool:
        # This breaker's own memory changes only through this breaker: read once, then always current.
        cache = math.inf if self._backend() is self._local else self._ttl()
        return not (0 <= now - self._read_at < cache)

    def _current(self, now: float) -> BreakerSnapshot:
        """The snapshot to decide on: the cached one while fresh, else read (sending pending outcomes)."""
        if not self._stale(now):
            return self._known
        if self._pending:
            return self._write(now, lambda current: (current, None))[0]
        backend = self._backend()
        try:
            snap = backend.read(self.name)
        except StoreError as exc:
            self._fall_back(backend, exc)
            snap = self._local.read(self.name)
        self._remember(snap, now)
        return snap

    def _write(self, now: float, change: Change[T]) -> tuple[BreakerSnapshot, T]:
        """Send pending outcomes, then ``change``, in one atomic change of the state; cache the result."""
        pending = list(self._pending)
        self._pending.clear()

        def apply(current: BreakerSnapshot) -> tuple[BreakerSnapshot, T]:
            snap, result = change(record_all(self.config, current, pending))
            # closed -> open, or a failed half-open trial re-opening it (a new "since")
            self._opened = snap.state == OPEN and (current.state != OPEN or snap.since != current.since)
            if self._opened and pending:  # opening clears the window: count it as it stood, the last call included
                before = record_all(self.config, current, pending[:-1])
                self.failures_at_open = window_counts(self.config, before, pending[-1].at)[1] + 1
            return snap, result

        backend = self._backend()
        try:
            snap, result = backend.change(self.name, apply)
        except StoreError as exc:
            self._fall_back(backend, exc)
            snap, result = self._local.change(self.name, apply)
        self._remember(snap, now)
        return snap, result

    def _remember(self, snap: BreakerSnapshot, now: float) -> None:
        """Cache ``snap`` as read at ``now``; this process has no outcomes it has not sent."""
        self._cached = self._known = snap
        self._read_at = now

    def _ttl(self) -> float:
        if self._cache_seconds is not None:
            return float(self._cache_seconds)
        try:
            from forewarn.settings import get_settings

            return float(get_settings().breaker_cache_seconds)
        except Exception:  # settings that do not load: the default, the error shows elsewhere
            return DEFAULT_CACHE_SECONDS

    def _backend(self) -> BreakerBackend:
        """The shared state, or this process's memory (``scope="process"``, none installed, or fallen back)."""
        if self.scope == "process":
            return self._local
        shared = self._resolve_shared()
        if shared is None or (self._degraded and not self._retry_shared(shared)):
            return self._local
        return shared

    def _resolve_shared(self) -> BreakerBackend | None:
        """The backend :meth:`share_state` installed, opened once per process (a forked child opens its own)."""
        if self._explicit_backend is not None:
            return self._explicit_backend
        factory = self._shared_factory
        if factory is None:
            return None
        pid = os.getpid()
        if self._shared_pid != pid:
            self._shared_pid, self._shared = pid, None
            try:
                self._shared = factory()
            except StoreError as exc:  # a factory should open lazily; if it did not, stay in-process
                self._fall_back(None, exc)
                self._degraded = False
        return self._shared

    def _retry_shared(self, shared: BreakerBackend) -> bool:
        """While fallen back: try the shared state again, at most once per cache period."""
        now = self._clock()
        if now < self._retry_shared_at:
            return False
        try:
            snap = shared.read(self.name)
        except StoreError:
            self._retry_shared_at = now + max(self._ttl(), MIN_RETRY_SECONDS)
            return False
        self._degraded = False
        self._pending.clear()  # they were applied to the local state, which stays local
        self._remember(snap, now)
        self._trials_held = 0
        logger.warning(
            "circuit breaker %r: %s answers again; its state is shared again (what this process saw meanwhile "
            "stays local)",
            self.name,
            shared.description,
        )
        return True

    def _fall_back(self, backend: BreakerBackend | None, exc: StoreError) -> None:
        """Carry on with in-process state, seeded with the last state seen; say so once per outage."""
        if self._degraded:
            return
        self._degraded = True
        self._retry_shared_at = self._clock() + max(self._ttl(), MIN_RETRY_SECONDS)
        seed = self._cached
        self._local.change(self.name, lambda _current: (seed, None))
        where = backend.description if backend is not None else "the telemetry store"
        logger.warning(
            "circuit breaker %r: cannot reach its shared state in %s (%s); using this process's own state "
            "until it answers",
            self.name,
            where,
            str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
        )


__all__ = [
    "CLOSED",
    "DEFAULT_CACHE_SECONDS",
    "HALF_OPEN",
    "OPEN",
    "BreakerBackend",
    "BreakerState",
    "CircuitBreaker",
    "MemoryBackend",
    "OpenListener",
    "Scope",
    "StateFactory",
]
