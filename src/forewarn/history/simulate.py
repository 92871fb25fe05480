"""Simulated run histories with documented failure mechanisms, and their parsing into runs frames.

:func:`simulate_history` writes the kind of history a scheduler export holds: a dozen recurring flows on
cron-like schedules (every 15 minutes, hourly, nightly, weekly), jittered and sometimes late starts,
log-normal durations, and failures produced by mechanisms that real schedulers' histories also show. The
output is in the **import CSV format** (``run_id, flow_name, deployment, flow_version, scheduled_start,
start_time, end_time, state, parameters, feature_*``), so the same file exercises the importer, the feature
builder and the model end to end. :func:`history_to_runs_frame` parses that format into the runs-frame
contract that :mod:`forewarn.learning.features` reads, with the importer's rules (:mod:`forewarn.history.importer`): a
simulated history is checked exactly as a user's CSV is.

Failure mechanisms (each run draws each mechanism independently; the first one that fires, in this order,
is its cause):

1. **Dependency outages** (``dependency_outage``). Six shared dependencies (``warehouse-db``,
   ``payments-api``, ``erp-api``, ``crm-api``, ``feature-store``, ``object-store``) go down every few days
   for 15 minutes to 8 hours (log-normal, median 1.5 h). A run that starts during an outage of a dependency
   of its flow fails with probability 0.92, quickly (connection errors). Failures cluster in time and
   across the flows that share the dependency.
2. **Maintenance windows** (``maintenance``). Every Sunday 02:00-04:00 UTC the database is patched; runs of
   the flows marked maintenance-sensitive that start inside the window fail with probability 0.75.
3. **Bad deploys** (``bad_deploy``). Each flow gets a new ``flow_version`` about weekly, on a weekday
   between 10:00 and 16:00 UTC. One deploy in five is broken: its runs fail with probability 0.85 until a
   hotfix version follows (log-normal, median 10 h later).
4. **Input-size limits** (``input_size``). ``feature_input_rows`` is log-normal per flow, larger at
   month-end, for manual full refreshes and for backfills, with rare spikes. Above a flow-specific limit
   (about 2.5x the flow's median) a run fails with probability 0.9, half of them as ``TIMEDOUT``.
5. **Load peaks** (``load``). Load-sensitive flows fail 4 points more often in business hours (Mon-Fri
   09:00-18:00 UTC) and 8 points more often on the last two days of a month.

Plus a flaky source system (``legacy-sftp`` runs fail 4 % more often, ``flaky_source``) and a 1 % base rate
of random failure (``random``). About 30 % of failures are ``CRASHED`` or ``TIMEDOUT`` rather than
``FAILED``; 0.6 % of runs are ``CANCELLED`` (neither failure nor success); runs still going at the export
time are ``RUNNING`` with no ``end_time``. The overall failure rate is about 8 %.

Example::

    >>> df = simulate_history(500, seed=1)
    >>> list(df.columns[:5])
    ['run_id', 'flow_name', 'deployment', 'flow_version', 'scheduled_start']
    >>> runs = history_to_runs_frame(df)
    >>> str(runs["start_time"].dtype)
    'datetime64[ns, UTC]'
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forewarn.errors import ConfigurationError
from forewarn.history.importer import ATTEMPT_OPTIONAL, ATTEMPT_REQUIRED, RUN_REQUIRED, check_attempts, check_runs
from forewarn.records import AttemptOutcome, RunState, parameters_hash

SECOND = 10**9
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
WEEK = 7 * DAY
# 1970-01-01 was a Thursday: Monday 00:00 of the epoch week is 3 days before it.
_MONDAY_OFFSET = 3 * DAY

RUN_COLUMNS: tuple[str, ...] = (
    "run_id",
    "flow_name",
    "deployment",
    "flow_version",
    "scheduled_start",
    "start_time",
    "end_time",
    "state",
    "parameters",
)
"""Every column of the run import format, in the order :func:`simulate_history` writes them; its
``feature_<name>`` columns follow. (:data:`forewarn.history.importer.RUN_REQUIRED` and ``RUN_OPTIONAL`` say which
are required.)"""

REQUIRED_RUN_COLUMNS: tuple[str, ...] = RUN_REQUIRED
"""Import columns that must be present: :data:`forewarn.history.importer.RUN_REQUIRED`."""

ATTEMPT_COLUMNS: tuple[str, ...] = (*ATTEMPT_REQUIRED, *ATTEMPT_OPTIONAL)
"""Columns of the attempts import format, in order (:func:`simulated_attempts` writes :class:`AttemptOutcome`
values as ``state``)."""

FAILURE_CAUSES: tuple[str, ...] = (
    "dependency_outage",
    "maintenance",
    "bad_deploy",
    "input_size",
    "load",
    "flaky_source",
    "random",
)
"""The simulator's failure mechanisms in priority order (see the module docstring)."""

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


