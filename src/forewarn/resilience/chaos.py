"""Seeded fault injection: make your own flows fail on purpose, the same way every time.

A :class:`FaultInjector` decides, per call, whether to add latency, hang, or raise a
:class:`TransientFault` (retrying helps) or a :class:`PermanentFault` (retrying does not). The decision for
the *n*-th call of an operation is drawn from a random generator seeded with ``(seed, operation, n)``, so
each operation's sequence of faults is reproducible from the seed alone, however calls to different
operations interleave across threads or tasks.

The two fault types are plain subclasses of :class:`ConnectionError` and :class:`ValueError`, *not* of
:class:`~forewarn.errors.ForewarnError`: they stand in for a real service's errors, so they must be
classified and handled exactly as those would be.

Example::

    >>> injector = FaultInjector(seed=7, transient_rate=0.5)
    >>> outcomes = []
    >>> for _ in range(6):
    ...     try:
    ...         injector.maybe_fail("fetch")
    ...         outcomes.append("ok")
    ...     except TransientFault:
    ...         outcomes.append("fault")
    >>> again = FaultInjector(seed=7, transient_rate=0.5)
    >>> replay = []
    >>> for _ in range(6):
    ...     try:
    ...         again.maybe_fail("fetch")
    ...         replay.append("ok")
    ...     except TransientFault:
    ...         replay.append("fault")
    >>> outcomes == replay, injector.calls("fetch")
    (True, 6)
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import math
import random
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from forewarn.errors import ConfigurationError

F = TypeVar("F", bound=Callable[..., Any])

_RATE_FIELDS = ("transient_rate", "permanent_rate", "latency_rate", "hang_rate")
_SECONDS_FIELDS = ("latency_seconds", "hang_seconds")


class TransientFault(ConnectionError):
    """An injected fault that goes away when the call is retried, like a dropped connection.

    ``.operation`` and ``.call`` (1-based) say which call it hit.

    Example::

        >>> exc = TransientFault("fetch", 3)
        >>> print(exc)
        injected transient fault in 'fetch' (call 3)
        >>> isinstance(exc, ConnectionError), exc.call
        (True, 3)
    """

    def __init__(self, operation: str, call: int) -> None:
        self.operation = operation
        self.call = call
        ConnectionError.__init__(self, f"injected transient fault in {operation!r} (call {call})")

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuild from (operation, call) so the fault survives pickling, e.g. into a Prefect state.
        return (type(self), (self.operation, self.call))


class PermanentFault(ValueError):
    """An injected fault that retrying cannot fix, like rejected input.

    ``.operation`` and ``.call`` (1-based) say which call it hit.

    Example::

        >>> exc = PermanentFault("charge", 1)
        >>> print(exc)
        injected permanent fault in 'charge' (call 1)
        >>> isinstance(exc, ValueError)
        True
    """

    def __init__(self, operation: str, call: int) -> None:
        self.operation = operation
        self.call = call
        ValueError.__init__(self, f"injected permanent fault in {operation!r} (call {call})")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.operation, self.call))


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class FaultProfile:
    """How often, and how, calls to one operation fail. Rates are probabilities per call.

    - ``transient_rate``: raise :class:`TransientFault`.
    - ``permanent_rate``: raise :class:`PermanentFault` (``transient_rate + permanent_rate <= 1``).
    - ``latency_rate`` / ``latency_seconds``: sleep this long before the call goes on.
    - ``hang_rate`` / ``hang_seconds``: sleep much longer, to exercise ``timeout_seconds``.

    Latency, hang and fault are drawn independently, so one call can be slow *and* fail.

    Example::

        >>> FaultProfile(transient_rate=0.2).transient_rate
        0.2
        >>> try:
        ...     FaultProfile(transient_rate=1.5)
        ... except ValueError as exc:
        ...     print(exc.setting)
        FaultProfile.transient_rate
    """

    transient_rate: float = 0.0
    permanent_rate: float = 0.0
    latency_rate: float = 0.0
    latency_seconds: float = 0.0
    hang_rate: float = 0.0
    hang_seconds: float = 30.0

    def __post_init__(self) -> None:
        for name in _RATE_FIELDS:
            value = getattr(self, name)
            if not (_is_number(value) and 0.0 <= value <= 1.0):
                raise ConfigurationError(
                    f"FaultProfile.{name}",
                    value,
                    f"a probability between 0 and 1, e.g. FaultProfile({name}=0.1)",
                )
        for name in _SECONDS_FIELDS:
            value = getattr(self, name)
            if not (_is_number(value) and value >= 0.0 and math.isfinite(value)):
                raise ConfigurationError(
                    f"FaultProfile.{name}",
                    value,
                    f"a finite number of seconds >= 0, e.g. FaultProfile({name}=2.0)",
                )
        if self.transient_rate + self.permanent_rate > 1.0:
            raise ConfigurationError(
                "FaultProfile.permanent_rate",
                self.permanent_rate,
                f"at most 1 - transient_rate = {1.0 - self.transient_rate:g}, because a call fails at most "
                "once, e.g. FaultProfile(transient_rate=0.3, permanent_rate=0.1)",
            )


@dataclass(frozen=True, slots=True)
class _Decision:
    """What happens to one call: the pure result of the draws, before any sleeping or raising."""

    call: int
    latency: float
    hang: float
    fault: type[TransientFault] | type[PermanentFault] | None


class FaultInjector:
    """Injects the faults of a :class:`FaultProfile` into calls named by an operation string.

    ``seed`` (an int or str) makes every operation's fault sequence reproducible; ``None`` picks a random
    seed, kept in ``.seed`` so a surprising run can be replayed. The profile comes from ``profile``, with
    ``profile_fields`` (e.g. ``transient_rate=0.1``) applied on top; ``overrides`` maps operation names
    to their own profiles. ``sleep`` and ``asleep`` are injected so tests never really wait.

    Example::

        >>> slept = []
        >>> injector = FaultInjector(seed=1, latency_rate=1.0, latency_seconds=0.25, sleep=slept.append,
        ...                          overrides={"charge": FaultProfile(permanent_rate=1.0)})
        >>> injector.maybe_fail("fetch")
        >>> slept
        [0.25]
        >>> injector.maybe_fail("charge")
        Traceback (most recent call last):
        ...
        forewarn.resilience.chaos.PermanentFault: injected permanent fault in 'charge' (call 1)
    """

    def __init__(
        self,
        seed: int | str | None = None,
        profile: FaultProfile | None = None,
        *,
        sleep: Callable[[float], object] = time.sleep,
        asleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        overrides: Mapping[str, FaultProfile] | None = None,
        **profile_fields: float,
    ) -> None:
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, str))):
            raise ConfigurationError("FaultInjector.seed", seed, "an int, a str or None, e.g. seed=42")
        if profile is not None and not isinstance(profile, FaultProfile):
            raise ConfigurationError(
                "FaultInjector.profile",
                profile,
                "a FaultProfile, e.g. profile=FaultProfile(transient_rate=0.1)",
            )
        known = {f.name for f in dataclasses.fields(FaultProfile)}
        for name, value in profile_fields.items():
            if name not in known:
                raise ConfigurationError(
                    f"FaultInjector({name}=...)",
                    value,
                    f"one of the FaultProfile fields {', '.join(sorted(known))}",
                )
        base = profile if profile is not None else FaultProfile()
        self.seed: int | str = seed if seed is not None else random.SystemRandom().getrandbits(64)
        self.profile: FaultProfile = dataclasses.replace(base, **profile_fields) if profile_fields else base
        self.overrides: dict[str, FaultProfile] = dict(overrides or {})
        for operation, override in self.overrides.items():
            if not isinstance(override, FaultProfile):
                raise ConfigurationError(
                    f"FaultInjector.overrides[{operation!r}]",
                    override,
                    "a FaultProfile, e.g. overrides={'charge': FaultProfile(permanent_rate=0.5)}",
                )
        self._sleep = sleep
        self._asleep = asleep
        self._lock = threading.Lock()
        self._calls: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"FaultInjector(seed={self.seed!r}, profile={self.profile!r}, overrides={self.overrides!r})"

    def profile_for(self, operation: str) -> FaultProfile:
        """The profile that applies to ``operation``: its override if there is one, else the default.

        Example::

            >>> inj = FaultInjector(seed=0, overrides={"db": FaultProfile(hang_rate=1.0)})
            >>> inj.profile_for("db").hang_rate, inj.profile_for("api").hang_rate
            (1.0, 0.0)
        """
        return self.overrides.get(operation, self.profile)

    def calls(self, operation: str) -> int:
        """How many times :meth:`maybe_fail` (or :meth:`amaybe_fail`) ran for ``operation`` so far.

        Example::

            >>> inj = FaultInjector(seed=0)
            >>> inj.maybe_fail("fetch"); inj.calls("fetch"), inj.calls("other")
            (1, 0)
        """
        with self._lock:
            return self._calls.get(operation, 0)

    def _next_call(self, operation: str) -> int:
        with self._lock:
            call = self._calls.get(operation, 0) + 1
            self._calls[operation] = call
            return call

    def _decide(self, operation: str, call: int) -> _Decision:
        # A fresh generator per call: the draw for call n of an operation depends on nothing else.
        # random.Random hashes str seeds with SHA-512, so this is stable across processes and
        # PYTHONHASHSEED values; repr() keeps seed=1 and seed="1" apart.
        rng = random.Random(f"forewarn.chaos\x00{self.seed!r}\x00{operation}\x00{call}")
        profile = self.profile_for(operation)
        latency_draw, hang_draw, fault_draw = rng.random(), rng.random(), rng.random()
        fault: type[TransientFault] | type[PermanentFault] | None = None
        if fault_draw < profile.transient_rate:
            fault = TransientFault
        elif fault_draw < profile.transient_rate + profile.permanent_rate:
            fault = PermanentFault
        return _Decision(
            call=call,
            latency=profile.latency_seconds if latency_draw < profile.latency_rate else 0.0,
            hang=profile.hang_seconds if hang_draw < profile.hang_rate else 0.0,
            fault=fault,
        )

    def maybe_fail(self, operation: str) -> None:
        """Count one call of ``operation``; maybe sleep, maybe raise an injected fault.

        Sleeps ``latency_seconds`` and/or ``hang_seconds`` through the injected ``sleep`` when drawn, then
        raises :class:`TransientFault` or :class:`PermanentFault` when drawn, else returns ``None``.

        Example::

            >>> FaultInjector(seed=0, transient_rate=1.0).maybe_fail("fetch")
            Traceback (most recent call last):
            ...
            forewarn.resilience.chaos.TransientFault: injected transient fault in 'fetch' (call 1)
        """
        decision = self._decide(operation, self._next_call(operation))
        if decision.latency > 0:
            self._sleep(decision.latency)
        if decision.hang > 0:
            self._sleep(decision.hang)
        if decision.fault is not None:
            raise decision.fault(operation, decision.call)

    async def amaybe_fail(self, operation: str) -> None:
        """The async twin of :meth:`maybe_fail`: waits with the injected ``asleep`` (``asyncio.sleep``).

        Example::

            >>> import asyncio
            >>> asyncio.run(FaultInjector(seed=0).amaybe_fail("fetch")) is None
            True
        """
        decision = self._decide(operation, self._next_call(operation))
        if decision.latency > 0:
            await self._asleep(decision.latency)
        if decision.hang > 0:
            await self._asleep(decision.hang)
        if decision.fault is not None:
            raise decision.fault(operation, decision.call)


def inject_faults(injector: FaultInjector, operation: str | None = None) -> Callable[[F], F]:
    """Decorate a sync or async function so every call first runs ``injector.maybe_fail(operation)``.

    ``operation`` defaults to the function's ``__qualname__``.

    Example::

        >>> injector = FaultInjector(seed=0, transient_rate=1.0)
        >>> @inject_faults(injector)
        ... def fetch():
        ...     return "data"
        >>> fetch()
        Traceback (most recent call last):
        ...
        forewarn.resilience.chaos.TransientFault: injected transient fault in 'fetch' (call 1)
    """
    if not isinstance(injector, FaultInjector):
        raise ConfigurationError(
            "inject_faults(injector)", injector, "a FaultInjector, e.g. inject_faults(FaultInjector(seed=1))"
        )

    def decorate(fn: F) -> F:
        name = operation if operation is not None else fn.__qualname__

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                await injector.amaybe_fail(name)
                return await fn(*args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            injector.maybe_fail(name)
            return fn(*args, **kwargs)

        return cast(F, wrapper)

    return decorate


__all__ = ["FaultInjector", "FaultProfile", "PermanentFault", "TransientFault", "inject_faults"]
