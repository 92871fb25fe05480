"""UTC time, one definition: forewarn records, compares and prints timezone-aware UTC times only.

:func:`utc_now` is the default clock that every ``clock=`` parameter falls back to (tests pass their own);
:func:`utc` turns a caller's aware time into UTC and refuses a naive one, whose meaning is unknown.

Example::

    >>> from datetime import datetime, timedelta, timezone
    >>> utc(datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))).hour
    10
    >>> utc_now().tzinfo is timezone.utc
    True
"""

from __future__ import annotations

from datetime import datetime, timezone


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


__all__ = ["utc", "utc_now"]
