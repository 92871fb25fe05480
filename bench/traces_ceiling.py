"""How far a trace's warnings could go with one thing no scheduler knows: a leaky ceiling, never a model.

Issue 9 asks for PR-AUC at least 1.2x the better baseline on each trace. On KTH (flows are users) a fifth of
the runs come less than a minute after the user's previous submission, which has almost never ended by then,
though the two outcomes go together. The cutoff rule hides that outcome (it is not known at submission).
This bench adds it anyway, as one **leaky** column -- the outcome of the flow's previous submission when that
run was still going at the cutoff, -1 otherwise -- and runs the same walk-forward backtest as
``bench/traces.py`` with and without it. If even that answer lifts a trace only a little, the trace's
submissions do not carry much more than the model already finds (docs/model.md, "How far KTH can go").

Between the two, ``--extras`` runs a third backtest with thirteen **leak-free** columns that are not in the
library's features, each tried alone in an earlier session for a gain of at most 0.009 on KTH, now all at
once (:func:`leak_free_extras`): the durations of the flow's last ended and last failed run, the last run's
duration over this run's and its own requested time, the flow's recent runs that ran into their time limit,
its submissions in the last hour and the time since the last one, and its submissions still going at the
cutoff (running, with their ages, and queued; a live scorer would have to read unfinished runs for these).
How far all of them together go is the best leak-free figure to set beside the leaky one.

    .venv/bin/python bench/traces_ceiling.py --cache /tmp/traces            # KTH and CTC, default family
    .venv/bin/python bench/traces_ceiling.py --only KTH --family hgb --extras
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from traces import DEFAULT_TRACES, label_of, load_runs  # the bench folder is not a package

from forewarn.learning.model import DEFAULT_FAMILY
from forewarn.records import FAILURE_STATES

LEAK = "leak_previous_submission_outcome"


def leaky_column(runs: pd.DataFrame, y: np.ndarray, sched: np.ndarray, end: np.ndarray) -> np.ndarray:
    """The outcome (1 failed, 0 not) of the flow's previous submission if it had not ended by this run's
    scheduled start, else -1. ``runs`` are the labelled runs in scheduled order, ``y``/``sched``/``end`` theirs.

        >>> runs = pd.DataFrame({"flow_name": ["a", "a", "a"]})
        >>> leaky_column(runs, np.array([1, 0, 1]), np.array([0, 5, 20]), np.array([10, 15, 30])).tolist()
        [-1.0, 1.0, -1.0]
    """
    flows = runs["flow_name"].to_numpy()
    previous = pd.Series(y.astype(float)).groupby(flows).shift(1).to_numpy()
    previous_end = pd.Series(end.astype(float)).groupby(flows).shift(1).to_numpy()
    running = np.isfinite(previous) & (previous_end >= sched)
    return np.where(running, previous, -1.0)


_HOUR = 3_600.0


def _seconds(values: pd.Series) -> np.ndarray:
    """Seconds since the epoch; +inf where there is no time (a run not started or not ended: never, yet)."""
    seconds = (pd.to_datetime(values, utc=True) - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
    return np.where(np.isnan(seconds), np.inf, seconds)


def leak_free_extras(history: pd.DataFrame, targets: pd.DataFrame, cutoff: np.ndarray) -> pd.DataFrame:
    """Thirteen columns per target, from the runs of its flow that ended (or were submitted) before ``cutoff``.

    ``history`` is the whole runs frame (``TelemetryStore.runs()``), ``targets`` the runs to describe (with
    ``flow_name`` and, where the log has it, ``feature_requested_seconds``), ``cutoff`` their scheduled
    starts (seconds since the epoch). Nothing a target's cutoff cannot see is read: ended runs count by their
    end, submissions by their scheduled start, and a run still going counts only as going (its outcome and
    end are not read).
    NaN where there is nothing to describe.

        >>> history = pd.DataFrame({"flow_name": ["a", "a"], "state": ["FAILED", "COMPLETED"],
        ...     "scheduled_start": ["2026-01-01T00:00Z", "2026-01-01T00:30Z"],
        ...     "start_time": ["2026-01-01T00:00Z", "2026-01-01T00:30Z"],
        ...     "end_time": ["2026-01-01T00:10Z", "2026-01-01T02:00Z"]})
        >>> extras = leak_free_extras(history, history.iloc[[1]], _seconds(history["scheduled_start"])[[1]])
        >>> extras[["last_failed_log10_seconds", "running", "hours_since_submission"]].round(3).values.tolist()
        [[2.779, 0.0, 0.5]]
    """
    h = pd.DataFrame(
        {
            "flow": history["flow_name"].to_numpy(),
            "sub": _seconds(history["scheduled_start"].fillna(history["start_time"])),
            "start": _seconds(history["start_time"]),
            "end": _seconds(history["end_time"]),
            "failed": history["state"].isin(list(FAILURE_STATES)).to_numpy(),
            "req": _requested(history),
        }
    )
    ran = np.isfinite(h["end"]) & np.isfinite(h["start"])
    h["dur"] = np.where(ran, (h["end"] - h["start"]).clip(lower=0), np.nan)
    target_req = _requested(targets)
    out = {name: np.full(len(targets), np.nan) for name in EXTRA_COLUMNS}
    by_flow = dict(tuple(h.groupby("flow", sort=False)))
    for flow, positions in pd.Series(np.arange(len(targets))).groupby(targets["flow_name"].to_numpy()).indices.items():
        _describe(by_flow[flow], positions, cutoff, target_req, out)
    return pd.DataFrame(out, index=targets.index)


def _requested(runs: pd.DataFrame) -> np.ndarray:
    """The runs' requested seconds (NaN where unknown, or everywhere when the log has none)."""
    if "feature_requested_seconds" not in runs:
        return np.full(len(runs), np.nan)
    return pd.to_numeric(runs["feature_requested_seconds"], errors="coerce").to_numpy(dtype=float)


