"""The simulated estate: a dozen recurring flows, their schedules, and the simulator's units of time.

Each :class:`Flow` is one line of :data:`CATALOGUE`: its schedule grid, the shared dependencies it needs,
whether the Sunday maintenance window or load peaks hurt it, its usual duration and input size, its source
systems, parameters and three task names. :func:`schedule` lays the first ``n_runs`` scheduled slots of
the flows on the time line. Times are int64 nanoseconds since the epoch, UTC.

Example::

    >>> [f.name for f in estate(13)][-1]
    'ingest-orders-2'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

SECOND = 10**9
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
WEEK = 7 * DAY

DEPENDENCIES: dict[str, float] = {
    # dependency: mean days between outages
    "warehouse-db": 6.0,
    "payments-api": 5.0,
    "erp-api": 8.0,
    "crm-api": 7.0,
    "feature-store": 9.0,
    "object-store": 12.0,
}

FLAKY_SOURCE = "legacy-sftp"
"""A source system whose runs fail more often (the ``flaky_source`` mechanism)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Flow:
    """One recurring job of the simulated estate."""

    name: str
    period: int  # ns between scheduled starts
    phase: int  # ns offset of the schedule grid from the epoch
    deps: tuple[str, ...]
    maintenance: bool  # fails in the Sunday maintenance window
    load_sensitive: bool
    duration_s: float  # median duration of a successful run
    duration_sigma: float
    rows: float  # median input rows
    sources: tuple[str, ...]  # first is the usual one
    params: Mapping[str, Any]
    tasks: tuple[str, str, str]


def _at(hour: int, minute: int = 0) -> int:
    return hour * HOUR + minute * MINUTE


# One flow per line, as a table.
# fmt: off
CATALOGUE: tuple[Flow, ...] = (
    Flow("ingest-orders", 15 * MINUTE, 2 * MINUTE, ("warehouse-db",), True, True, 150, 0.4, 20_000,
          ("shopify", "pos-export"), {"batch_size": 500, "full_refresh": False},
          ("extract", "clean", "load")),
    Flow("sync-payments", 15 * MINUTE, 7 * MINUTE, ("payments-api", "warehouse-db"), False, True, 90, 0.5,
          5_000, ("stripe", "adyen"), {"window_minutes": 15, "full_refresh": False},
          ("fetch_payments", "match", "write")),
    Flow("refresh-inventory", 15 * MINUTE, 11 * MINUTE, ("erp-api",), True, False, 200, 0.35, 50_000,
          ("sap", FLAKY_SOURCE), {"warehouses": ["eu", "us"], "full_refresh": False},
          ("extract", "diff", "publish")),
    Flow("score-fraud", HOUR, 5 * MINUTE, ("payments-api", "feature-store"), False, True, 420, 0.4, 80_000,
          ("stripe",), {"model": "gbm-v7", "threshold": 0.8}, ("load_features", "score", "alert")),
    Flow("export-crm", HOUR, 20 * MINUTE, ("crm-api",), False, False, 300, 0.5, 30_000,
          ("salesforce", FLAKY_SOURCE), {"objects": ["account", "contact"], "full_refresh": False},
          ("query", "transform", "upload")),
    Flow("build-dashboards", HOUR, 35 * MINUTE, ("warehouse-db",), True, True, 600, 0.35, 200_000,
          ("snowflake",), {"dashboards": "all", "full_refresh": False}, ("query", "aggregate", "render")),
    Flow("reconcile-ledger", HOUR, 50 * MINUTE, ("payments-api", "warehouse-db"), False, True, 480, 0.4,
          100_000, ("stripe", "adyen"), {"currency": "EUR", "full_refresh": False},
          ("fetch_ledger", "reconcile", "report")),
    Flow("sync-marketing", HOUR, 15 * MINUTE, ("crm-api", "object-store"), False, False, 240, 0.5, 15_000,
          ("hubspot", FLAKY_SOURCE), {"lists": 12, "full_refresh": False}, ("fetch", "merge", "push")),
    Flow("nightly-etl", DAY, _at(1, 30), ("warehouse-db", "object-store"), False, False, 2700, 0.3, 5e6,
          ("snowflake", "s3"), {"date": "yesterday", "full_refresh": False},
          ("extract", "transform", "load")),
    Flow("train-recommender", DAY, _at(3), ("feature-store", "object-store"), False, False, 3600, 0.35, 2e6,
          ("feature-store",), {"epochs": 5, "full_refresh": False}, ("load_data", "train", "register")),
    Flow("backup-warehouse", DAY, _at(2, 15), ("warehouse-db", "object-store"), True, False, 1800, 0.25, 1e7,
          ("snowflake",), {"retention_days": 30, "full_refresh": False}, ("snapshot", "copy", "verify")),
    Flow("weekly-report", WEEK, (4 * DAY + _at(6)) % WEEK, ("warehouse-db",), False, False, 1200, 0.3, 1e6,
          ("snowflake",), {"recipients": "finance", "full_refresh": False}, ("query", "render", "send")),
)
# fmt: on


