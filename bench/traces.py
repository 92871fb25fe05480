"""Warnings on real job traces: import + walk-forward backtest of each SWF log and of simulated history.

For each log in ``../shared/data/traces/`` (Parallel Workloads Archive, see its README for the citation):
convert it with :func:`forewarn.history.swf.swf_to_runs` (flow = executable, else user; pre-run attributes as
``feature_*``; outcomes never), write the run-history CSV, import it into a fresh SQLite store, read it back
and backtest. Then the same for ``forewarn simulate`` history. One table, one row per history and system:

* PR-AUC, and its ratio to the better baseline's (the issue-9 target is 1.2x);
* WR at the threshold the backtest chose and the precision those warnings reached;
* WR at precision 0.5: the largest share of failures any single threshold warns at precision >= 0.5
  over all test runs (hindsight: an upper bound of what a well-chosen threshold gives).

    .venv/bin/python bench/traces.py                               # three traces + 50,000 simulated runs
    .venv/bin/python bench/traces.py --only KTH --families hgb logreg
    .venv/bin/python bench/traces.py --cache /tmp/traces           # keep the stores; later runs skip import
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from forewarn.learning.model import DEFAULT_FAMILY

TRACES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "traces"
DEFAULT_TRACES = (
    "CTC-SP2-1996-3.1-cln.swf.gz",
    "LANL-CM5-1994-4.1-cln.swf.gz",
    "KTH-SP2-1996-2.1-cln.swf.gz",
)
SIMULATED = "simulate"


def recall_at_precision(failed: np.ndarray, risk: np.ndarray, precision: float = 0.5) -> float:
    """The largest share of failures warned by one threshold ``risk >= t`` whose precision is >= ``precision``.

    Ties share a threshold (all runs of one risk are warned together); 0 when no threshold reaches it.

        >>> recall_at_precision(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.1]))
        1.0
        >>> recall_at_precision(np.array([0, 1]), np.array([0.9, 0.1]), 0.9)
        0.0
    """
    order = np.argsort(-risk, kind="stable")
    y, r = failed[order].astype(float), risk[order]
    tp = np.cumsum(y)
    last_of_tie = np.r_[r[1:] != r[:-1], True]
    tp, n = tp[last_of_tie], (np.flatnonzero(last_of_tie) + 1)
    ok = tp / n >= precision
    return float(tp[ok].max() / y.sum()) if ok.any() and y.sum() else 0.0


def history_csv(name: str, folder: Path, sim_runs: int) -> Path:
    """The run-history CSV of one trace (converted) or of simulated history."""
    from forewarn.history.simulate import write_simulated_history
    from forewarn.history.swf import swf_to_runs

    if name == SIMULATED:
        return write_simulated_history(folder / "simulate.csv", sim_runs, seed=0)
    return swf_to_runs(TRACES / name).to_csv(folder / f"{name.split('-')[0]}.csv")


def load_runs(name: str, cache: Path | None, sim_runs: int) -> tuple[pd.DataFrame, float]:
    """The imported runs of one history (from ``cache`` when already there) and the import's seconds."""
    from forewarn.history.importer import import_runs
    from forewarn.store import TelemetryStore

    folder = cache or Path(tempfile.mkdtemp())
    folder.mkdir(parents=True, exist_ok=True)
    label = label_of(name)
    db = folder / f"{label}.db"
    seconds = float("nan")
    if not db.exists():
        csv = history_csv(name, folder, sim_runs)
        store = TelemetryStore(f"sqlite:///{db}")
        start = time.perf_counter()
        import_runs(store, csv)
        seconds = time.perf_counter() - start
    else:
        store = TelemetryStore(f"sqlite:///{db}", create=False)
    runs = store.runs()
    store.close()
    return runs, seconds


def label_of(name: str) -> str:
    return name.split("-")[0] if name != SIMULATED else SIMULATED


def rows_of(label: str, result: Any, family: str) -> list[dict[str, Any]]:
    """One table row per system (the model as ``family``, then both baselines)."""
    pred = result.predictions
    failed = pred["failed"].to_numpy(dtype=int)
    best_baseline = max(result.overall[s]["pr_auc"] or 0.0 for s in ("last_failed", "smoothed_rate"))
    out = []
    for system, risk_column in (
        ("model", "risk"),
        ("last_failed", "last_failed_risk"),
        ("smoothed_rate", "smoothed_rate_risk"),
    ):
        m = result.overall[system]
        out.append(
            {
                "history": label,
                "system": family if system == "model" else system,
                "runs": m["runs"],
                "failures": m["failures"],
                "pr_auc": m["pr_auc"],
                "x_best_baseline": (m["pr_auc"] or 0.0) / best_baseline if best_baseline else float("nan"),
                "WR": m["WR"],
                "precision": m["precision"],
                "WR_at_p50": recall_at_precision(failed, pred[risk_column].to_numpy(dtype=float)),
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", default=None, help="Labels to run: CTC LANL KTH simulate.")
    parser.add_argument("--families", nargs="*", default=[DEFAULT_FAMILY], help=f"default: {DEFAULT_FAMILY}")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--sim-runs", type=int, default=50_000)
    parser.add_argument("--cache", type=Path, default=None, help="Keep the stores here and reuse them.")
    args = parser.parse_args()

    from forewarn.learning.backtest import prepare_history, walk_forward_backtest

    names = [*DEFAULT_TRACES, SIMULATED]
    if args.only:
        names = [n for n in names if label_of(n) in args.only]
    rows: list[dict[str, Any]] = []
    for name in names:
        label = label_of(name)
        runs, import_seconds = load_runs(name, args.cache, args.sim_runs)
        cpu = resource.getrusage(resource.RUSAGE_SELF).ru_utime
        prep = prepare_history(runs)
        print(
            f"{label}: {len(runs):,} runs, {runs['flow_name'].nunique():,} flows; import {import_seconds:.1f} s; "
            f"features {prep.features_seconds:.1f} s wall, "
            f"{resource.getrusage(resource.RUSAGE_SELF).ru_utime - cpu:.1f} s CPU",
            flush=True,
        )
        for family in args.families:
            start = time.perf_counter()
            result = walk_forward_backtest(runs, n_folds=args.folds, family=family)  # features again: ~1 s
            print(f"  {family}: backtest {time.perf_counter() - start:.1f} s", flush=True)
            family_rows = rows_of(label, result, family)
            rows += family_rows if family == args.families[0] else family_rows[:1]
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.float_format", "{:.3f}".format):
        print(table.to_string(index=False))
    print(f"load average: {Path('/proc/loadavg').read_text().split()[:3]}")


if __name__ == "__main__":
    main()
