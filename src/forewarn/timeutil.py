"""UTC time, one definition: forewarn records, compares and prints timezone-aware UTC times only.

:func:`utc_now` is the default clock that every ``clock=`` parameter falls back to (tests pass their own);
:func:`utc` turns a caller's aware time into UTC and refuses a naive one, whose meaning is unknown, and
:func:`utc_timestamp` does the same for code that computes with pandas. A naive time is refused rather than
guessed: a cutoff a few hours off would let a score see history that had not ended yet.

Example::

    >>> from datetime import datetime, timedelta, timezone
    >>> utc(datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))).hour
    10
    >>> utc_now().tzinfo is timezone.utc
    True
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


def utc_now() -> datetime:
    """The default clock: the current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def utc(value: datetime | None = None) -> datetime:
    """``value`` as an aware UTC datetime (now when None); a naive value is refused.

    Example::

        >>> utc(datetime(2026, 3, 1, tzinfo=timezone.utc)).isoformat()
        '2026-03-01T00:00:00+00:00'
    """
    if value is None:
        return utc_now()
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"now={value!r} is naive: pass a timezone-aware time, e.g. datetime.now(timezone.utc)")
    return value.astimezone(timezone.utc)


def utc_timestamp(value: datetime | pd.Timestamp) -> pd.Timestamp:
    """``value`` as a UTC :class:`pandas.Timestamp`; a naive ``value`` raises ``ValueError`` naming it.

    pandas is imported on first use, so this module stays importable without it.

    Example::

        >>> utc_timestamp(datetime(2026, 1, 1, tzinfo=timezone.utc))
        Timestamp('2026-01-01 00:00:00+0000', tz='UTC')
        >>> utc_timestamp(datetime(2026, 1, 1, 12))
        Traceback (most recent call last):
        ValueError: datetime.datetime(2026, 1, 1, 12, 0) is a naive time: pass a timezone-aware UTC time
    """
    import pandas as pd

    ts = pd.Timestamp(value)
    if ts.tzinfo is None:
        raise ValueError(f"{value!r} is a naive time: pass a timezone-aware UTC time")
    return ts.tz_convert("UTC")


__all__ = ["utc", "utc_now", "utc_timestamp"]