def estate(n_flows: int) -> list[Flow]:
    """The first ``n_flows`` flows of the catalogue, cloned with suffixes ``-2``, ``-3`` beyond it."""
    out = []
    for i in range(n_flows):
        base = CATALOGUE[i % len(CATALOGUE)]
        copy = i // len(CATALOGUE)
        if copy == 0:
            out.append(base)
            continue
        phase = (base.phase + copy * 3 * MINUTE) % base.period
        out.append(dataclasses.replace(base, name=f"{base.name}-{copy + 1}", phase=phase))
    return out


def to_ns(value: datetime | str) -> int:
    """``value`` (a naive one read as UTC) in ns since the epoch."""
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.as_unit("ns").value)


def iso_text(ns: np.ndarray) -> np.ndarray:
    """ISO-8601 strings with millisecond precision and ``Z``; NaT (int64 min) becomes ``None``."""
    missing = ns == np.iinfo(np.int64).min
    text = np.datetime_as_string(ns.astype("datetime64[ns]").astype("datetime64[ms]"), unit="ms")
    out = np.char.add(text, "Z").astype(object)
    out[missing] = None
    return out


def schedule(flows: list[Flow], t0: int, t1: int, n_runs: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n_runs`` slots of the flows' schedules in ``[t0, t1)``, in time order: flow indexes, starts (ns)."""
    parts_flow, parts_sched = [], []
    for i, f in enumerate(flows):
        first = -((f.phase - t0) // f.period) * f.period + f.phase  # first grid point >= t0
        sched = np.arange(first, t1, f.period, dtype=np.int64)
        parts_flow.append(np.full(len(sched), i, dtype=np.int64))
        parts_sched.append(sched)
    flow_idx = np.concatenate(parts_flow)
    sched = np.concatenate(parts_sched)
    order = np.lexsort((flow_idx, sched))[:n_runs]
    return flow_idx[order], sched[order]


def weekday(ns: np.ndarray) -> np.ndarray:
    """The day of the week of each time, Monday = 0."""
    return (ns // DAY + 3) % 7  # 1970-01-01 was a Thursday


def hour_of_day(ns: np.ndarray) -> np.ndarray:
    """The hour (0-23, UTC) of each time."""
    return (ns // HOUR) % 24


def business_hours(ns: np.ndarray) -> np.ndarray:
    """Whether each time falls in business hours: Monday to Friday, 09:00-18:00 UTC."""
    hour = hour_of_day(ns)
    return (weekday(ns) < 5) & (hour >= 9) & (hour < 18)


def month_end(ns: np.ndarray) -> np.ndarray:
    """Whether each time falls on the last two days of its month."""
    cal = pd.DatetimeIndex(ns.astype("datetime64[ns]"))
    return np.asarray(cal.days_in_month - cal.day) < 2


def per_flow(flows: list[Flow], flow_idx: np.ndarray, attr: str) -> np.ndarray:
    """Each run's value of the flow attribute ``attr``, for runs of the flows ``flow_idx``."""
    return np.asarray([getattr(f, attr) for f in flows])[flow_idx]


__all__ = [
    "CATALOGUE",
    "DAY",
    "DEPENDENCIES",
    "FLAKY_SOURCE",
    "HOUR",
    "MINUTE",
    "SECOND",
    "WEEK",
    "Flow",
    "business_hours",
    "estate",
    "hour_of_day",
    "iso_text",
    "month_end",
    "per_flow",
    "schedule",
    "to_ns",
    "weekday",
]
