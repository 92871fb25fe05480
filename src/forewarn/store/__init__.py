"""The telemetry store: the only code that speaks SQL.

Owns: the schema (``schema``: every ``Table``), its upgrades (``migrations``) and :class:`TelemetryStore`,
the typed facade every other layer reads and writes through, over private modules (``_engine``,
``_execute``, ``_deadline``, ``_timeouts``, ``_codec``, ``_rows``, ``_bulk``, ``_queries``, ``_frames``).
May import: SQLAlchemy, pandas/numpy, the shared modules at the package root,
:mod:`forewarn.resilience.retry` for its backoff formula, :mod:`forewarn.resilience.breaker` for
refusing calls while the database does not answer, and :mod:`forewarn.resilience.breaker_rules` for the
breaker snapshots it keeps in ``circuit_breakers`` (``breakers``). Never Prefect or scikit-learn.

Example::

    >>> from forewarn.store import TelemetryStore
    >>> with TelemetryStore("sqlite://") as store:
    ...     len(store.runs())
    0
"""

from forewarn.store._timeouts import StoreTimeouts
from forewarn.store.breakers import StoreBreakerState
from forewarn.store.spool import RunEnd, Spool, spool_directory
from forewarn.store.spool_drainer import SpoolDrainer, flush_pending
from forewarn.store.telemetry import TelemetryStore

__all__ = [
    "RunEnd",
    "Spool",
    "SpoolDrainer",
    "StoreBreakerState",
    "StoreTimeouts",
    "TelemetryStore",
    "flush_pending",
    "spool_directory",
]
