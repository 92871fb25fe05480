"""The usable range of forewarn's retry waits, shared by the settings and the resilience layer.

:class:`~forewarn.resilience.retry.RetryPolicy` and the ``FOREWARN_WAIT_*`` settings accept the same range.
A wait is slept in the worker process that runs the task, so it must be a finite number of seconds that
``time.sleep`` and ``asyncio.sleep`` accept: ``inf`` would fail the flow with ``OverflowError`` at its
first retry, and NaN compares with nothing. One day is the bound: a task that should wait longer between
attempts belongs on a schedule, not asleep in a worker. The growth factor is bounded too, because beyond
:data:`MAX_WAIT_EXP_BASE` the second wait already dwarfs the first; ``wait_initial`` and ``wait_max`` say
that more plainly. This module imports nothing, so the resilience layer stays free of pydantic.

Example::

    >>> MAX_WAIT_SECONDS, MAX_WAIT_EXP_BASE
    (86400.0, 100.0)
"""

from __future__ import annotations

MAX_WAIT_SECONDS = 86_400.0
"""Upper bound of ``wait_initial``, ``wait_max`` and ``wait_jitter``, in seconds (one day)."""

MAX_WAIT_EXP_BASE = 100.0
"""Upper bound of ``wait_exp_base``, the growth factor between waits (the lower bound is 1)."""

__all__ = ["MAX_WAIT_EXP_BASE", "MAX_WAIT_SECONDS"]
