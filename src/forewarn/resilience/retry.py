"""Retry policies: when to try again, and how long to wait first.

A :class:`RetryPolicy` is a small immutable value. Its waits are a pure function of the attempt number, so
they can be checked without running anything; the retry loop itself lives in the task wrapper. Errors
that retrying cannot fix (bad input, 4xx responses) are not retried: see :func:`default_retry_on`.

Prefect's spelling maps onto the same value: ``wait_schedule`` is Prefect's ``retry_delay_seconds`` as a
list (the last wait repeats) and ``wait_jitter_factor`` is Prefect's ``retry_jitter_factor`` (a clamped
Poisson draw around each wait, :func:`clamped_poisson_seconds`).

For your own test suites, :func:`set_testing` turns every wait into ``0.0``, much like stamina's switch.

Example::

    >>> policy = RetryPolicy(attempts=4, wait_initial=1.0, wait_jitter=0.0)
    >>> [policy.wait(n) for n in range(1, policy.attempts)]
    [1.0, 2.0, 4.0]
    >>> policy.is_retryable(ConnectionError("reset")), policy.is_retryable(ValueError("bad id"))
    (True, False)
"""

from __future__ import annotations

import dataclasses
import math
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeAlias

from forewarn.errors import CircuitOpenError, ConfigurationError
from forewarn.limits import MAX_WAIT_EXP_BASE, MAX_WAIT_SECONDS
from forewarn.resilience.chaos import PermanentFault

if TYPE_CHECKING:
    from forewarn.settings import ForewarnSettings

RetryOn: TypeAlias = type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]
"""What a policy retries: an exception type, a tuple of types, or a predicate taking the exception."""

NON_RETRYABLE: tuple[type[BaseException], ...] = (
    ValueError,  # bad input; also forewarn's ConfigurationError
    TypeError,
    LookupError,  # KeyError, IndexError
    AttributeError,
    NotImplementedError,
    AssertionError,
    PermissionError,
    PermanentFault,  # already a ValueError; listed so the intent is explicit
    CircuitOpenError,  # the breaker refused the call; retrying at once would only be refused again
)
"""Exception types :func:`default_retry_on` never retries: trying again cannot fix them."""

RETRYABLE_CLIENT_STATUS: frozenset[int] = frozenset({408, 425, 429})
"""4xx status codes that *are* worth retrying: request timeout, too early, too many requests."""


def _status_code(exc: BaseException) -> int | None:
    """``exc.response.status_code`` if it is an int (httpx, requests and most SDKs), else None."""
    try:
        status = getattr(getattr(exc, "response", None), "status_code", None)
    except Exception:  # a broken property on somebody's response object is not our failure
        return None
    return status if isinstance(status, int) and not isinstance(status, bool) else None


def default_retry_on(exc: BaseException) -> bool:
    """Whether ``exc`` is worth retrying: transient failures yes, permanent ones no.

    Not retried:

    - anything that is not an :class:`Exception` (``KeyboardInterrupt``, ``SystemExit``, cancellation,
      Prefect's control-flow signals);
    - the types in :data:`NON_RETRYABLE` (``ValueError``, ``TypeError``, ``LookupError``,
      ``AttributeError``, ``NotImplementedError``, ``AssertionError``, ``PermissionError``,
      :class:`~forewarn.resilience.chaos.PermanentFault`, :class:`~forewarn.errors.CircuitOpenError`);
    - an error whose ``.response.status_code`` is 400-499, except 408, 425 and 429. The check is
      duck-typed, so httpx's and requests' HTTP errors work without importing either.

    Everything else is retried: ``ConnectionError``, ``TimeoutError`` (including
    :class:`~forewarn.errors.AttemptTimeoutError`), other ``OSError``, ``RuntimeError``, 5xx responses.

    Example::

        >>> class Response:
        ...     status_code = 404
        >>> class HTTPStatusError(Exception):
        ...     response = Response()
        >>> default_retry_on(TimeoutError()), default_retry_on(KeyError("id"))
        (True, False)
        >>> default_retry_on(HTTPStatusError())
        False
    """
    if not isinstance(exc, Exception):
        return False
    if isinstance(exc, NON_RETRYABLE):
        return False
    status = _status_code(exc)
    return not (status is not None and 400 <= status <= 499 and status not in RETRYABLE_CLIENT_STATUS)


# --- testing switch -------------------------------------------------------------------------------------

_testing_lock = threading.Lock()
_testing = False


