"""Latency of scoring one flow run (features + model) with about 1,000,000 task attempts in the store.

The store holds a simulated history (``forewarn.history.simulate``: 12 flows, ~410 runs a day) of ``--runs`` runs
and their simulated task attempts (~3.3 per run, so the default 305,000 runs give ~1,000,000 attempts),
written in bulk. A small model is trained on the most recent ``--train-runs`` runs and saved. Then the
last ``--targets`` runs are scored one at a time, each at its scheduled start, the way the pre-run hook
scores a starting run: before each score the runs and attempts that ended since the previous one are
written to the store (untimed), as a live system writes them. Each figure is the wall time of one
``forewarn.scoring.live.score_runs`` call: reading the history window, ``build_features``, the model's risk and,
for a warned run only, its top-3 reasons.

* **cold**: ``cache=False``, every score reads its whole history window (30 days + 6 h of runs, 6 h of
  attempts) from the store, as the first score of a fresh process does;
* **warm**: the process's ``HistoryCache``, which re-reads only the rows that ended since the last score
  (the first score, a full read, is reported on its own);
* **fresh**: every score uses a new ``HistoryCache`` - as the first score of a new process does, in a
  process-per-run worker - that starts from the history snapshot (``forewarn.scoring.snapshot``) an earlier
  score saved, reads only what ended since, and saves the snapshot again once 500 rows have become
  stable since it was saved (the first score of the pass finds no snapshot, reads in full and saves; it
  is reported on its own). These processes live in this one, so the figures leave out what a new Python
  process pays once (imports, the model load, first calls);
* **process** (not run by default): the first ``--processes`` targets are each scored by a new Python
  process, as a process-per-run worker does: every other one starts from the snapshot (``fresh``), the
  others from nothing (``cold``). Reported: the first ``score_runs`` call of each process, and what the
  process paid before it (imports, opening the store, loading the model).

    .venv/bin/python bench/scoring_latency.py                         # builds /tmp/forewarn-bench/store.db once
    .venv/bin/python bench/scoring_latency.py --targets 1000 --rebuild
    .venv/bin/python bench/scoring_latency.py --modes warm,fresh      # skip the cold pass (--warm-only: warm)
    .venv/bin/python bench/scoring_latency.py --modes process --processes 40   # real new processes
    .venv/bin/python bench/scoring_latency.py --warm-only --profile 30   # cProfile the warm scores
    .venv/bin/python bench/scoring_latency.py --warm-only --paths fast,public   # the model's two scoring paths

Building the store takes about a minute the first time; later runs reuse it (``--rebuild`` to redo it).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
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
    from forewarn.history.simulate import (
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


CHILD = """
import json, sys, time
t0 = time.perf_counter()
import pandas as pd
from forewarn.scoring import HistoryCache, load_current_model, score_runs
from forewarn.store import TelemetryStore
t1 = time.perf_counter()
url, model_dir, target_path, now, snapshot = sys.argv[1:]
store = TelemetryStore(url)
model, manifest = load_current_model(model_dir)
target = pd.read_pickle(target_path)
t2 = time.perf_counter()
cache = HistoryCache(store, snapshot=snapshot or None)
table = score_runs(store, target, model, manifest, now=pd.Timestamp(now).to_pydatetime(), cache=cache)
t3 = time.perf_counter()
print(json.dumps({"imports": t1 - t0, "setup": t2 - t1, "score": t3 - t2, "full": cache.reads["runs_full"],
                  "saved": cache.snapshots["saved"]}))
"""
"""A new process's pre-run score: imports, store and model, then one score_runs (printed as JSON)."""


