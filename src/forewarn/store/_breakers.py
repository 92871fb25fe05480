"""Circuit-breaker rows: a :class:`~forewarn.resilience.breaker_rules.BreakerSnapshot` in and out of
``circuit_breakers``, and the one atomic read-change-write of a row.

A row is text another program may have written: every column is checked on the way in, and a row that
does not hold a breaker state raises :class:`~forewarn.errors.StoreError` naming the breaker, the column and
how to clear it, never a bare ``ValueError``.

The change runs in one transaction that first makes sure the row exists (``INSERT ... ON CONFLICT DO
NOTHING``) and then locks it: PostgreSQL's ``SELECT ... FOR UPDATE``; on SQLite the transaction's
``BEGIN IMMEDIATE`` already holds the database's write lock. Two processes changing one breaker therefore
take turns, and each sees the other's change.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from forewarn.errors import StoreError
from forewarn.resilience.breaker_rules import (
    MAX_WINDOW_SIZE,
    OUTCOMES,
    STATES,
    BreakerSnapshot,
    Bucket,
)
from forewarn.store.schema import circuit_breakers
from forewarn.timeutil import utc_now

T = TypeVar("T")

MAX_BUCKETS = 100
"""More buckets than any time window keeps: a row with more was not written by forewarn."""

MAX_TRIALS = 1_000_000

_TABLE = circuit_breakers


def read_breaker(conn: sa.Connection, name: str, url: str) -> BreakerSnapshot:
    """The stored snapshot of breaker ``name`` (a new closed one if it has no row)."""
    row = conn.execute(sa.select(_TABLE).where(_TABLE.c.name == name)).mappings().first()
    return BreakerSnapshot() if row is None else snapshot_of(row, name, url)


def change_breaker(
    conn: sa.Connection, name: str, change: Callable[[BreakerSnapshot], tuple[BreakerSnapshot, T]], url: str
) -> tuple[BreakerSnapshot, T]:
    """Inside a write transaction: lock breaker ``name``'s row (creating it), apply ``change``, store the result."""
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(_TABLE)
    conn.execute(
        insert.values(**_columns(BreakerSnapshot()), version=0).on_conflict_do_nothing(index_elements=["name"]),
        {"name": name},
    )
    select = sa.select(_TABLE).where(_TABLE.c.name == name).with_for_update()
    row = conn.execute(select).mappings().one()
    current = snapshot_of(row, name, url)
    new, result = change(current)
    if new != current:
        conn.execute(
            sa.update(_TABLE).where(_TABLE.c.name == name).values(**_columns(new), version=_TABLE.c.version + 1)
        )
    return new, result


def snapshot_of(row: Any, name: str, url: str) -> BreakerSnapshot:
    """The snapshot a ``circuit_breakers`` row holds; :class:`~forewarn.errors.StoreError` if it holds none.

    Example::

        >>> row = {"state": "open", "since": 5.0, "trials": 0, "trial_successes": 0, "trial_at": None,
        ...        "outcomes": "", "buckets": "[]"}
        >>> snapshot_of(row, "payments", "sqlite://").since
        5.0
        >>> snapshot_of({**row, "state": "ajar"}, "payments", "sqlite://")
        Traceback (most recent call last):
        ...
        forewarn.errors.StoreError: sqlite://: circuit_breakers row 'payments' has state='ajar', not ...
    """
    state = row["state"]
    if state not in STATES:
        _bad(url, name, "state", state, "closed, open or half_open")
    trials = _count(url, name, "trials", row["trials"])
    successes = _count(url, name, "trial_successes", row["trial_successes"])
    if successes > trials:
        _bad(url, name, "trial_successes", successes, f"at most trials ({trials})")
    outcomes = row["outcomes"]
    if not isinstance(outcomes, str) or len(outcomes) > MAX_WINDOW_SIZE or not set(outcomes) <= OUTCOMES:
        _bad(url, name, "outcomes", outcomes, f"at most {MAX_WINDOW_SIZE} of the characters S, F, s, f")
    return BreakerSnapshot(
        state=state,
        since=_time(url, name, "since", row["since"]),
        trials=trials,
        trial_successes=successes,
        trial_at=_time(url, name, "trial_at", row["trial_at"]),
        outcomes=outcomes,
        buckets=_buckets(url, name, row["buckets"]),
    )


def _columns(snap: BreakerSnapshot) -> dict[str, Any]:
    return {
        "state": snap.state,
        "since": None if snap.since == -math.inf else snap.since,
        "trials": snap.trials,
        "trial_successes": snap.trial_successes,
        "trial_at": None if snap.trial_at == -math.inf else snap.trial_at,
        "outcomes": snap.outcomes,
        "buckets": json.dumps([list(b) for b in snap.buckets], separators=(",", ":")),
        "updated_at": utc_now(),
    }


def _count(url: str, name: str, column: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TRIALS:
        _bad(url, name, column, value, f"a whole number from 0 to {MAX_TRIALS}")
    assert isinstance(value, int)
    return value


def _time(url: str, name: str, column: str, value: object) -> float:
    if value is None:
        return -math.inf
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        _bad(url, name, column, value, "finite clock seconds or null")
    assert isinstance(value, (int, float))
    return float(value)


def _buckets(url: str, name: str, text: object) -> tuple[Bucket, ...]:
    expected = f"a JSON list of at most {MAX_BUCKETS} [index, calls, failures, slow] whole numbers"
    try:
        value = json.loads(text) if isinstance(text, str) and len(text) < 100_000 else None
    except ValueError:
        value = None
    if not isinstance(value, list) or len(value) > MAX_BUCKETS:
        _bad(url, name, "buckets", text, expected)
    buckets = []
    for item in value:  # type: ignore[union-attr]  # checked just above
        if (
            not isinstance(item, list)
            or len(item) != 4
            or not all(isinstance(n, int) and not isinstance(n, bool) and abs(n) < 2**53 for n in item)
            or not 0 <= item[2] <= item[1]
            or not 0 <= item[3] <= item[1]
        ):
            _bad(url, name, "buckets", text, expected + " (failures and slow at most calls)")
        buckets.append(Bucket(*item))
    return tuple(buckets)


def _bad(url: str, name: str, column: str, value: object, expected: str) -> None:
    shown = repr(value)
    shown = shown if len(shown) <= 40 else shown[:40] + "..."
    raise StoreError(
        f"{url}: circuit_breakers row {name[:80]!r} has {column}={shown}, not {expected}; it was not written by "
        f"forewarn. Delete the row (the breaker starts closed again) or point FOREWARN_DB_URL at another store",
        url=url,
    )


__all__ = ["change_breaker", "read_breaker", "snapshot_of"]
