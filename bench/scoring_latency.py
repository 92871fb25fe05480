"""Latency of scoring one flow run (features + model) with about 1,000,000 task attempts in the store.

The store holds a simulated history (``forewarn.simulate``: 12 flows, ~410 runs a day) of ``--runs`` runs
and their simulated task attempts (~3.3 per run, so the default 305,000 runs give ~1,000,000 attempts),
written in bulk. A small model is trained on the most recent ``--train-runs`` runs and saved. Then the
last ``--targets`` runs are scored one at a time, each at its scheduled start, the way the pre-run hook
scores a starting run: before each score the runs and attempts that ended since the previous one are
written to the store (untimed), as a live system writes them. Each figure is the wall time of one
``forewarn.scoring.score_runs`` call: reading the history window, ``build_features``, the model's risk and,
for a warned run only, its top-3 reasons.

* **cold**: ``cache=False``, every score reads its whole history window (30 days + 6 h of runs, 6 h of
  attempts) from the store, as the first score of a fresh process does;
* **warm**: the process's ``HistoryCache``, which re-reads only the rows that ended since the last score
  (the first score, a full read, is reported on its own).

    .venv/bin/python bench/scoring_latency.py                         # builds /tmp/forewarn-bench/store.db once
    .venv/bin/python bench/scoring_latency.py --targets 1000 --rebuild
    .venv/bin/python bench/scoring_latency.py --warm-only --profile 30   # cProfile the warm scores

Building the store takes about a minute the first time; later runs reuse it (``--rebuild`` to redo it).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import numpy as np
import pandas as pd


def percentiles(samples: list[float]) -> str:
    ms = np.asarray(samples) * 1000
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return f"p50 {p50:6.1f} ms   p95 {p95:6.1f} ms   p99 {p99:6.1f} ms   max {ms.max():6.1f} ms   (n={len(ms)})"


def simulated(n_runs: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    from forewarn.simulate import (
        history_to_attempts_frame,
        history_to_runs_frame,
        simulate_history,
        simulated_attempts,
    )

    raw = simulate_history(n_runs, seed=0, include_cause=True)
    runs = history_to_runs_frame(raw.drop(columns="failure_cause"))
    attempts = history_to_attempts_frame(simulated_attempts(raw, seed=0))
    attempts["task_run_id"] = attempts["flow_run_id"] + ":" + attempts["task_name"]
    return runs, attempts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=305_000, help="simulated runs (~3.3 attempts each)")
    parser.add_argument("--targets", type=int, default=500, help="runs scored one by one, per mode")
    parser.add_argument("--train-runs", type=int, default=30_000, help="most recent runs the model learns from")
    parser.add_argument("--dir", default=str(Path(tempfile.gettempdir()) / "forewarn-bench"))
    parser.add_argument("--rebuild", action="store_true", help="rebuild the store even if it exists")
    parser.add_argument("--warm-only", action="store_true", help="skip the cold pass (a shorter run)")
    parser.add_argument(
        "--profile", metavar="N", type=int, default=0, help="cProfile the warm score_runs calls, print the top N"
    )
    args = parser.parse_args()

    from forewarn.features import build_features, failure_labels
    from forewarn.model import FailureWarningModel, save_model
    from forewarn.scoring import HistoryCache, clear_model_cache, load_current_model, score_runs
    from forewarn.store import TelemetryStore

    work = Path(args.dir)
    work.mkdir(parents=True, exist_ok=True)
    db = work / f"store-{args.runs}-{args.targets}.db"
    t0 = time.perf_counter()
    runs, attempts = simulated(args.runs + args.targets)
    runs = runs.sort_values("scheduled_start", kind="stable").reset_index(drop=True)
    targets = runs.iloc[-args.targets :].reset_index(drop=True)
    first_now = targets["scheduled_start"].iloc[0]
    ended = runs["end_time"].notna() & (runs["end_time"] < first_now)
    print(f"simulated {len(runs):,} runs and {len(attempts):,} attempts in {time.perf_counter() - t0:.1f} s")

    if args.rebuild and db.exists():
        db.unlink()
    fresh = not db.exists()
    store = TelemetryStore(f"sqlite:///{db}")
    if fresh:
        t0 = time.perf_counter()
        store.record_runs_frame(runs.loc[ended])
        early = attempts["end_time"] < first_now
        store.record_attempts_frame(attempts.loc[early])
        print(f"wrote the store {db} in {time.perf_counter() - t0:.1f} s")
    with store.engine.connect() as conn:
        n_attempts = conn.exec_driver_sql("select count(*) from task_attempts").scalar() or 0
        n_runs = conn.exec_driver_sql("select count(*) from flow_runs").scalar() or 0
    print(f"store: {n_runs:,} runs, {n_attempts:,} attempts")

    model_dir = work / f"models-{args.runs}-{args.train_runs}"
    if fresh or load_current_model(model_dir) is None:
        t0 = time.perf_counter()
        history = runs.loc[ended]
        train = history.iloc[-args.train_runs :]
        X = build_features(train, history, attempts.loc[attempts["end_time"] < first_now])
        y = failure_labels(train)
        model = FailureWarningModel().fit(X, y)
        window = (train["scheduled_start"].min(), train["scheduled_start"].max())
        save_model(model, model_dir, training_window=window)
        print(f"trained on {len(train):,} runs in {time.perf_counter() - t0:.1f} s")
    clear_model_cache()
    t0 = time.perf_counter()
    loaded = load_current_model(model_dir)
    assert loaded is not None
    model, manifest = loaded
    print(f"loaded model {manifest.version} (checksum verified) in {(time.perf_counter() - t0) * 1000:.0f} ms")

    by_end = runs.loc[runs["end_time"].notna()].sort_values("end_time", kind="stable")
    att_by_end = attempts.sort_values("end_time", kind="stable")

    def arrivals(since: pd.Timestamp, until: pd.Timestamp) -> None:
        """Write what ended in [since, until): a live store receives it between two scores."""
        new = by_end.loc[(by_end["end_time"] >= since) & (by_end["end_time"] < until)]
        if len(new):
            store.record_runs_frame(new, source="forewarn")
        new_att = att_by_end.loc[(att_by_end["end_time"] >= since) & (att_by_end["end_time"] < until)]
        if len(new_att):
            store.record_attempts_frame(new_att)

    # where the warm time goes: time the stages of score_runs (build_features, the model, the cache)
    import forewarn.features as features
    import forewarn.scoring as scoring

    stages: dict[str, list[float]] = {}

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                if stages_on:
                    stages.setdefault(name, []).append(time.perf_counter() - t0)

        return wrapper

    stages_on = False
    profiler: Any = None
    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
    scoring.build_features = timed("build_features", scoring.build_features)  # type: ignore[assignment]
    HistoryCache.read = timed("history read (cache)", HistoryCache.read)  # type: ignore[method-assign]
    # inside the history read: the store's queries, and preparing what they return
    store.ended_rows = timed("  store.ended_rows (each of 2)", store.ended_rows)  # type: ignore[method-assign]
    store.count_ended = timed("  store.count_ended (each of 2)", store.count_ended)  # type: ignore[method-assign]
    features.RunIndex.from_frame = timed("  RunIndex.from_frame", features.RunIndex.from_frame)  # type: ignore[method-assign]
    features.AttemptIndex.from_frame = timed("  AttemptIndex.from_frame", features.AttemptIndex.from_frame)  # type: ignore[method-assign]
    model.risk = timed("model.risk", model.risk)  # type: ignore[method-assign]
    model.explain = timed("model.explain (top 3)", model.explain)  # type: ignore[method-assign]

    # one pass per mode over the same targets; the rows written during a pass are removed after it
    results: dict[str, list[float]] = {}
    first_warm = 0.0
    for mode in ("warm",) if args.warm_only else ("cold", "warm"):
        cache: HistoryCache | bool = HistoryCache(store) if mode == "warm" else False
        previous = first_now
        samples = []
        gc.collect()
        for i in range(len(targets)):
            target = targets.iloc[[i]]
            now = target["scheduled_start"].iloc[0] + pd.Timedelta(milliseconds=500)
            arrivals(previous, now)
            previous = now
            stages_on = mode == "warm" and i > 0
            if profiler is not None and stages_on:
                profiler.enable()
            t0 = time.perf_counter()
            table = score_runs(store, target, model, manifest, now=now.to_pydatetime(), cache=cache)
            elapsed = time.perf_counter() - t0
            if profiler is not None:
                profiler.disable()
            stages_on = False
            if mode == "warm" and i == 0:
                first_warm = elapsed
            else:
                samples.append(elapsed)
            assert len(table) == 1
        results[mode] = samples
        if isinstance(cache, HistoryCache):
            print(f"warm cache reads: {cache.reads}")
        start = (first_now.strftime("%Y-%m-%d %H:%M:%S.%f"),)
        with store.engine.connect() as conn:  # back to the starting store for the next pass
            conn.exec_driver_sql("delete from flow_runs where end_time >= ?", start)
            conn.exec_driver_sql("delete from task_attempts where end_time >= ?", start)

    print()
    print(f"scoring one run, {n_attempts:,} attempts in the store (features + model + reasons if warned):")
    if "cold" in results:
        print(f"  cold (whole window read each time): {percentiles(results['cold'])}")
    print(f"  warm (HistoryCache, delta reads):   {percentiles(results['warm'])}")
    print(f"  first score of a process (full window read into the cache): {first_warm * 1000:.1f} ms")
    print("  warm, by stage:")
    for name, samples in stages.items():
        print(f"    {name:24s} {percentiles(samples)}")
    if "cold" in results:
        print(f"  median cold/warm: {statistics.median(results['cold']) / statistics.median(results['warm']):.1f}x")
    if args.profile:
        print()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(args.profile)


if __name__ == "__main__":
    main()
