"""The telemetry store: the only code that speaks SQL.

Owns: the schema (``schema``: every ``Table``), its upgrades (``migrations``) and :class:`TelemetryStore`,
the typed facade every other layer reads and writes through. May import: SQLAlchemy, pandas/numpy and the
shared modules at the package root. Never Prefect or scikit-learn.

Example::

    >>> from forewarn.store import TelemetryStore
    >>> with TelemetryStore("sqlite://") as store:
    ...     len(store.runs())
    0
"""

from forewarn.store.telemetry import TelemetryStore

__all__ = ["TelemetryStore"]