EXTRA_COLUMNS = (
    "last_log10_seconds",
    "last_failed_log10_seconds",
    "last_seconds_over_requested",
    "last_seconds_over_own_requested",
    "max5_seconds_over_requested",
    "limit_share_10",
    "submissions_hour",
    "hours_since_submission",
    "still_going_of_10",
    "running",
    "queued",
    "oldest_running_hours",
    "newest_running_hours",
)


def _describe(runs: pd.DataFrame, positions: np.ndarray, cutoff: np.ndarray, req: np.ndarray, out: dict) -> None:
    """Fill ``out`` at ``positions`` (targets of one flow) from that flow's ``runs``."""
    ended = runs.loc[np.isfinite(runs["end"])].sort_values("end", kind="stable")
    end, dur = ended["end"].to_numpy(), ended["dur"].to_numpy()
    own_req, failed = ended["req"].to_numpy(dtype=float), ended["failed"].to_numpy()
    hit_limit = dur >= 0.99 * own_req
    failed_at = np.flatnonzero(failed)
    submitted = runs.sort_values("sub", kind="stable")
    sub, start, sub_end = (submitted[c].to_numpy() for c in ("sub", "start", "end"))
    for i in positions:
        c = cutoff[i]
        k = int(np.searchsorted(end, c, side="left"))  # ended strictly before the cutoff
        if k:
            out["last_log10_seconds"][i] = np.log10(1 + dur[k - 1])
            out["last_seconds_over_requested"][i] = dur[k - 1] / req[i] if req[i] > 0 else np.nan
            out["last_seconds_over_own_requested"][i] = dur[k - 1] / own_req[k - 1] if own_req[k - 1] > 0 else np.nan
            if req[i] > 0:
                out["max5_seconds_over_requested"][i] = np.nanmax(dur[max(0, k - 5) : k]) / req[i]
            recent = hit_limit[max(0, k - 10) : k]
            out["limit_share_10"][i] = (recent.sum() + 0.5) / (len(recent) + 3)  # smoothed: few runs say little
            j = int(np.searchsorted(failed_at, k, side="left"))
            if j:
                out["last_failed_log10_seconds"][i] = np.log10(1 + dur[failed_at[j - 1]])
        m = int(np.searchsorted(sub, c, side="left"))  # submitted strictly before the cutoff
        out["submissions_hour"][i] = m - np.searchsorted(sub, c - _HOUR, side="left")
        out["hours_since_submission"][i] = (c - sub[m - 1]) / _HOUR if m else np.nan
        if m:
            going = sub_end[:m] >= c
            running = going & (start[:m] < c)
            out["still_going_of_10"][i] = going[-10:].sum()
            out["running"][i] = running.sum()
            out["queued"][i] = (going & ~running).sum()
            if running.any():
                out["oldest_running_hours"][i] = (c - start[:m][running].min()) / _HOUR
                out["newest_running_hours"][i] = (c - start[:m][running].max()) / _HOUR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", default=["KTH", "CTC"], help="Traces: CTC LANL KTH.")
    parser.add_argument("--family", default=DEFAULT_FAMILY, help=f"default: {DEFAULT_FAMILY}")
    parser.add_argument("--extras", action="store_true", help="Also backtest with the leak-free extra columns.")
    parser.add_argument("--cache", type=Path, default=None, help="Stores kept by bench/traces.py --cache.")
    args = parser.parse_args()

    from forewarn.learning.backtest import prepare_history, walk_forward_backtest

    for name in [n for n in DEFAULT_TRACES if label_of(n) in args.only]:
        runs, _ = load_runs(name, args.cache, 0)
        prep = prepare_history(runs)
        leak = leaky_column(prep.runs, prep.y, prep.sched, prep.end)
        leaky = dataclasses.replace(prep, X=prep.X.assign(**{LEAK: leak}))
        variants = [("as built", prep)]
        if args.extras:
            cutoff = prep.sched / 1e9  # the runs' scheduled starts, ns -> s
            extras = leak_free_extras(runs, prep.runs, cutoff).set_axis(prep.X.index)
            variants.append(("+ 13 leak-free", dataclasses.replace(prep, X=pd.concat([prep.X, extras], axis=1))))
        variants.append(("with the leak", leaky))
        for label, prepared in variants:
            result = walk_forward_backtest(runs, prepared=prepared, family=args.family)
            model = result.overall["model"]["pr_auc"]
            best = max(result.overall[s]["pr_auc"] for s in ("last_failed", "smoothed_rate"))
            print(f"{label_of(name):5s} {args.family:6s} {label:14s} PR-AUC {model:.3f} ({model / best:.3f}x)")


if __name__ == "__main__":
    main()
