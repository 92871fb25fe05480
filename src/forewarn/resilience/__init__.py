"""Fault tolerance without Prefect or SQL: retry policy, circuit breaker, timeouts, the attempt loop, chaos.

Owns: :class:`RetryPolicy` (waits as pure functions), :class:`CircuitBreaker`, per-attempt timeouts,
:class:`HedgingPolicy` and the race of redundant copies, failover :class:`Provider` values,
:class:`AttemptRunner` (providers -> retries -> breaker -> timeout or race -> record -> fallback) and the
seeded :class:`FaultInjector`. May import: the shared modules at the package root (``errors``, ``records``,
``redaction``, ``settings``). Never Prefect, SQLAlchemy, pandas or scikit-learn: the Prefect layer wraps
these, and a user's own tests can use them bare.

Example::

    >>> from forewarn.resilience import RetryPolicy
    >>> RetryPolicy(attempts=3, wait_initial=1, wait_jitter=0).wait(2)
    2.0
"""

from forewarn.resilience.attempts import AttemptRunner, Hardening, current_hardening, hardened
from forewarn.resilience.breaker import CircuitBreaker
from forewarn.resilience.chaos import FaultInjector, FaultProfile, PermanentFault, TransientFault
from forewarn.resilience.failover import Provider
from forewarn.resilience.hedging import HedgingPolicy, ThreadExecutor, VirtualExecutor, arace, race
from forewarn.resilience.retry import RetryOn, RetryPolicy, set_testing
from forewarn.resilience.timeout import acall_with_timeout, call_with_timeout

__all__ = [
    "AttemptRunner",
    "CircuitBreaker",
    "FaultInjector",
    "FaultProfile",
    "Hardening",
    "HedgingPolicy",
    "PermanentFault",
    "Provider",
    "RetryOn",
    "RetryPolicy",
    "ThreadExecutor",
    "TransientFault",
    "VirtualExecutor",
    "acall_with_timeout",
    "arace",
    "call_with_timeout",
    "current_hardening",
    "hardened",
    "race",
    "set_testing",
]
