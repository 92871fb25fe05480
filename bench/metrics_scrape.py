"""Cost of one uncached Prometheus scrape (`TelemetryStore.totals`) and one `forewarn monitor` report, large store.

.venv/bin/python bench/metrics_scrape.py                     # 300,000 simulated runs (~1,000,000 attempts), SQLite
.venv/bin/python bench/metrics_scrape.py --runs 30000        # a quick look

The store is filled through the CSV importers; the last 20% of runs get one seeded random prediction each
(a live model's hook). Each figure is the median of --repeats calls, wall and CPU (this process's) time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from datetime import timedelta
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from forewarn.history.importer import import_attempts, import_runs
from forewarn.history.simulate import simulate_history, simulated_attempts
from forewarn.records import PredictionRecord
from forewarn.scoring.monitor import monitor_store
from forewarn.store import TelemetryStore


def fill(directory: Path, n_runs: int) -> TelemetryStore:
    history = simulate_history(n_runs, seed=3, include_cause=True)
    simulated_attempts(history, seed=3).to_csv(directory / "attempts.csv", index=False)
    history.drop(columns="failure_cause").to_csv(directory / "runs.csv", index=False)
    store = TelemetryStore(f"sqlite:///{directory / 'bench.db'}")
    import_runs(store, directory / "runs.csv")
    import_attempts(store, directory / "attempts.csv")
    runs = store.runs().sort_values("scheduled_start")
    late = runs.iloc[int(len(runs) * 0.8) :]
    risk = np.random.default_rng(3).beta(1, 12, len(late))
    store.record_predictions(
        PredictionRecord(r.flow_run_id, r.flow_name, r.scheduled_start.to_pydatetime(), float(p), 0.3, "bench")
        for r, p in zip(late.itertuples(), risk, strict=True)
    )
    return store


def timed(call, repeats: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        call()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=300_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("FOREWARN_SPOOL_DIR", "")  # reads only; no spool to wait on
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        store = fill(Path(tmp), args.runs)
        everything = (pd.Timestamp(0, tz="UTC"), pd.Timestamp.now(tz="UTC"))
        runs, attempts = (store.count_ended(table, *everything) for table in ("flow_runs", "task_attempts"))
        print(f"filled {runs:,} ended runs, {attempts:,} attempts in {time.perf_counter() - start:.0f} s")
        now = store.runs(limit=1)["start_time"].iloc[-1].to_pydatetime() + timedelta(seconds=1)
        since = now - timedelta(days=7)
        median = f"median of {args.repeats}"
        for counts, what in [(True, "with the whole-store counters"), (False, "windowed figures only")]:
            read = partial(store.totals, since=since, until=now, model_version="bench", counts=counts)
            wall, cpu = timed(read, args.repeats)
            print(f"totals, {what}: {wall * 1e3:.0f} ms wall, {cpu * 1e3:.0f} ms CPU ({median})")
        models = Path(tmp) / "no-models"
        wall, cpu = timed(lambda: monitor_store(store, model_dir=models, now=now), args.repeats)
        print(f"monitor_store (28 days, weekly): {wall * 1e3:.0f} ms wall, {cpu * 1e3:.0f} ms CPU ({median})")
        print(f"load average: {Path('/proc/loadavg').read_text().strip()}")


if __name__ == "__main__":
    main()
