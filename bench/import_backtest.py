"""Import plus walk-forward backtest of a large simulated history, end to end (target: 400,000 runs < 2 min).

Stages timed separately, each with its wall time and this process's CPU time (all threads): simulate to CSV
(not part of the target), import into a fresh SQLite store, read the history back, and the backtest
(features once, then per fold two classifier fits: a copy on the earliest 70 % of the training runs, whose
out-of-time scores calibrate the one fitted on all of them and choose the threshold; each fit on at most
``max_fit_rows`` runs, all failures and a weighted sample of the successes). The machine is shared: the load
average before and after is printed with the figures, and the CPU times are the steadier figure to compare.
``--fit-threads 1`` compares a one-thread fit, ``--max-fit-rows 0`` fits on every run.

    .venv/bin/python bench/import_backtest.py                 # 400,000 runs, 5 folds
    .venv/bin/python bench/import_backtest.py --runs 100000 --fit-threads 1
    .venv/bin/python bench/import_backtest.py --max-fit-rows 0
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from forewarn.learning.model import DEFAULT_FAMILY


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


class Clock:
    """Wall and CPU seconds since the last lap."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def lap(self) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        out = (wall - self.wall, cpu - self.cpu)
        self.wall, self.cpu = wall, cpu
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=400_000)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--family", default=DEFAULT_FAMILY, help=f"model family: stack, hgb, logreg or mean (default {DEFAULT_FAMILY})"
    )
    parser.add_argument("--fit-threads", type=int, default=None, help="OpenMP threads of each fit (default: auto)")
    parser.add_argument(
        "--max-fit-rows", type=int, default=None, help="rows a classifier fits on (default: the model's; 0: all)"
    )
    args = parser.parse_args()

    from forewarn.history.importer import import_runs
    from forewarn.history.simulate import write_simulated_history
    from forewarn.learning._openmp import PASSIVE_WAITING
    from forewarn.learning.backtest import walk_forward_backtest
    from forewarn.store import TelemetryStore

    tmp = Path(tempfile.mkdtemp())
    clock = Clock()
    csv = write_simulated_history(tmp / "history.csv", args.runs, seed=args.seed)
    simulated, _ = clock.lap()

    load_before = load_average()
    start = Clock()
    store = TelemetryStore(f"sqlite:///{tmp / 'store.db'}")
    imported = import_runs(store, csv)
    t_import = clock.lap()
    runs = store.runs()
    t_read = clock.lap()
    params: dict[str, int | None] = {} if args.fit_threads is None else {"fit_threads": args.fit_threads}
    if args.max_fit_rows is not None:
        params["max_fit_rows"] = args.max_fit_rows or None
    result = walk_forward_backtest(runs, None, n_folds=args.folds, family=args.family, model_params=params)
    t_backtest = clock.lap()
    total = start.lap()

    model, last, smooth = (result.overall[k] for k in ("model", "last_failed", "smoothed_rate"))
    print(f"runs: {imported.imported:,} ({args.folds} folds)   simulate+write CSV: {simulated:.1f} s (not counted)")
    print(
        f"{os.cpu_count()} CPUs; family {args.family}; fit threads {args.fit_threads or 'auto'}; "
        f"passive OpenMP waits: {PASSIVE_WAITING}; "
        f"max fit rows {result.params.get('max_fit_rows', 'default')}"
    )
    for name, (wall, cpu) in (("import", t_import), ("read back", t_read), ("backtest", t_backtest)):
        print(f"  {name:<10} wall {wall:6.1f} s   CPU {cpu:6.1f} s")
    print(
        f"  (backtest: features {result.timings['features_seconds']:.1f} s, fits {result.timings['fit_seconds']:.1f} s "
        "wall)"
    )
    print(f"import + backtest total: wall {total[0]:.1f} s, CPU {total[1]:.1f} s  (target < 120 s)")
    print(f"load average before: {load_before}; after: {load_average()}")
    print(
        f"PR-AUC model {model['pr_auc']:.3f} vs last_failed {last['pr_auc']:.3f} vs smoothed_rate "
        f"{smooth['pr_auc']:.3f};  WR {model['WR']:.3f} at precision {model['precision']:.3f}"
    )
    spread = result.overall["operating_point"]
    print(
        f"per fold: precision {spread['precision'][0]:.3f}-{spread['precision'][1]:.3f}, warned "
        f"{spread['alert_share'][0]:.1%}-{spread['alert_share'][1]:.1%}, WR/best WR "
        f"{spread['WR_to_best'][0]:.2f}-{spread['WR_to_best'][1]:.2f}; {spread['folds_on_target']} of "
        f"{spread['folds']} folds on target"
    )


if __name__ == "__main__":
    main()
