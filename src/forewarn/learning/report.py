"""Reliability figures from telemetry: runs, success rate, ER, retries and fallbacks, overall and per flow.

Definitions (the README repeats them):

- **runs**: flow runs in the selection, whatever their state; **ended**: those with a final state.
- **success rate** = runs that ended COMPLETED / ended runs.
- **runs with a fault**: ended runs with at least one task attempt whose outcome is ``failure`` or
  ``timeout``.
- **ER** (escape rate) = runs with a fault that still ended COMPLETED / runs with a fault. Undefined (NaN)
  when no run met a fault.
- **retries per run** = task attempts after the first of their task run (fallback calls, losing redundant
  copies and compensations excluded) / runs. A task run Dask executed again after its worker died has
  two executions numbered from 1: the later one's first attempt is a retry too.
- **fallback rate** = task runs whose result came from a fallback / task runs.

This module knows pandas only: pass it :meth:`TelemetryStore.runs` and :meth:`TelemetryStore.attempts`.

Example::

    >>> import pandas as pd
    >>> runs = pd.DataFrame({"flow_run_id": ["r1", "r2"], "flow_name": ["orders", "orders"],
    ...                      "state": ["COMPLETED", "FAILED"]})
    >>> attempts = pd.DataFrame({"flow_run_id": ["r1", "r1", "r2"], "task_run_id": ["t1", "t1", "t2"],
    ...                          "attempt": [1, 2, 1], "outcome": ["failure", "success", "failure"]})
    >>> row = reliability_report(runs, attempts).loc["ALL"]
    >>> int(row["runs_with_fault"]), float(row["ER"]), float(row["retries_per_run"])
    (2, 0.5, 0.5)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from forewarn.learning.metrics import escape_rate
from forewarn.records import FINAL_STATES, NOT_RETRY_OUTCOMES

OVERALL = "ALL"

COLUMNS = [
    "runs",
    "ended",
    "completed",
    "success_rate",
    "runs_with_fault",
    "escaped",
    "ER",
    "task_runs",
    "attempts",
    "retries",
    "retries_per_run",
    "fallbacks",
    "fallback_rate",
]


def _figures(runs: pd.DataFrame, attempts: pd.DataFrame) -> dict[str, float]:
    ended = runs[runs["state"].isin(FINAL_STATES)]
    completed = ended["state"].eq("COMPLETED")
    escape = escape_rate(runs, attempts)  # the one definition of ER, shared with the backtest
    own = attempts[~attempts["outcome"].isin(NOT_RETRY_OUTCOMES)]
    task_runs = attempts["task_run_id"].nunique()
    fallbacks = attempts.loc[attempts["outcome"].eq("fallback"), "task_run_id"].nunique()
    retries = int(_retried(own).sum())
    n_fault, escaped = escape["runs_with_failed_attempt"], escape["escaped_runs"]
    return {
        "runs": len(runs),
        "ended": len(ended),
        "completed": int(completed.sum()),
        "success_rate": completed.mean() if len(ended) else np.nan,
        "runs_with_fault": n_fault,
        "escaped": escaped,
        "ER": escaped / n_fault if n_fault else np.nan,
        "task_runs": task_runs,
        "attempts": len(own),
        "retries": retries,
        "retries_per_run": retries / len(runs) if len(runs) else np.nan,
        "fallbacks": fallbacks,
        "fallback_rate": fallbacks / task_runs if task_runs else np.nan,
    }


def _retried(own: pd.DataFrame) -> pd.Series:
    """Which attempts are retries: all but the first of their task run, whichever execution made them.

    Every ``attempt > 1``, and (with the store's ``execution_id`` and ``start_time`` columns) the
    ``attempt == 1`` of each execution after the task run's first: Dask re-runs a task whose worker died
    under the same task run id, numbering from 1 again, and the store keeps both executions (schema 7).
    """
    retried = own["attempt"] > 1
    if "execution_id" not in own.columns or "start_time" not in own.columns:
        return retried
    firsts = own[own["attempt"].eq(1)]
    if not firsts["task_run_id"].duplicated().any():  # one execution per task run: the usual case
        return retried
    in_order = firsts.sort_values(["start_time", "execution_id"], kind="stable")
    later = in_order.index[in_order["task_run_id"].duplicated()]
    return retried | own.index.isin(later)


def reliability_report(runs: pd.DataFrame, attempts: pd.DataFrame) -> pd.DataFrame:
    """One row for all flows (index ``"ALL"``) and one per flow name, with the columns in ``COLUMNS``.

    ``attempts`` rows whose flow run is not in ``runs`` are ignored, so a time-filtered ``runs`` frame
    filters the attempts too.
    """
    attempts = attempts[attempts["flow_run_id"].isin(runs["flow_run_id"])]
    flow_of = runs.set_index("flow_run_id")["flow_name"]
    rows = {OVERALL: _figures(runs, attempts)}
    for name, flow_runs in runs.groupby("flow_name", sort=True):
        flow_attempts = attempts[attempts["flow_run_id"].map(flow_of).eq(name)]
        rows[str(name)] = _figures(flow_runs, flow_attempts)
    report = pd.DataFrame.from_dict(rows, orient="index", columns=COLUMNS)
    report.index.name = "flow_name"
    return report


__all__ = ["COLUMNS", "OVERALL", "reliability_report"]
