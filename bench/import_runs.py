"""How fast `forewarn import-runs` loads a large run history (target: 400,000 runs in under 30 s on SQLite).

Simulates N runs (``forewarn.history.simulate.write_simulated_history``) to a CSV in a temporary directory, then
imports it into a fresh SQLite store in the same directory and reports, for each step, the wall-clock time
and rows per second: the first import (all inserts), the same file again (all upserts: nothing changes),
and reading every run back with ``TelemetryStore.runs()``. With ``--db`` the same file is also imported
into that store (PostgreSQL, say); use an empty database for a first-import figure. ``--attempts`` also
simulates and imports the runs' task attempts.

    .venv/bin/python bench/import_runs.py                         # 400,000 runs, SQLite
    .venv/bin/python bench/import_runs.py --runs 100000 --attempts
    .venv/bin/python bench/import_runs.py --db postgresql+psycopg://postgres@127.0.0.1:5432/bench
"""

from __future__ import annotations

import argparse
import functools
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def timed(label: str, rows: int, work: Callable[[], Any]) -> Any:
    """Run ``work``, print its wall-clock time and rows per second, return its result."""
    started = time.perf_counter()
    result = work()
    seconds = time.perf_counter() - started
    print(f"  {label:<44} {seconds:7.2f} s  {rows / seconds:>10,.0f} rows/s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=400_000, help="simulated runs (default 400,000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--db", default=None, help="also import into this store URL (e.g. PostgreSQL)")
    parser.add_argument("--attempts", action="store_true", help="also simulate and import the task attempts")
    parser.add_argument("--chunk-rows", type=int, default=50_000, help="rows per executemany (default 50,000)")
    args = parser.parse_args()

    from forewarn.history.importer import import_attempts, import_runs
    from forewarn.history.simulate import simulate_history, simulated_attempts
    from forewarn.store import TelemetryStore

    folder = Path(tempfile.mkdtemp(prefix="forewarn-bench-"))
    runs_csv, attempts_csv = folder / "runs.csv", folder / "attempts.csv"
    print(f"forewarn import benchmark: {args.runs:,} simulated runs, {os.cpu_count()} CPUs, files in {folder}")

    def simulate() -> int:
        history = simulate_history(args.runs, seed=args.seed, include_cause=args.attempts)
        if args.attempts:
            simulated_attempts(history, seed=args.seed).to_csv(attempts_csv, index=False)
            history = history.drop(columns="failure_cause")
        history.to_csv(runs_csv, index=False)
        return len(history)

    timed("simulate and write the CSV", args.runs, simulate)
    size = runs_csv.stat().st_size / 1e6
    n_attempts = sum(1 for _ in attempts_csv.open()) - 1 if args.attempts else 0
    print(f"  runs.csv: {size:,.1f} MB" + (f"; attempts.csv: {n_attempts:,} attempts" if args.attempts else ""))

    targets = [("SQLite (fresh file)", f"sqlite:///{folder / 'telemetry.db'}")]
    if args.db:
        targets.append(("--db", args.db))
    for name, url in targets:
        with TelemetryStore(url) as store:
            print(f"{name}: {store.url}")
            if len(store.runs(limit=1)):
                print("  (the store already holds runs: the first import below upserts over them)")
            load_runs = functools.partial(import_runs, store, runs_csv, chunk_rows=args.chunk_rows)
            result = timed("import-runs (first import)", args.runs, load_runs)
            assert result.imported == args.runs, result
            timed("import-runs again (all upserts, idempotent)", args.runs, load_runs)
            frame = timed("runs() reads every run back", args.runs, store.runs)
            assert len(frame) >= args.runs
            if args.attempts:
                load = functools.partial(import_attempts, store, attempts_csv, chunk_rows=args.chunk_rows)
                timed("import-attempts", n_attempts, load)


if __name__ == "__main__":
    main()
