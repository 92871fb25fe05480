"""Callers' times as pandas UTC timestamps, shared by the history cache and live scoring.

A naive time is refused: its zone is unknown, and a cutoff a few hours off would let a score see history
that had not ended yet.

Example::

    >>> from datetime import datetime, timezone
    >>> utc_timestamp(datetime(2026, 1, 1, tzinfo=timezone.utc))
    Timestamp('2026-01-01 00:00:00+0000', tz='UTC')
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd


def utc_timestamp(value: datetime | pd.Timestamp) -> pd.Timestamp:
    """``value`` as a UTC :class:`pandas.Timestamp`; a naive ``value`` raises ``ValueError`` naming it.

    Example::

        >>> utc_timestamp(pd.Timestamp("2026-01-01 12:00"))
        Traceback (most recent call last):
        ValueError: Timestamp('2026-01-01 12:00:00') is a naive time: pass a timezone-aware UTC time
    """
    ts = pd.Timestamp(value)
    if ts.tzinfo is None:
        raise ValueError(f"{value!r} is a naive time: pass a timezone-aware UTC time")
    return ts.tz_convert("UTC")


__all__ = ["utc_timestamp"]
