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

The simulator's parts are private modules beside this one: the estate of flows and their schedules
(``_estate``), the failure mechanisms and how runs end (``_mechanisms``), and the task attempts
(``_task_attempts``).

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
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forewarn.errors import ConfigurationError
from forewarn.history._estate import (
    DAY,
    DEPENDENCIES,
    MINUTE,
    SECOND,
    Flow,
    business_hours,
    estate,
    iso_text,
    month_end,
    per_flow,
    schedule,
    to_ns,
)
from forewarn.history._mechanisms import (
    FAILURE_CAUSES,
    deployed_versions,
    durations,
    failure_probabilities,
    first_causes,
    in_maintenance_window,
    in_outage,
    load_excess,
    outcomes,
)
from forewarn.history._task_attempts import (
    attempt_outcomes,
    attempt_plan,
    attempt_times,
    run_error_kinds,
    task_names,
    task_segments,
    tasks_that_ran,
)
from forewarn.history.validation import ATTEMPT_OPTIONAL, ATTEMPT_REQUIRED, RUN_REQUIRED, check_attempts, check_runs
from forewarn.records import RunState, parameters_hash

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
``feature_<name>`` columns follow. (:data:`forewarn.history.validation.RUN_REQUIRED` and ``RUN_OPTIONAL`` say which
are required.)"""

REQUIRED_RUN_COLUMNS: tuple[str, ...] = RUN_REQUIRED
"""Import columns that must be present: :data:`forewarn.history.validation.RUN_REQUIRED`."""

ATTEMPT_COLUMNS: tuple[str, ...] = (*ATTEMPT_REQUIRED, *ATTEMPT_OPTIONAL)
"""Columns of the attempts import format, in order (:func:`simulated_attempts` writes
:class:`~forewarn.records.AttemptOutcome` values as ``state``)."""


DEFAULT_START = "2026-01-01T00:00:00Z"
"""Where :func:`simulate_history` starts unless told otherwise (a Thursday, 00:00 UTC)."""

_WEEK_NS = 7 * 24 * 3600 * 10**9


def simulate_history(
    n_runs: int,
    *,
    seed: int = 0,
    start: datetime | str = DEFAULT_START,
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
    _check_sizes(n_runs, n_flows)
    rng = np.random.default_rng(seed)
    flows = estate(int(n_flows))
    t0 = to_ns(start)
    t1 = t0 + _span(n_runs, flows)
    flow_idx, sched = schedule(flows, t0, t1, n_runs)
    business, month_ends = business_hours(sched), month_end(sched)
    load_sensitive = per_flow(flows, flow_idx, "load_sensitive").astype(bool)
    busy = business & load_sensitive
    inputs = _run_inputs(rng, flows, flow_idx, busy=busy, month_end=month_ends)
    start_t = _start_times(rng, sched, business)
    version, broken = deployed_versions(rng, flows, flow_idx, sched, t0, t1)
    p = failure_probabilities(
        outage=in_outage(rng, flows, flow_idx, start_t, t0, t1),
        maintenance=in_maintenance_window(start_t) & per_flow(flows, flow_idx, "maintenance").astype(bool),
        broken=broken,
        oversized=inputs.rows > inputs.row_limit,
        load_excess=load_excess(load_sensitive, business, month_ends),
        source=inputs.source,
    )
    cause_idx = first_causes(rng, p)
    duration, timeout = durations(rng, flows, flow_idx, busy=busy, input_rows=inputs.rows, rows_med=inputs.rows_med)
    state, cause, final_duration = outcomes(rng, cause_idx, duration, timeout)
    end_t = start_t + np.maximum(final_duration, SECOND).astype(np.int64)
    exported_at = start_t.max() if len(start_t) else t0  # the export was taken when the last run had started
    _still_running(state, cause, end_t, exported_at)
    out = pd.DataFrame(
        {
            "run_id": pd.Series(_uuids(rng, len(sched)).astype(object), dtype=object),
            "flow_name": pd.Series(np.asarray([f.name for f in flows], dtype=object)[flow_idx], dtype=object),
            "deployment": pd.Series(inputs.deployment, dtype=object),
            "flow_version": pd.Series(version, dtype=object),
            "scheduled_start": pd.Series(iso_text(sched), dtype=object),
            "start_time": pd.Series(iso_text(start_t), dtype=object),
            "end_time": pd.Series(iso_text(end_t), dtype=object),
            "state": pd.Series(state, dtype=object),
            "parameters": pd.Series(inputs.parameters, dtype=object),
            "feature_input_rows": inputs.rows,
            "feature_source_system": pd.Series(inputs.source, dtype=object),
            "feature_triggered_by": pd.Series(inputs.triggered, dtype=object),
        }
    )
    if include_cause:
        out["failure_cause"] = pd.Series(cause, dtype=object)
    return out


def start_ending_by(n_runs: int, end: datetime, *, seed: int = 0, n_flows: int = 12) -> datetime:
    """The ``start`` whose simulated history of ``n_runs`` has its last run start at or before ``end``, less than a
    week before it: :data:`DEFAULT_START` moved by whole weeks, so weekdays, hours and maintenance windows
    fall as they do from the default start.

    ``forewarn simulate`` uses it so that a history ends now, inside live scoring's lookback.

    Example::

        >>> from datetime import timezone
        >>> end = datetime(2026, 11, 29, 12, tzinfo=timezone.utc)
        >>> start = start_ending_by(2_000, end, seed=1)
        >>> start.weekday(), start.time().isoformat()
        (3, '00:00:00')
        >>> last = pd.Timestamp(simulate_history(2_000, seed=1, start=start)["scheduled_start"].max())
        >>> pd.Timedelta(0) <= pd.Timestamp(end) - last < pd.Timedelta(days=7)
        True
    """
    probe = simulate_history(n_runs, seed=seed, start=DEFAULT_START, n_flows=n_flows)
    last = pd.to_datetime(probe["scheduled_start"], utc=True).max()
    weeks = math.floor((pd.Timestamp(end).value - last.value) / _WEEK_NS)
    return (pd.Timestamp(DEFAULT_START) + pd.Timedelta(weeks=weeks)).to_pydatetime()


def _check_sizes(n_runs: Any, n_flows: Any) -> None:
    """Refuse a count of runs or flows that is not a whole number in range, naming the argument."""
    if not isinstance(n_runs, (int, np.integer)) or isinstance(n_runs, bool) or n_runs < 0:
        raise ConfigurationError("n_runs", n_runs, "a whole number >= 0, e.g. simulate_history(10_000)")
    if not isinstance(n_flows, (int, np.integer)) or isinstance(n_flows, bool) or n_flows < 1:
        raise ConfigurationError("n_flows", n_flows, "a whole number >= 1, e.g. n_flows=12")


def _span(n_runs: int, flows: list[Flow]) -> int:
    """A time span (ns) that holds at least ``n_runs`` scheduled slots of ``flows``, with room to spare."""
    rate_per_ns = sum(1.0 / f.period for f in flows)
    return int(n_runs / rate_per_ns * 1.05) + 2 * DAY


@dataclasses.dataclass(frozen=True, slots=True)
class _RunInputs:
    """What each simulated run is given before it starts: who triggered it, its source, input and parameters."""

    triggered: np.ndarray  # schedule, manual or backfill
    source: np.ndarray  # the source system
    rows: np.ndarray  # input rows (int64)
    rows_med: np.ndarray  # the flow's median input rows
    row_limit: np.ndarray  # above it, the input_size mechanism may fail the run
    parameters: np.ndarray  # JSON text
    deployment: np.ndarray  # None for an ad-hoc manual run


def _run_inputs(
    rng: np.random.Generator, flows: list[Flow], flow_idx: np.ndarray, *, busy: np.ndarray, month_end: np.ndarray
) -> _RunInputs:
    """Who triggered each run, with which source, input size, parameters and deployment."""
    n = len(flow_idx)
    u = rng.random(n)
    triggered = np.where(u < 0.94, "schedule", np.where(u < 0.99, "manual", "backfill")).astype(object)
    manual, backfill = triggered == "manual", triggered == "backfill"
    full_refresh = backfill | (manual & (rng.random(n) < 0.4))
    source = _sources(rng, flows, flow_idx)
    rows_med = per_flow(flows, flow_idx, "rows").astype(float)
    rows = _input_rows(rng, rows_med, busy=busy, month_end=month_end, full_refresh=full_refresh)
    parameters = _parameters(flows, flow_idx, full_refresh)
    deployment = np.asarray([f"{f.name}/prod" for f in flows], dtype=object)[flow_idx]
    deployment[manual & (rng.random(n) < 0.5)] = None  # half the manual runs are ad hoc
    return _RunInputs(triggered, source, rows, rows_med, rows_med * math.exp(0.3 * 3.0), parameters, deployment)


def _sources(rng: np.random.Generator, flows: list[Flow], flow_idx: np.ndarray) -> np.ndarray:
    """Each run's source system: its flow's usual one, or for 30 % of the runs of a flow with two, the other."""
    n_sources = np.asarray([len(f.sources) for f in flows])[flow_idx]
    alt_source = (n_sources > 1) & (rng.random(len(flow_idx)) < 0.3)
    source_table = np.asarray([f.sources[0] for f in flows] + [f.sources[-1] for f in flows], dtype=object)
    return source_table[flow_idx + len(flows) * alt_source]


def _input_rows(
    rng: np.random.Generator,
    rows_med: np.ndarray,
    *,
    busy: np.ndarray,
    month_end: np.ndarray,
    full_refresh: np.ndarray,
) -> np.ndarray:
    """Input rows, log-normal about the flow's median: more when busy, at month-end, for full refreshes, in spikes."""
    growth = np.where(busy, 1.2, 1.0) * np.where(month_end, 1.6, 1.0)
    growth = growth * np.where(full_refresh, 2.0, 1.0)
    growth = growth * np.where(rng.random(len(rows_med)) < 0.01, 3.0, 1.0)
    return np.round(rows_med * growth * rng.lognormal(0.0, 0.3, len(rows_med))).astype(np.int64)