def score_in_new_process(
    url: str, model_dir: Path, target: pd.DataFrame, now: pd.Timestamp, snapshot: Path | None
) -> dict[str, float]:
    """Score ``target`` in a new Python process (as a process-per-run worker does); its timings."""
    with tempfile.NamedTemporaryFile(suffix=".pkl") as fh:
        target.to_pickle(fh.name)
        argv = [url, str(model_dir), fh.name, now.isoformat(), str(snapshot or "")]
        out = subprocess.run([sys.executable, "-c", CHILD, *argv], check=True, capture_output=True, text=True)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=305_000, help="simulated runs (~3.3 attempts each)")
    parser.add_argument("--targets", type=int, default=500, help="runs scored one by one, per mode")
    parser.add_argument("--train-runs", type=int, default=30_000, help="most recent runs the model learns from")
    parser.add_argument("--dir", default=str(Path(tempfile.gettempdir()) / "forewarn-bench"))
    parser.add_argument("--rebuild", action="store_true", help="rebuild the store even if it exists")
    parser.add_argument("--warm-only", action="store_true", help="only the warm pass (same as --modes warm)")
    parser.add_argument(
        "--modes", default="cold,warm,fresh", help="the passes to run, comma-separated: cold, warm, fresh, process"
    )
    parser.add_argument("--processes", type=int, default=40, help="targets scored in new processes (process mode)")
    parser.add_argument(
        "--paths",
        default="fast",
        help="the model's scoring paths, comma-separated: fast (on scikit-learn's private attributes, when the "
        "installed release is one it was tested on), public (Pipeline.predict_proba); with both, each target "
        "is scored once by each, in alternating order",
    )
    parser.add_argument(
        "--profile",
        metavar="N",
        type=int,
        default=0,
        help="cProfile the warm (else fresh) score_runs calls, print the top N",
    )
    args = parser.parse_args()
    modes = ["warm"] if args.warm_only else [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or set(modes) - {"cold", "warm", "fresh", "process"}:
        parser.error(f"--modes {args.modes!r}: expected a comma-separated list of cold, warm, fresh, process")
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    if not paths or set(paths) - {"fast", "public"} or len(set(paths)) < len(paths):
        parser.error(f"--paths {args.paths!r}: expected fast, public or fast,public")

    import sklearn

    import forewarn.learning.model._sklearn_fast as sklearn_fast
    from forewarn.errors import UntrustedModelError
    from forewarn.learning.features import build_features, failure_labels
    from forewarn.learning.model import FailureWarningModel, save_model
    from forewarn.scoring import HistoryCache, clear_model_cache, configured_model_key, load_current_model, score_runs
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
    try:
        retrain = fresh or load_current_model(model_dir) is None
    except UntrustedModelError:  # saved before models were signed, or with another key
        retrain = True
    if retrain:
        t0 = time.perf_counter()
        history = runs.loc[ended]
        train = history.iloc[-args.train_runs :]
        X = build_features(train, history, attempts.loc[attempts["end_time"] < first_now])
        y = failure_labels(train)
        model = FailureWarningModel().fit(X, y)
        window = (train["scheduled_start"].min(), train["scheduled_start"].max())
        save_model(model, model_dir, training_window=window, key=configured_model_key(create=True))
        print(f"trained on {len(train):,} runs in {time.perf_counter() - t0:.1f} s")
    clear_model_cache()
    t0 = time.perf_counter()
    loaded = load_current_model(model_dir)
    assert loaded is not None
    model, manifest = loaded
    print(f"loaded model {manifest.version} (signature verified) in {(time.perf_counter() - t0) * 1000:.0f} ms")

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
    import forewarn.learning.features as features
    import forewarn.scoring.cache as scoring_cache
    import forewarn.scoring.live as scoring

    stages: dict[str, dict[str, list[float]]] = {}
    stage_mode = ""  # the pass whose stages are being timed, "" for none

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                if stage_mode:
                    stages.setdefault(stage_mode, {}).setdefault(name, []).append(time.perf_counter() - t0)

        return wrapper

    profiler: Any = None
    profiled = "warm" if "warm" in modes else "fresh"
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
    scoring_cache.load_snapshot = timed("  load_snapshot", scoring_cache.load_snapshot)  # type: ignore[assignment]
    scoring_cache.save_snapshot = timed("  save_snapshot", scoring_cache.save_snapshot)  # type: ignore[assignment]
    model.risk = timed("model.risk", model.risk)  # type: ignore[method-assign]
    model.explain = timed("model.explain (top 3)", model.explain)  # type: ignore[method-assign]

    # one pass per mode over the same targets; the rows written during a pass are removed after it
    snapshot = work / "snapshot" / f"history-{args.runs}-{args.targets}.npz"
    results: dict[str, list[float]] = {}  # by mode, or by "<mode>, <path> path" with several paths
    fast_enabled = sklearn_fast.ENABLED
    if "fast" in paths and not fast_enabled:
        print(f"note: scikit-learn {sklearn.__version__} is outside the fast path's tested range: both are public")
    first: dict[str, float] = {}
    fresh_saved: list[bool] = []  # per fresh score after the first: did it save the snapshot
    snapshot_size = 0
    processes: list[dict[str, float]] = []  # per new process: its timings, and whether it had a snapshot
    for mode in modes:
        cache: HistoryCache | bool = HistoryCache(store) if mode == "warm" else False
        snapshot.unlink(missing_ok=True)  # a fresh pass starts with no snapshot
        previous = first_now
        by_key: dict[str, list[float]] = {}
        gc.collect()
        for i in range(min(len(targets), args.processes) if mode == "process" else len(targets)):
            target = targets.iloc[[i]]
            now = target["scheduled_start"].iloc[0] + pd.Timedelta(milliseconds=500)
            arrivals(previous, now)
            previous = now
            if mode == "process":  # even targets from the snapshot, odd ones from nothing
                use = snapshot if i % 2 == 0 else None
                timings = score_in_new_process(store.url, model_dir, target, now, use)
                processes.append({**timings, "snapshot": float(use is not None), "first": float(i == 0)})
                continue
            order = paths if i % 2 == 0 else paths[::-1]  # alternate which path scores first
            for path in order:
                key = mode if len(paths) == 1 else f"{mode}, {path} path"
                sklearn_fast.ENABLED = fast_enabled and path == "fast"
                stage_mode = key if mode != "cold" and i > 0 else ""
                if profiler is not None and mode == profiled and i > 0:
                    profiler.enable()
                t0 = time.perf_counter()
                if mode == "fresh":  # a new process: a new cache that starts from the snapshot
                    cache = HistoryCache(store, snapshot=snapshot)
                table = score_runs(store, target, model, manifest, now=now.to_pydatetime(), cache=cache)
                elapsed = time.perf_counter() - t0
                if profiler is not None:
                    profiler.disable()
                stage_mode = ""
                if mode != "cold" and i == 0:
                    first[key] = elapsed
                else:
                    by_key.setdefault(key, []).append(elapsed)
                    if isinstance(cache, HistoryCache) and mode == "fresh" and path == paths[0]:
                        fresh_saved.append(cache.snapshots["saved"] > 0)
                assert len(table) == 1
        sklearn_fast.ENABLED = fast_enabled
        results.update(by_key)
        if isinstance(cache, HistoryCache):
            print(f"{mode} cache reads (the last cache): {cache.reads}, snapshot: {cache.snapshots}")
        if mode == "fresh":
            snapshot_size = snapshot.stat().st_size
        start = (first_now.strftime("%Y-%m-%d %H:%M:%S.%f"),)
        with store.engine.connect() as conn:  # back to the starting store for the next pass
            conn.exec_driver_sql("delete from flow_runs where end_time >= ?", start)
            conn.exec_driver_sql("delete from task_attempts where end_time >= ?", start)

    print()
    print(f"scoring one run, {n_attempts:,} attempts in the store (features + model + reasons if warned):")
    labels = {
        "cold": "cold (whole window read each time)",
        "warm": "warm (HistoryCache, delta reads)",
        "fresh": "fresh (new HistoryCache + snapshot)",
    }
    for key, samples_of in results.items():
        mode, _, path = key.partition(", ")
        print(f"  {labels[mode] + (', ' + path if path else ''):38s} {percentiles(samples_of)}")
    if "fresh" in results:
        saved = np.asarray(fresh_saved)
        fresh = np.asarray(results["fresh"])
        for label, rows in (("saved the snapshot", saved), ("only read it", ~saved)):
            if rows.any():
                print(f"    fresh, the {rows.sum():3d} scores that {label:18s} {percentiles(list(fresh[rows]))}")
        print(f"    snapshot file: {snapshot_size / 1e6:.2f} MB")
    if processes:
        print("  in new processes (each scores one run; the first, with no snapshot yet, left out):")
        for label, with_snapshot in (("fresh (snapshot)", 1.0), ("cold (no snapshot)", 0.0)):
            runs_of = [p for p in processes if p["snapshot"] == with_snapshot and not p["first"]]
            print(f"    {label:20s} first score_runs {percentiles([p['score'] for p in runs_of])}")
            full = sum(p["full"] for p in runs_of)
            saves = sum(p["saved"] for p in runs_of)
            print(f"    {'':20s} full reads {full:.0f}, snapshot saves {saves:.0f}")
        imports = [p["imports"] for p in processes]
        setup = [p["setup"] for p in processes]
        print(f"    before it: imports {percentiles(imports)}")
        print(f"               store + model + target {percentiles(setup)}")
    for mode, elapsed in first.items():
        print(f"  first score of the {mode} pass (full window read into the cache): {elapsed * 1000:.1f} ms")
    for mode, by_stage in stages.items():
        print(f"  {mode}, by stage:")
        for name, samples in by_stage.items():
            print(f"    {name:30s} {percentiles(samples)}")
    for mode in ("warm", "fresh"):
        if "cold" in results and mode in results:
            ratio = statistics.median(results["cold"]) / statistics.median(results[mode])
            print(f"  median cold/{mode}: {ratio:.1f}x")
    if len(paths) == 2:
        for mode in modes:
            fast_key, public_key = f"{mode}, fast path", f"{mode}, public path"
            if fast_key in results and public_key in results:
                ratio = statistics.median(results[public_key]) / statistics.median(results[fast_key])
                print(f"  median public/fast, {mode}, score_runs: {ratio:.2f}x")
            for stage in ("model.risk", "model.explain (top 3)"):
                fast_s, public_s = stages.get(fast_key, {}).get(stage), stages.get(public_key, {}).get(stage)
                if fast_s and public_s:
                    ratio = statistics.median(public_s) / statistics.median(fast_s)
                    print(f"  median public/fast, {mode}, {stage}: {ratio:.2f}x")
    if args.profile:
        print()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(args.profile)


if __name__ == "__main__":
    main()