@dataclasses.dataclass(frozen=True, slots=True)
class _Flow:
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
_CATALOGUE: tuple[_Flow, ...] = (
    _Flow("ingest-orders", 15 * MINUTE, 2 * MINUTE, ("warehouse-db",), True, True, 150, 0.4, 20_000,
          ("shopify", "pos-export"), {"batch_size": 500, "full_refresh": False},
          ("extract", "clean", "load")),
    _Flow("sync-payments", 15 * MINUTE, 7 * MINUTE, ("payments-api", "warehouse-db"), False, True, 90, 0.5,
          5_000, ("stripe", "adyen"), {"window_minutes": 15, "full_refresh": False},
          ("fetch_payments", "match", "write")),
    _Flow("refresh-inventory", 15 * MINUTE, 11 * MINUTE, ("erp-api",), True, False, 200, 0.35, 50_000,
          ("sap", FLAKY_SOURCE), {"warehouses": ["eu", "us"], "full_refresh": False},
          ("extract", "diff", "publish")),
    _Flow("score-fraud", HOUR, 5 * MINUTE, ("payments-api", "feature-store"), False, True, 420, 0.4, 80_000,
          ("stripe",), {"model": "gbm-v7", "threshold": 0.8}, ("load_features", "score", "alert")),
    _Flow("export-crm", HOUR, 20 * MINUTE, ("crm-api",), False, False, 300, 0.5, 30_000,
          ("salesforce", FLAKY_SOURCE), {"objects": ["account", "contact"], "full_refresh": False},
          ("query", "transform", "upload")),
    _Flow("build-dashboards", HOUR, 35 * MINUTE, ("warehouse-db",), True, True, 600, 0.35, 200_000,
          ("snowflake",), {"dashboards": "all", "full_refresh": False}, ("query", "aggregate", "render")),
    _Flow("reconcile-ledger", HOUR, 50 * MINUTE, ("payments-api", "warehouse-db"), False, True, 480, 0.4,
          100_000, ("stripe", "adyen"), {"currency": "EUR", "full_refresh": False},
          ("fetch_ledger", "reconcile", "report")),
    _Flow("sync-marketing", HOUR, 15 * MINUTE, ("crm-api", "object-store"), False, False, 240, 0.5, 15_000,
          ("hubspot", FLAKY_SOURCE), {"lists": 12, "full_refresh": False}, ("fetch", "merge", "push")),
    _Flow("nightly-etl", DAY, _at(1, 30), ("warehouse-db", "object-store"), False, False, 2700, 0.3, 5e6,
          ("snowflake", "s3"), {"date": "yesterday", "full_refresh": False},
          ("extract", "transform", "load")),
    _Flow("train-recommender", DAY, _at(3), ("feature-store", "object-store"), False, False, 3600, 0.35, 2e6,
          ("feature-store",), {"epochs": 5, "full_refresh": False}, ("load_data", "train", "register")),
    _Flow("backup-warehouse", DAY, _at(2, 15), ("warehouse-db", "object-store"), True, False, 1800, 0.25, 1e7,
          ("snowflake",), {"retention_days": 30, "full_refresh": False}, ("snapshot", "copy", "verify")),
    _Flow("weekly-report", WEEK, (4 * DAY + _at(6)) % WEEK, ("warehouse-db",), False, False, 1200, 0.3, 1e6,
          ("snowflake",), {"recipients": "finance", "full_refresh": False}, ("query", "render", "send")),
)
# fmt: on


def _flows(n_flows: int) -> list[_Flow]:
    """The first ``n_flows`` flows of the catalogue, cloned with suffixes ``-2``, ``-3`` beyond it."""
    out = []
    for i in range(n_flows):
        base = _CATALOGUE[i % len(_CATALOGUE)]
        copy = i // len(_CATALOGUE)
        if copy == 0:
            out.append(base)
            continue
        phase = (base.phase + copy * 3 * MINUTE) % base.period
        out.append(dataclasses.replace(base, name=f"{base.name}-{copy + 1}", phase=phase))
    return out