class _TestingRestorer:
    """Returned by :func:`set_testing`; as a context manager it restores the previous value on exit."""

    __slots__ = ("_previous",)

    def __init__(self, previous: bool) -> None:
        self._previous = previous

    def __repr__(self) -> str:
        return f"<forewarn testing mode {is_testing()}; restores {self._previous} on exit>"

    def __enter__(self) -> _TestingRestorer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        global _testing
        with _testing_lock:
            _testing = self._previous


def set_testing(on: bool = True) -> _TestingRestorer:
    """Turn testing mode on (or off): while it is on, every :meth:`RetryPolicy.wait` is ``0.0``.

    Call it once (e.g. in a ``conftest.py``), or use the result as a context manager to restore the
    previous mode on exit. The mode is process-wide, for all threads.

    Example::

        >>> policy = RetryPolicy(wait_initial=5.0)
        >>> with set_testing(True):
        ...     policy.wait(3)
        0.0
        >>> is_testing()
        False
    """
    global _testing
    with _testing_lock:
        previous, _testing = _testing, bool(on)
    return _TestingRestorer(previous)


def is_testing() -> bool:
    """Whether testing mode (no waits between attempts) is on.

    Example::

        >>> is_testing()
        False
    """
    return _testing


# --- the policy -----------------------------------------------------------------------------------------


def backoff_seconds(
    attempt: int, *, initial: float, maximum: float, exp_base: float = 2.0, jitter: float = 0.0, u: float = 0.0
) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based): exponential backoff, capped.

    The one backoff formula in forewarn, a pure function of its arguments::

        backoff_seconds(n) = min(maximum, initial * exp_base ** (n - 1) + jitter * u)

    ``u`` is the jitter draw, uniform in ``[0, 1)`` (:meth:`RetryPolicy.wait` draws it). Unlike
    :meth:`RetryPolicy.wait` it ignores :func:`set_testing` and does not check ``attempt``.

    Example::

        >>> [backoff_seconds(n, initial=0.05, maximum=1.0) for n in range(1, 6)]
        [0.05, 0.1, 0.2, 0.4, 0.8]
        >>> backoff_seconds(2, initial=1.0, maximum=30.0, jitter=0.5, u=0.5)
        2.25
    """
    try:
        backoff = initial * float(exp_base) ** (attempt - 1)
    except OverflowError:  # base ** (n - 1) past the float range: the cap applies anyway
        backoff = math.inf if initial > 0 else 0.0
    if math.isnan(backoff):  # 0 * inf
        backoff = 0.0
    return float(min(maximum, backoff + jitter * u))


MAX_WAIT_SCHEDULE = 50
"""Most waits a ``wait_schedule`` may list: Prefect's limit for ``retry_delay_seconds``."""

MAX_JITTER_FACTOR = 100.0
"""Upper bound of ``wait_jitter_factor``: beyond it the lower clamp is already 0 and the upper one absurd."""


def _lower_clamp_multiple(k: float) -> float:
    # Prefect's lower_clamp_multiple: the mass between the lower bound and the median equals the mass
    # between the median and the upper bound k * average.
    if k >= 50:
        return 0.0
    return math.log(max(2**k / (2**k - 1), 1e-10), 2)


def clamped_poisson_seconds(average: float, clamping_factor: float, u: float) -> float:
    """Prefect's retry jitter (``retry_jitter_factor``): a Poisson inter-arrival time around ``average``, clamped.

    The same arithmetic as Prefect's ``prefect.utilities.math.clamped_poisson_interval``, with its uniform
    draw passed in as ``u`` in ``[0, 1)``, so it is a pure function. With ``k = 1 + clamping_factor``::

        upper = average * k
        lower = average * log2(2**k / (2**k - 1))          (0 when k >= 50)
        F(x)  = 1 - exp(-x / average)                      (the exponential CDF)
        wait  = -average * log(1 - (F(lower) + (F(upper) - F(lower)) * u))

    so ``lower <= wait <= upper`` and the median wait is ``average``. An ``average`` of 0 or less gives 0.

    Example::

        >>> clamped_poisson_seconds(10.0, 0.5, 0.0) >= 10.0 * math.log2(2**1.5 / (2**1.5 - 1)) - 1e-9
        True
        >>> round(clamped_poisson_seconds(10.0, 0.5, 1.0), 6)
        15.0
        >>> clamped_poisson_seconds(0.0, 0.5, 0.3)
        0.0
    """
    if average <= 0:
        return 0.0
    k = 1 + clamping_factor
    upper = average * k
    lower = max(0.0, average * _lower_clamp_multiple(k))
    upper_rv = 1 - math.exp(-upper / average)
    lower_rv = 1 - math.exp(-lower / average)
    drawn = lower_rv + (upper_rv - lower_rv) * u
    return -math.log(max(1 - drawn, 1e-10)) * average


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def _is_seconds(value: object) -> bool:
    """A wait ``time.sleep`` accepts: finite, from 0 to :data:`~forewarn.limits.MAX_WAIT_SECONDS` (NaN fails both)."""
    return _is_number(value) and 0 <= value <= MAX_WAIT_SECONDS  # type: ignore[operator]


