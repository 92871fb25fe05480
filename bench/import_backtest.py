"""Import plus walk-forward backtest of a large simulated history, end to end (target: 400,000 runs < 5 min).

Stages timed separately: simulate to CSV (not part of the target), import into a fresh SQLite store, read
the history back, and the backtest (features once, then one model fit per fold).

    .venv/bin/python bench/import_backtest.py                 # 400,000 runs, 5 folds
    .venv/bin/python bench/import_backtest.py --runs 100000
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=400_000)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from forewarn.history.importer import import_runs
    from forewarn.history.simulate import write_simulated_history
    from forewarn.learning.backtest import walk_forward_backtest
    from forewarn.store import TelemetryStore

    tmp = Path(tempfile.mkdtemp())
    t = time.perf_counter()
    csv = write_simulated_history(tmp / "history.csv", args.runs, seed=args.seed)
    simulated = time.perf_counter() - t

    start = time.perf_counter()
    store = TelemetryStore(f"sqlite:///{tmp / 'store.db'}")
    imported = import_runs(store, csv)
    t_import = time.perf_counter() - start
    t = time.perf_counter()
    runs = store.runs()
    t_read = time.perf_counter() - t
    t = time.perf_counter()
    result = walk_forward_backtest(runs, None, n_folds=args.folds)
    t_backtest = time.perf_counter() - t
    total = time.perf_counter() - start

    model, last, smooth = (result.overall[k] for k in ("model", "last_failed", "smoothed_rate"))
    print(f"runs: {imported.imported:,} ({args.folds} folds)   simulate+write CSV: {simulated:.1f} s (not counted)")
    print(
        f"import: {t_import:.1f} s   read back: {t_read:.1f} s   backtest: {t_backtest:.1f} s "
        f"(features {result.timings.get('features_seconds', float('nan')):.1f} s)"
    )
    print(f"import + backtest total: {total:.1f} s  (target < 300 s)")
    print(
        f"PR-AUC model {model['pr_auc']:.3f} vs last_failed {last['pr_auc']:.3f} vs smoothed_rate "
        f"{smooth['pr_auc']:.3f};  WR {model['WR']:.3f} at precision {model['precision']:.3f}"
    )


if __name__ == "__main__":
    main()