def _parameters(flows: list[Flow], flow_idx: np.ndarray, full_refresh: np.ndarray) -> np.ndarray:
    """Each run's parameters as JSON text: its flow's, with ``full_refresh`` set for a full refresh."""
    param_json = []
    for f in flows:
        base = dict(f.params)
        param_json.append(json.dumps(base, sort_keys=True))
        param_json.append(json.dumps({**base, "full_refresh": True}, sort_keys=True))
    return np.asarray(param_json, dtype=object)[2 * flow_idx + full_refresh]


def _start_times(rng: np.random.Generator, sched: np.ndarray, business: np.ndarray) -> np.ndarray:
    """Start times (ns): seconds after the scheduled start, sometimes minutes late (more often in business hours)."""
    n = len(sched)
    jitter = rng.lognormal(math.log(3.0), 0.8, n) * SECOND
    late = rng.random(n) < np.where(business, 0.05, 0.02)
    jitter = jitter + late * rng.exponential(4 * MINUTE, n)
    return sched + jitter.astype(np.int64)


def _still_running(state: np.ndarray, cause: np.ndarray, end_t: np.ndarray, exported_at: int) -> None:
    """Mark the runs that had not ended when the history was exported: RUNNING, no cause, no end time."""
    running = end_t > exported_at
    state[running] = RunState.RUNNING.value
    cause[running] = ""
    end_t[running] = np.iinfo(np.int64).min


