"""Wires shared circuit breakers to the telemetry store: the orchestration layer decides where state lives.

:func:`share_through_the_store` gives a ``CircuitBreaker(scope="shared")`` (the default) the
``circuit_breakers`` table of the store named by ``FOREWARN_DB_URL``, opened through the process's
telemetry recorder (one store per process and URL) on the breaker's first use. With telemetry disabled
(``FOREWARN_TELEMETRY_ENABLED=false``) there is no store, and the breaker keeps its state in memory.

``forewarn.task(circuit_breaker=...)`` calls it, so a breaker given to a task is shared by every process
using the same store without further setup.

Example::

    >>> from forewarn.resilience.breaker import CircuitBreaker
    >>> breaker = CircuitBreaker("payments-api")
    >>> share_through_the_store(breaker)
"""

from __future__ import annotations

from forewarn.masking import mask_url
from forewarn.orchestration.recorder import default_recorder
from forewarn.resilience.breaker import BreakerBackend, CircuitBreaker
from forewarn.settings import get_settings
from forewarn.store.breakers import StoreBreakerState


def store_breaker_state() -> BreakerBackend | None:
    """The shared breaker state in this process's telemetry store, opened on first use; None without telemetry.

    Example::

        >>> store_breaker_state().description.startswith("the telemetry store sqlite:///")
        True
    """
    recorder = default_recorder()
    if recorder is None:
        return None
    url = mask_url(get_settings().db_url)
    return StoreBreakerState(lambda: recorder.store, description=f"the telemetry store {url}")


def share_through_the_store(breaker: CircuitBreaker) -> None:
    """Make a ``scope="shared"`` breaker keep its state in the telemetry store (idempotent; a
    ``scope="process"`` breaker or one with its own ``backend`` stays as it is)."""
    breaker.share_state(store_breaker_state)


__all__ = ["share_through_the_store", "store_breaker_state"]