def _to_ns(value: datetime | str) -> int:
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.as_unit("ns").value)


def _iso(ns: np.ndarray) -> np.ndarray:
    """ISO-8601 strings with millisecond precision and ``Z``; NaT (int64 min) becomes ``None``."""
    missing = ns == np.iinfo(np.int64).min
    text = np.datetime_as_string(ns.astype("datetime64[ns]").astype("datetime64[ms]"), unit="ms")
    out = np.char.add(text, "Z").astype(object)
    out[missing] = None
    return out


def _uuids(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` random version-4 UUID strings, drawn from ``rng``."""
    nibbles = rng.integers(0, 16, size=(n, 32), dtype=np.uint8)
    nibbles[:, 12] = 4  # version 4
    nibbles[:, 16] = 8 + (nibbles[:, 16] & 3)  # RFC 4122 variant
    hexes = np.frombuffer(b"0123456789abcdef", dtype="S1")[nibbles]
    dash = np.full((n, 1), b"-", dtype="S1")
    parts = [hexes[:, :8], dash, hexes[:, 8:12], dash, hexes[:, 12:16], dash, hexes[:, 16:20], dash, hexes[:, 20:]]
    return np.ascontiguousarray(np.hstack(parts)).view("S36").ravel().astype(str)


def _outages(rng: np.random.Generator, t0: int, t1: int, mean_gap_days: float) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping outage intervals ``[start, end)`` of one dependency between ``t0`` and ``t1``."""
    n = int((t1 - t0) / (mean_gap_days * DAY) * 1.5) + 5
    gaps = rng.exponential(mean_gap_days * DAY, n)
    lengths = np.clip(rng.lognormal(math.log(1.5 * HOUR), 0.7, n), 15 * MINUTE, 8 * HOUR)
    starts = t0 + np.cumsum(gaps + np.concatenate([[0.0], lengths[:-1]]))
    return starts.astype(np.int64), (starts + lengths).astype(np.int64)


def _in_intervals(t: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    idx = np.searchsorted(starts, t, side="right") - 1
    ok = idx >= 0
    inside = np.zeros(len(t), dtype=bool)
    inside[ok] = t[ok] < ends[idx[ok]]
    return inside


def _deploys(rng: np.random.Generator, t0: int, t1: int) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Version change times, version names and broken flags of one flow (index 0: the initial version)."""
    times = [np.iinfo(np.int64).min]
    names = ["1.0.0"]
    broken = [False]
    minor, patch = 0, 0
    t = t0 + int(rng.exponential(3 * DAY))
    while t < t1:
        day = t // DAY
        dow = (day + 3) % 7
        if dow >= 5:  # weekend: ship on Monday
            day += 7 - dow
        t = day * DAY + int(rng.uniform(10, 16) * HOUR)
        minor, patch = minor + 1, 0
        times.append(t)
        names.append(f"1.{minor}.{patch}")
        bad = bool(rng.random() < 0.2)
        broken.append(bad)
        if bad:  # a hotfix follows
            t += int(np.clip(rng.lognormal(math.log(10 * HOUR), 0.6), HOUR, 3 * DAY))
            patch += 1
            times.append(t)
            names.append(f"1.{minor}.{patch}")
            broken.append(False)
        t += int(rng.exponential(7 * DAY)) + HOUR
    return np.asarray(times, dtype=np.int64), names, np.asarray(broken)


def simulate_history(
    n_runs: int,
    *,
    seed: int = 0,
    start: datetime | str = "2026-01-01T00:00:00Z",
    n_flows: int = 12,
    include_cause: bool = False,
) -> pd.DataFrame:
    """Simulate ``n_runs`` flow runs of ``n_flows`` recurring flows, in the history import format.

    Runs are the first ``n_runs`` scheduled slots after ``start`` (a naive ``start`` is read as UTC), so the
    time span grows with ``n_runs`` (12 flows make about 410 runs a day). The same ``seed`` and arguments
    always give the same frame. With ``include_cause=True`` a ``failure_cause`` column names the mechanism
    behind each failure (one of :data:`FAILURE_CAUSES`, empty otherwise); it is not an import column, so
    drop it before :func:`history_to_runs_frame`.

    Example::

        >>> df = simulate_history(2_000, seed=3)
        >>> len(df), df["run_id"].is_unique
        (2000, True)
        >>> sorted(df["state"].unique())[:3]
        ['CANCELLED', 'COMPLETED', 'CRASHED']
    """
    if not isinstance(n_runs, (int, np.integer)) or isinstance(n_runs, bool) or n_runs < 0:
        raise ConfigurationError("n_runs", n_runs, "a whole number >= 0, e.g. simulate_history(10_000)")
    if not isinstance(n_flows, (int, np.integer)) or isinstance(n_flows, bool) or n_flows < 1:
        raise ConfigurationError("n_flows", n_flows, "a whole number >= 1, e.g. n_flows=12")
    rng = np.random.default_rng(seed)
    flows = _flows(int(n_flows))
    t0 = _to_ns(start)
    rate_per_ns = sum(1.0 / f.period for f in flows)
    span = int(n_runs / rate_per_ns * 1.05) + 2 * DAY
    t1 = t0 + span

    # --- schedules ------------------------------------------------------------------------------------
    parts_flow, parts_sched = [], []
    for i, f in enumerate(flows):
        first = -((f.phase - t0) // f.period) * f.period + f.phase  # first grid point >= t0
        sched = np.arange(first, t1, f.period, dtype=np.int64)
        parts_flow.append(np.full(len(sched), i, dtype=np.int64))
        parts_sched.append(sched)
    flow_idx = np.concatenate(parts_flow)
    sched = np.concatenate(parts_sched)
    order = np.lexsort((flow_idx, sched))[:n_runs]
    flow_idx, sched = flow_idx[order], sched[order]
    n = len(sched)

    def per_flow(attr: str) -> np.ndarray:
        return np.asarray([getattr(f, attr) for f in flows])[flow_idx]

    hour = (sched // HOUR) % 24
    dow = (sched // DAY + 3) % 7  # Monday = 0
    business = (dow < 5) & (hour >= 9) & (hour < 18)
    cal = pd.DatetimeIndex(sched.astype("datetime64[ns]"))
    month_end = np.asarray(cal.days_in_month - cal.day) < 2
    load_sensitive = per_flow("load_sensitive").astype(bool)

    # --- who triggered the run, with which parameters and input -------------------------------------
    u = rng.random(n)
    triggered = np.where(u < 0.94, "schedule", np.where(u < 0.99, "manual", "backfill")).astype(object)
    manual, backfill = triggered == "manual", triggered == "backfill"
    full_refresh = backfill | (manual & (rng.random(n) < 0.4))
    n_sources = np.asarray([len(f.sources) for f in flows])[flow_idx]
    alt_source = (n_sources > 1) & (rng.random(n) < 0.3)
    source_table = np.asarray([f.sources[0] for f in flows] + [f.sources[-1] for f in flows], dtype=object)
    source = source_table[flow_idx + len(flows) * alt_source]

    rows_med = per_flow("rows").astype(float)
    growth = np.where(business & load_sensitive, 1.2, 1.0) * np.where(month_end, 1.6, 1.0)
    growth = growth * np.where(full_refresh, 2.0, 1.0)
    growth = growth * np.where(rng.random(n) < 0.01, 3.0, 1.0)
    input_rows = np.round(rows_med * growth * rng.lognormal(0.0, 0.3, n)).astype(np.int64)
    row_limit = rows_med * math.exp(0.3 * 3.0)

    param_json = []
    for f in flows:
        base = dict(f.params)
        param_json.append(json.dumps(base, sort_keys=True))
        param_json.append(json.dumps({**base, "full_refresh": True}, sort_keys=True))
    parameters = np.asarray(param_json, dtype=object)[2 * flow_idx + full_refresh]
    deployment = np.asarray([f"{f.name}/prod" for f in flows], dtype=object)[flow_idx]
    adhoc = manual & (rng.random(n) < 0.5)
    deployment[adhoc] = None

    # --- start times: jitter, sometimes late (more often under load) ---------------------------------
    jitter = rng.lognormal(math.log(3.0), 0.8, n) * SECOND
    late_p = np.where(business, 0.05, 0.02)
    late = rng.random(n) < late_p
    jitter = jitter + late * rng.exponential(4 * MINUTE, n)
    start_t = sched + jitter.astype(np.int64)

    # --- versions and bad deploys --------------------------------------------------------------------
    version = np.empty(n, dtype=object)
    broken = np.zeros(n, dtype=bool)
    for i in range(len(flows)):
        times, names, bad = _deploys(rng, t0, t1)
        mask = flow_idx == i
        k = np.searchsorted(times, sched[mask], side="right") - 1
        version[mask] = np.asarray(names, dtype=object)[k]
        broken[mask] = bad[k]

    # --- failure mechanisms ---------------------------------------------------------------------------
    in_outage = np.zeros(n, dtype=bool)
    for dep, gap in DEPENDENCIES.items():
        starts, ends = _outages(rng, t0, t1, gap)
        depends = np.asarray([dep in f.deps for f in flows])[flow_idx]
        in_outage |= depends & _in_intervals(start_t, starts, ends)
    s_hour = (start_t // HOUR) % 24
    s_dow = (start_t // DAY + 3) % 7
    in_window = (s_dow == 6) & (s_hour >= 2) & (s_hour < 4)
    p = np.column_stack(
        [
            np.where(in_outage, 0.92, 0.0),
            np.where(in_window & per_flow("maintenance").astype(bool), 0.75, 0.0),
            np.where(broken, 0.85, 0.0),
            np.where(input_rows > row_limit, 0.9, 0.0),
            np.where(load_sensitive, 0.04 * business + 0.08 * month_end, 0.0),
            np.where(source == FLAKY_SOURCE, 0.04, 0.0),
            np.full(n, 0.01),
        ]
    )
    fired = rng.random(p.shape) < p
    failed = fired.any(axis=1)
    cause_idx = np.where(failed, fired.argmax(axis=1), -1)

    # --- durations and final states --------------------------------------------------------------------
    med = per_flow("duration_s").astype(float) * SECOND
    sigma = per_flow("duration_sigma").astype(float)
    slow = np.where(business & load_sensitive, 1.25, 1.0) * np.sqrt(input_rows / rows_med)
    duration = med * slow * rng.lognormal(0.0, sigma)
    timeout = med * 6.0
    frac = rng.uniform(0.05, 1.0, n)
    quick = rng.lognormal(math.log(60 * SECOND), 0.5, n)  # connection errors surface within a minute or two
    fail_duration = np.select(
        [cause_idx == 0, cause_idx == 1, cause_idx == 2],
        [quick, quick, duration * np.minimum(frac, 0.5)],
        duration * frac,
    )
    r = rng.random(n)
    # state mix per cause: (P[TIMEDOUT], P[CRASHED]); the rest FAILED
    mix = np.asarray(
        [(0.10, 0.05), (0.0, 0.20), (0.0, 0.05), (0.5, 0.0), (0.4, 0.15), (0.0, 0.1), (0.0, 0.3), (0.0, 0.0)]
    )
    p_to, p_cr = mix[cause_idx, 0], mix[cause_idx, 1]
    state = np.full(n, RunState.COMPLETED.value, dtype=object)
    state[failed] = RunState.FAILED.value
    timed_out = failed & (r < p_to)
    crashed = failed & ~timed_out & (r < p_to + p_cr)
    state[timed_out] = RunState.TIMEDOUT.value
    state[crashed] = RunState.CRASHED.value
    too_long = ~failed & (duration > timeout)  # a slow success still hits the flow's timeout
    state[too_long] = RunState.TIMEDOUT.value
    cause_names = np.asarray([*FAILURE_CAUSES, "load"], dtype=object)  # the last: slow runs that time out
    cause = cause_names[np.where(too_long, len(FAILURE_CAUSES), cause_idx)]
    cause[~(failed | too_long)] = ""
    final_duration = np.where(failed, fail_duration, duration)
    final_duration = np.where(timed_out | too_long, timeout, final_duration)
    cancelled = rng.random(n) < 0.006
    state[cancelled] = RunState.CANCELLED.value
    cause[cancelled] = ""
    final_duration = np.where(cancelled, final_duration * rng.uniform(0.1, 1.0, n), final_duration)
    end_t = start_t + np.maximum(final_duration, SECOND).astype(np.int64)

    now = start_t.max() if n else t0  # the export was taken when the last run had started
    running = end_t > now
    state[running] = RunState.RUNNING.value
    cause[running] = ""
    end_t[running] = np.iinfo(np.int64).min

    run_id = _uuids(rng, n)

    out = pd.DataFrame(
        {
            "run_id": pd.Series(run_id.astype(object), dtype=object),
            "flow_name": pd.Series(np.asarray([f.name for f in flows], dtype=object)[flow_idx], dtype=object),
            "deployment": pd.Series(deployment, dtype=object),
            "flow_version": pd.Series(version, dtype=object),
            "scheduled_start": pd.Series(_iso(sched), dtype=object),
            "start_time": pd.Series(_iso(start_t), dtype=object),
            "end_time": pd.Series(_iso(end_t), dtype=object),
            "state": pd.Series(state, dtype=object),
            "parameters": pd.Series(parameters, dtype=object),
            "feature_input_rows": input_rows,
            "feature_source_system": pd.Series(source, dtype=object),
            "feature_triggered_by": pd.Series(triggered, dtype=object),
        }
    )
    if include_cause:
        out["failure_cause"] = pd.Series(cause, dtype=object)
    return out


def write_simulated_history(path: Path | str, n_runs: int, **kw: Any) -> Path:
    """Write :func:`simulate_history` ``(n_runs, **kw)`` to a CSV file and return its path.

    Example::

        >>> import tempfile, pathlib
        >>> p = write_simulated_history(pathlib.Path(tempfile.mkdtemp()) / "h.csv", 100, seed=2)
        >>> p.read_text().splitlines()[0].split(",")[:3]
        ['run_id', 'flow_name', 'deployment']
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    simulate_history(n_runs, **kw).to_csv(path, index=False)
    return path


# --- simulated task attempts ---------------------------------------------------------------------------

_EXCEPTIONS: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {
    "dependency_outage": (("ConnectionError", "OperationalError", "TimeoutError"), (0.5, 0.3, 0.2)),
    "maintenance": (("OperationalError", "ConnectionRefusedError"), (0.6, 0.4)),
    "bad_deploy": (("KeyError", "AttributeError", "TypeError", "ValueError"), (0.3, 0.3, 0.2, 0.2)),
    "input_size": (("MemoryError", "TimeoutError"), (0.5, 0.5)),
    "load": (("TimeoutError", "ConnectionError", "OperationalError"), (0.6, 0.2, 0.2)),
    "flaky_source": (("ConnectionResetError", "ValueError"), (0.5, 0.5)),
    "random": (("ValueError", "RuntimeError", "ConnectionError", "KeyError"), (0.3, 0.3, 0.2, 0.2)),
    "transient": (("ConnectionError", "TimeoutError", "ServiceUnavailable"), (0.5, 0.3, 0.2)),
}
_TASK_SHARE = np.asarray([0.3, 0.5, 0.2])


def _pick(rng: np.random.Generator, kinds: np.ndarray) -> np.ndarray:
    """One exception type name per row, drawn from the distribution named by each row's kind."""
    out = np.empty(len(kinds), dtype=object)
    for kind, (names, weights) in _EXCEPTIONS.items():
        mask = kinds == kind
        if mask.any():
            out[mask] = rng.choice(np.asarray(names, dtype=object), size=int(mask.sum()), p=weights)
    return out


def simulated_attempts(history: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Plausible task attempts for the ended runs of a simulated history, in the attempts import format.

    Every flow has three tasks that share the run's duration. Tasks of successful runs mostly succeed at
    once; 5 % recover on a retry after a transient error and 1 % use their fallback after three failed
    attempts. A failed run's failing task fails three times (``timeout`` outcomes for ``TIMEDOUT`` runs),
    sometimes followed by a failed fallback; later tasks never run. A ``CRASHED`` run leaves no row for the
    task that was running. Exception types follow ``failure_cause`` when the history has it, else the state.

    Example::

        >>> h = simulate_history(200, seed=4)
        >>> a = simulated_attempts(h, seed=4)
        >>> list(a.columns) == list(ATTEMPT_COLUMNS)
        True
    """
    rng = np.random.default_rng(seed)
    runs = history.loc[history["end_time"].notna() & history["start_time"].notna()]
    if runs.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in ATTEMPT_COLUMNS})
    start = pd.to_datetime(runs["start_time"], utc=True, format="ISO8601").astype("datetime64[ns, UTC]")
    end = pd.to_datetime(runs["end_time"], utc=True, format="ISO8601").astype("datetime64[ns, UTC]")
    s_ns = start.array.asi8
    e_ns = end.array.asi8
    state = runs["state"].astype(str).str.upper().to_numpy()
    cause_col = runs["failure_cause"].fillna("").astype(str).to_numpy() if "failure_cause" in runs else None
    n = len(runs)
    failing = np.isin(state, [RunState.FAILED.value, RunState.TIMEDOUT.value, RunState.CRASHED.value])
    fail_task = np.where(failing, rng.integers(0, 3, n), 3)
    cancel_task = np.where(state == RunState.CANCELLED.value, rng.integers(0, 3, n), 3)
    last_task = np.minimum(fail_task, cancel_task)  # tasks after this one never ran

    # one row per (run, task) that ran: tasks before the failing (or cancelled) one, and the failing task
    # itself unless the run crashed while it was running
    r_idx = np.repeat(np.arange(n), 3)
    t_idx = np.tile(np.arange(3), n)
    reported_fail = np.isin(state, [RunState.FAILED.value, RunState.TIMEDOUT.value])
    ran = (t_idx < last_task[r_idx]) | ((t_idx == fail_task[r_idx]) & reported_fail[r_idx])
    r_idx, t_idx = r_idx[ran], t_idx[ran]
    m = len(r_idx)
    is_fail_task = t_idx == fail_task[r_idx]
    u = rng.random(m)
    retried = ~is_fail_task & (u < 0.05)
    fell_back = ~is_fail_task & (u >= 0.05) & (u < 0.06)
    fallback_failed = is_fail_task & (rng.random(m) < 0.3)
    n_rows = np.ones(m, dtype=np.int64)
    n_rows[retried] = 2
    n_rows[fell_back] = 4
    n_rows[is_fail_task] = 3 + fallback_failed[is_fail_task]

    # task time segments inside the run
    bounds = np.concatenate([[0.0], np.cumsum(_TASK_SHARE)])
    dur = (e_ns - s_ns)[r_idx].astype(float)
    seg_s = s_ns[r_idx] + (dur * bounds[t_idx]).astype(np.int64)
    seg_e = s_ns[r_idx] + (dur * bounds[t_idx + 1]).astype(np.int64)
    seg_e = np.where((t_idx == 2) | is_fail_task, e_ns[r_idx], seg_e)  # the last task ends with the run

    # expand to attempt rows
    owner = np.repeat(np.arange(m), n_rows)
    k = np.arange(len(owner)) - np.repeat(np.cumsum(n_rows) - n_rows, n_rows)
    width = (seg_e - seg_s)[owner] / n_rows[owner]
    a_start = seg_s[owner] + (width * k).astype(np.int64)
    gap = np.minimum(width * 0.05, SECOND).astype(np.int64)  # the retry wait between attempts
    a_end = seg_s[owner] + (width * (k + 1)).astype(np.int64) - gap
    a_end = np.maximum(a_end, a_start)
    last_row = k == n_rows[owner] - 1
    outcome = np.full(len(owner), AttemptOutcome.SUCCESS.value, dtype=object)
    kind = np.full(len(owner), "", dtype=object)
    rs = r_idx[owner]
    transient = (retried[owner] & ~last_row) | (fell_back[owner] & ~last_row)
    outcome[transient] = AttemptOutcome.FAILURE.value
    kind[transient] = "transient"
    outcome[fell_back[owner] & last_row] = AttemptOutcome.FALLBACK.value
    final_fail = is_fail_task[owner]
    run_kind = np.where(state == RunState.TIMEDOUT.value, "input_size", "random").astype(object)
    if cause_col is not None:
        run_kind = np.where(cause_col != "", cause_col, run_kind).astype(object)
    kind[final_fail] = run_kind[rs[final_fail]]
    outcome[final_fail] = AttemptOutcome.FAILURE.value
    outcome[final_fail & (state[rs] == RunState.TIMEDOUT.value)] = AttemptOutcome.TIMEOUT.value
    fb_fail = final_fail & fallback_failed[owner] & last_row
    outcome[fb_fail] = AttemptOutcome.FALLBACK_FAILURE.value
    exc = _pick(rng, kind)
    exc[outcome == AttemptOutcome.SUCCESS.value] = None
    exc[outcome == AttemptOutcome.FALLBACK.value] = None
    timeout_rows = outcome == AttemptOutcome.TIMEOUT.value
    exc[timeout_rows] = "TimeoutError"
    outcome[(kind == "transient") & (exc == "TimeoutError")] = AttemptOutcome.TIMEOUT.value

    flow_tasks = {f.name: f.tasks for f in _CATALOGUE}
    names = runs["flow_name"].astype(str).to_numpy()
    task_names = np.asarray(
        [
            flow_tasks.get(nm if nm in flow_tasks else nm.rsplit("-", 1)[0], ("extract", "transform", "load"))
            for nm in names
        ],
        dtype=object,
    )
    return pd.DataFrame(
        {
            "run_id": pd.Series(runs["run_id"].to_numpy(dtype=object)[rs], dtype=object),
            "task_name": pd.Series(task_names[rs, t_idx[owner]], dtype=object),
            "attempt": (k + 1).astype(np.int64),
            "start_time": pd.Series(_iso(a_start), dtype=object),
            "end_time": pd.Series(_iso(a_end), dtype=object),
            "state": pd.Series(outcome, dtype=object),
            "exception_type": pd.Series(exc, dtype=object),
        }
    )


# --- parsing the import format ---------------------------------------------------------------------------


def history_to_runs_frame(
    df: pd.DataFrame, *, source: Path | str = "<DataFrame>", assume_utc: bool = False
) -> pd.DataFrame:
    """Parse a history in the import format into the runs frame that :mod:`forewarn.learning.features` reads.

    The rules are exactly those of a run-history CSV (:func:`forewarn.history.importer.check_runs`,
    ``docs/import.md``): any problem rejects the frame whole with
    :class:`~forewarn.errors.ImportValidationError` (``.problems`` as ``(line, reason)``; line 1 is the
    header, row ``i`` is line ``i + 2`` as in the CSV ``source``). Rows repeated identically are one run.
    Cells may be text, as read from a CSV, or already typed: timezone-aware datetimes and numeric
    ``feature_*`` columns are kept as they are.

    Output columns: ``flow_run_id, flow_name, deployment, parameters`` (dict or None), ``parameters_hash``
    (:func:`forewarn.records.parameters_hash`), ``flow_version, scheduled_start, start_time, end_time``
    (``datetime64[ns, UTC]``), ``state`` (a :class:`~forewarn.records.RunState` value), then the
    ``feature_*`` columns. Text columns are object dtype with ``None`` for missing.

    Example::

        >>> raw = pd.DataFrame({"run_id": ["r1"], "flow_name": ["etl"],
        ...                     "scheduled_start": ["2026-01-01T00:00:00Z"], "state": ["success"],
        ...                     "parameters": ['{"b": 1}']})
        >>> runs = history_to_runs_frame(raw)
        >>> runs.loc[0, "state"], runs.loc[0, "parameters"], runs.loc[0, "end_time"] is pd.NaT
        ('COMPLETED', {'b': 1}, True)
    """
    return check_runs(df, source=source, assume_utc=assume_utc).valid(source)


def history_to_attempts_frame(
    df: pd.DataFrame, *, source: Path | str = "<DataFrame>", assume_utc: bool = False
) -> pd.DataFrame:
    """Parse task attempts in the import format into the attempts frame :mod:`forewarn.learning.features` reads.

    The rules are those of a task-attempt CSV (:func:`forewarn.history.importer.check_attempts`), and any problem
    rejects the frame like :func:`history_to_runs_frame`. Output columns: ``flow_run_id, task_name,
    attempt, start_time, end_time, outcome, exception_type``.

    Example::

        >>> raw = pd.DataFrame({"run_id": ["r1"], "task_name": ["load"], "attempt": [1],
        ...                     "start_time": ["2026-01-01T00:00:00Z"], "end_time": ["2026-01-01T00:00:09Z"],
        ...                     "state": ["TIMEOUT"], "exception_type": ["TimeoutError"]})
        >>> history_to_attempts_frame(raw).loc[0, "outcome"]
        'timeout'
    """
    return check_attempts(df, source=source, assume_utc=assume_utc).valid(source).drop(columns="task_run_id")


__all__ = [
    "ATTEMPT_COLUMNS",
    "DEPENDENCIES",
    "FAILURE_CAUSES",
    "REQUIRED_RUN_COLUMNS",
    "RUN_COLUMNS",
    "history_to_attempts_frame",
    "history_to_runs_frame",
    "parameters_hash",
    "simulate_history",
    "simulated_attempts",
    "write_simulated_history",
]