def _uuids(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` random version-4 UUID strings, drawn from ``rng``."""
    nibbles = rng.integers(0, 16, size=(n, 32), dtype=np.uint8)
    nibbles[:, 12] = 4  # version 4
    nibbles[:, 16] = 8 + (nibbles[:, 16] & 3)  # RFC 4122 variant
    hexes = np.frombuffer(b"0123456789abcdef", dtype="S1")[nibbles]
    dash = np.full((n, 1), b"-", dtype="S1")
    parts = [hexes[:, :8], dash, hexes[:, 8:12], dash, hexes[:, 12:16], dash, hexes[:, 16:20], dash, hexes[:, 20:]]
    return np.ascontiguousarray(np.hstack(parts)).view("S36").ravel().astype(str)


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
    start, end = _ns(runs["start_time"]), _ns(runs["end_time"])
    state = runs["state"].astype(str).str.upper().to_numpy()
    cause = runs["failure_cause"].fillna("").astype(str).to_numpy() if "failure_cause" in runs else None
    r_idx, t_idx, fails = tasks_that_ran(rng, state)
    plan = attempt_plan(rng, fails)
    seg_s, seg_e = task_segments(start, end, r_idx, t_idx, fails)
    owner, k, a_start, a_end = attempt_times(seg_s, seg_e, plan.n_rows)
    rs = r_idx[owner]  # each attempt's run
    outcome, exc = attempt_outcomes(rng, plan, owner, k, state[rs], run_error_kinds(state, cause)[rs])
    names = task_names(runs["flow_name"].astype(str).to_numpy())
    return pd.DataFrame(
        {
            "run_id": pd.Series(runs["run_id"].to_numpy(dtype=object)[rs], dtype=object),
            "task_name": pd.Series(names[rs, t_idx[owner]], dtype=object),
            "attempt": (k + 1).astype(np.int64),
            "start_time": pd.Series(iso_text(a_start), dtype=object),
            "end_time": pd.Series(iso_text(a_end), dtype=object),
            "state": pd.Series(outcome, dtype=object),
            "exception_type": pd.Series(exc, dtype=object),
        }
    )


def _ns(times: pd.Series) -> np.ndarray:
    """ISO-8601 text as int64 ns since the epoch, UTC."""
    return pd.to_datetime(times, utc=True, format="ISO8601").astype("datetime64[ns, UTC]").array.asi8


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
    (``datetime64[ns, UTC]``), ``state`` (a :class:`~forewarn.records.RunState` value), ``tags`` (a sorted
    tuple of strings, or None), then the ``feature_*`` columns. Text columns are object dtype with ``None`` for missing.

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
    "DEFAULT_START",
    "start_ending_by",
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
