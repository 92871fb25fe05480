"""Bulkheads and rate limits for ``forewarn.task``, through Prefect's global concurrency limits.

``@forewarn.task(concurrency="payments")`` holds a slot of the global concurrency limit ``payments`` for each
attempt (a bulkhead: at most N calls at once across every worker that uses the same Prefect API);
``rate_limit="payments-api"`` takes a slot of a limit with slot decay before each attempt (at most N calls per
second). Both are Prefect's own (:func:`prefect.concurrency.sync.concurrency`,
:func:`prefect.concurrency.sync.rate_limit` and their ``asyncio`` twins), not a limiter of forewarn's.

The limits are taken per *attempt*, after the circuit breaker allowed it: a retry waiting out its backoff
holds no slot, and a call refused by an open breaker takes no rate-limit token. The seconds an attempt spent
waiting are recorded as its ``wait_seconds``; an attempt refused (no slot within ``limit_timeout_seconds``,
Prefect's ``AcquireConcurrencySlotTimeoutError``) is recorded as a failed attempt with that error, retried
like any timeout, and does not count against the breaker. Create the limits first::

    prefect gcl create payments --limit 5
    prefect gcl create payments-api --limit 10 --slot-decay-per-second 10

With ``limit_strict=True`` (forewarn's default, unlike Prefect's) a limit that does not exist fails the
attempt with Prefect's ``ConcurrencySlotAcquisitionError`` instead of running unprotected.

Example::

    >>> gate, agate = limit_gates(concurrency="payments", rate_limit=None)
    >>> callable(gate) and callable(agate)
    True
    >>> limit_gates(concurrency=None, rate_limit=None)
    (None, None)
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from forewarn.errors import ConfigurationError
from forewarn.resilience.attempts import AsyncGate, Gate

LimitNames = str | Sequence[str]
"""One global concurrency limit's name, or several (all are taken)."""


def _names(option: str, value: LimitNames | None) -> list[str] | None:
    if value is None:
        return None
    names = [value] if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else None
    if not names or not all(isinstance(name, str) and name.strip() for name in names):
        raise ConfigurationError(
            option,
            value,
            f'the name of a Prefect global concurrency limit, or a list of them, e.g. {option}="payments"',
        )
    return names


def _check_timeout(value: Any) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < math.inf)
    ):
        raise ConfigurationError(
            "limit_timeout_seconds", value, "finite seconds > 0, or None to wait as long as it takes"
        )


def limit_gates(
    *,
    concurrency: LimitNames | None,
    rate_limit: LimitNames | None,
    timeout_seconds: float | None = None,
    strict: bool = True,
) -> tuple[Gate | None, AsyncGate | None]:
    """The sync and async gates taking Prefect's limits around one attempt; ``(None, None)`` without limits.

    Invalid names or timeouts raise :class:`~forewarn.errors.ConfigurationError` naming the option.
    """
    slots = _names("concurrency", concurrency)
    rates = _names("rate_limit", rate_limit)
    _check_timeout(timeout_seconds)
    if not isinstance(strict, bool):
        raise ConfigurationError("limit_strict", strict, "True or False")
    if slots is None and rates is None:
        return None, None

    @contextlib.contextmanager
    def gate() -> Iterator[None]:
        from prefect.concurrency import sync

        if rates is not None:
            sync.rate_limit(rates, timeout_seconds=timeout_seconds, strict=strict)
        if slots is None:
            yield
            return
        with sync.concurrency(slots, timeout_seconds=timeout_seconds, strict=strict):
            yield

    @contextlib.asynccontextmanager
    async def agate() -> AsyncIterator[None]:
        from prefect.concurrency import asyncio as concurrency_asyncio

        if rates is not None:
            await concurrency_asyncio.rate_limit(rates, timeout_seconds=timeout_seconds, strict=strict)
        if slots is None:
            yield
            return
        async with concurrency_asyncio.concurrency(slots, timeout_seconds=timeout_seconds, strict=strict):
            yield

    return gate, agate


__all__ = ["LimitNames", "limit_gates"]