def _is_exception_type(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, BaseException)


def _check_retry_on(value: object) -> None:
    if _is_exception_type(value):
        return
    if isinstance(value, tuple):
        if all(_is_exception_type(item) for item in value):
            return
    elif callable(value) and not isinstance(value, type):
        return
    raise ConfigurationError(
        "RetryPolicy.retry_on",
        value,
        "an exception type, a tuple of exception types, or a function taking the exception and returning "
        "a bool, e.g. RetryPolicy(retry_on=(ConnectionError, TimeoutError))",
    )


_FIELD_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "attempts": (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
        "a whole number >= 1 counting the first attempt too, e.g. RetryPolicy(attempts=4)",
    ),
    "wait_initial": (
        _is_seconds,
        f"finite seconds from 0 to {MAX_WAIT_SECONDS:g} (one day), e.g. RetryPolicy(wait_initial=0.5)",
    ),
    "wait_max": (
        _is_seconds,
        f"finite seconds from 0 to {MAX_WAIT_SECONDS:g} (one day), e.g. RetryPolicy(wait_max=30.0)",
    ),
    "wait_exp_base": (
        lambda v: _is_number(v) and 1 <= v <= MAX_WAIT_EXP_BASE,
        f"a number from 1 to {MAX_WAIT_EXP_BASE:g}, e.g. RetryPolicy(wait_exp_base=2.0)",
    ),
    "wait_jitter": (
        _is_seconds,
        f"finite seconds from 0 to {MAX_WAIT_SECONDS:g}, e.g. RetryPolicy(wait_jitter=0.5)",
    ),
    "wait_schedule": (
        lambda v: (
            v is None or (isinstance(v, tuple) and len(v) <= MAX_WAIT_SCHEDULE and all(_is_seconds(x) for x in v))
        ),
        f"None or a tuple of at most {MAX_WAIT_SCHEDULE} waits, each finite seconds from 0 to "
        f"{MAX_WAIT_SECONDS:g}, e.g. RetryPolicy(wait_schedule=(1.0, 10.0, 60.0))",
    ),
    "wait_jitter_factor": (
        lambda v: v is None or (_is_number(v) and 0 <= v <= MAX_JITTER_FACTOR),
        f"None or a number from 0 to {MAX_JITTER_FACTOR:g}, e.g. RetryPolicy(wait_jitter_factor=0.5)",
    ),
}


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many attempts a call gets, which errors are retried, and how long to wait between attempts.

    After failed attempt ``n`` (1-based) the wait, in seconds, is::

        wait(n) = min(wait_max, wait_initial * wait_exp_base ** (n - 1) + wait_jitter * U)

    with ``U`` uniform in ``[0, 1)``: exponential backoff with additive jitter, capped at ``wait_max``.

    Prefect's spelling replaces that formula, with Prefect's meaning. ``wait_schedule`` (Prefect's
    ``retry_delay_seconds``) lists the waits: ``wait(n) = wait_schedule[min(n, len) - 1]``, the last one
    repeated, 0 for an empty schedule; ``wait_initial``, ``wait_max``, ``wait_exp_base`` and
    ``wait_jitter`` are then unused. ``wait_jitter_factor`` (Prefect's ``retry_jitter_factor``) draws each
    wait ``w > 0`` from :func:`clamped_poisson_seconds` around ``w``: between about ``0.42 * w`` and
    ``(1 + factor) * w`` for a factor of 1, with median ``w``. No wait ever exceeds one day.
    ``attempts`` counts the first attempt, so ``attempts=4`` means up to 3 retries. ``retry_on`` is an
    exception type, a tuple of types, or a predicate; the default, :func:`default_retry_on`, skips
    permanent errors. Waits are finite seconds from 0 to one day and the growth factor is from 1 to 100
    (:mod:`forewarn.limits`); invalid values, ``inf`` and NaN included, raise
    :class:`~forewarn.errors.ConfigurationError` naming the field.

    Example::

        >>> policy = RetryPolicy(attempts=5, wait_initial=0.5, wait_max=3.0, wait_jitter=0.5)
        >>> [policy.wait(n, rand=lambda: 0.0) for n in range(1, 5)]
        [0.5, 1.0, 2.0, 3.0]
        >>> policy.wait(1, rand=lambda: 1.0)
        1.0
        >>> prefect_style = RetryPolicy(wait_schedule=(1.0, 10.0))
        >>> [prefect_style.wait(n) for n in range(1, 4)]
        [1.0, 10.0, 10.0]
    """

    attempts: int = 4
    wait_initial: float = 0.5
    wait_max: float = 30.0
    wait_exp_base: float = 2.0
    wait_jitter: float = 0.5
    retry_on: RetryOn = default_retry_on
    wait_schedule: tuple[float, ...] | None = None
    wait_jitter_factor: float | None = None

    def __post_init__(self) -> None:
        for name, (is_valid, expected) in _FIELD_RULES.items():
            value = getattr(self, name)
            if not is_valid(value):
                raise ConfigurationError(f"RetryPolicy.{name}", value, expected)
        _check_retry_on(self.retry_on)

    def wait(self, attempt: int, *, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based); see the class formula.

        ``rand`` supplies ``U``; pass ``lambda: 0.0`` for the wait without jitter. Always ``0.0`` while
        :func:`set_testing` is on.

        Example::

            >>> RetryPolicy(wait_initial=1.0, wait_exp_base=3.0, wait_jitter=0.0).wait(3)
            9.0
        """
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
            raise ConfigurationError(
                "RetryPolicy.wait(attempt)",
                attempt,
                "the 1-based number of the attempt that failed, e.g. wait(1)",
            )
        if _testing:
            return 0.0
        schedule = self.wait_schedule
        if schedule is not None:
            base = float(schedule[min(attempt, len(schedule)) - 1]) if schedule else 0.0
        else:
            base = backoff_seconds(
                attempt,
                initial=self.wait_initial,
                maximum=self.wait_max,
                exp_base=self.wait_exp_base,
                jitter=self.wait_jitter,
                u=rand(),
            )
        if self.wait_jitter_factor and base > 0:  # Prefect jitters only a positive wait, with a factor > 0
            base = clamped_poisson_seconds(base, self.wait_jitter_factor, rand())
        return min(base, MAX_WAIT_SECONDS)

    def is_retryable(self, exc: BaseException) -> bool:
        """Whether this policy retries ``exc``: ``isinstance`` for types and tuples, else the predicate.

        Example::

            >>> RetryPolicy(retry_on=TimeoutError).is_retryable(TimeoutError())
            True
            >>> RetryPolicy(retry_on=lambda exc: "again" in str(exc)).is_retryable(RuntimeError("try again"))
            True
        """
        retry_on = self.retry_on
        if isinstance(retry_on, (type, tuple)):
            return isinstance(exc, retry_on)
        return bool(retry_on(exc))

    def with_options(self, **changes: Any) -> RetryPolicy:
        """A new, validated policy with ``changes`` applied; ``self`` is unchanged.

        Example::

            >>> base = RetryPolicy()
            >>> base.with_options(attempts=2).attempts, base.attempts
            (2, 4)
        """
        _check_field_names(changes, "RetryPolicy.with_options")
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_settings(cls, settings: ForewarnSettings | None = None, **overrides: Any) -> RetryPolicy:
        """The policy the ``FOREWARN_*`` settings describe, with ``overrides`` applied on top.

        ``settings`` defaults to :func:`forewarn.settings.get_settings`; ``attempts`` is
        ``FOREWARN_RETRIES + 1``, the waits come from ``FOREWARN_WAIT_*``.

        Example::

            >>> from forewarn.settings import ForewarnSettings
            >>> RetryPolicy.from_settings(ForewarnSettings(retries=2), wait_jitter=0.0).attempts
            3
        """
        if settings is None:
            from forewarn.settings import get_settings

            settings = get_settings()
        _check_field_names(overrides, "RetryPolicy.from_settings")
        values: dict[str, Any] = {
            "attempts": settings.retries + 1,
            "wait_initial": settings.wait_initial,
            "wait_max": settings.wait_max,
            "wait_exp_base": settings.wait_exp_base,
            "wait_jitter": settings.wait_jitter,
        }
        return cls(**{**values, **overrides})


def _check_field_names(changes: dict[str, Any], where: str) -> None:
    names = [f.name for f in dataclasses.fields(RetryPolicy)]
    for name, value in changes.items():
        if name not in names:
            raise ConfigurationError(f"{where}({name}=...)", value, f"one of the fields {', '.join(names)}")


__all__ = [
    "MAX_JITTER_FACTOR",
    "MAX_WAIT_SCHEDULE",
    "NON_RETRYABLE",
    "RETRYABLE_CLIENT_STATUS",
    "RetryOn",
    "RetryPolicy",
    "backoff_seconds",
    "clamped_poisson_seconds",
    "default_retry_on",
    "is_testing",
    "set_testing",
]
