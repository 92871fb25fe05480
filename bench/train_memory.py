"""Training on about 1,000,000 task attempts' worth of history: wall time, CPU time and peak memory.

Target: under 30 s and 3 GB peak. The history is simulated (``forewarn.history.simulate``: ~3.3 attempts a
run, so the default 305,000 runs give ~1,000,000 attempts) and saved to a temporary pickle; a fresh child
process then loads it (not counted) and runs what ``forewarn train --folds 0`` runs on it:
``train_and_save(runs, attempts, backtest=False)`` - features for every run, the model fit (with its
threshold's out-of-time copy) and the signed save. The child reports its own wall and CPU time (all
threads) and its peak resident memory (``ru_maxrss``, which includes the loaded history), so the figure
is the training's, not the simulation's. Report it with the load average it prints.

    .venv/bin/python bench/train_memory.py                  # 305,000 runs, ~1,000,000 attempts
    .venv/bin/python bench/train_memory.py --runs 100000 --fit-threads 1
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import pickle
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from forewarn.learning.model import DEFAULT_FAMILY


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages, as /proc/loadavg gives them."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def simulate(n_runs: int, path: Path) -> tuple[int, int]:
    """Simulate ``n_runs`` runs and their attempts into ``path`` (a pickle); return both counts."""
    from forewarn.history.simulate import (
        history_to_attempts_frame,
        history_to_runs_frame,
        simulate_history,
        simulated_attempts,
    )

    raw = simulate_history(n_runs, seed=0, include_cause=True)
    attempts = history_to_attempts_frame(simulated_attempts(raw, seed=0))
    runs = history_to_runs_frame(raw.drop(columns="failure_cause"))
    with path.open("wb") as out:
        pickle.dump((runs, attempts), out, protocol=pickle.HIGHEST_PROTOCOL)
    return len(runs), len(attempts)


def train(path: Path, model_dir: Path, fit_threads: int | None, family: str, queue: Any) -> None:
    """In a fresh process: load the history, train and save, and put the figures on ``queue``."""
    import forewarn.learning
    from forewarn.learning.training import train_and_save

    passive = getattr(getattr(forewarn.learning, "_openmp", None), "PASSIVE_WAITING", None)  # None: older forewarn

    with path.open("rb") as f:
        runs, attempts = pickle.load(f)  # our own file, written a moment ago
    params = {} if fit_threads is None else {"fit_threads": fit_threads}
    load_before = load_average()
    wall, cpu = time.perf_counter(), time.process_time()
    result = train_and_save(
        runs,
        attempts,
        model_dir=model_dir,
        key="bench-key-" + "0" * 32,
        backtest=False,
        family=family,
        model_params=params,
    )
    queue.put(
        {
            "wall": time.perf_counter() - wall,
            "cpu": time.process_time() - cpu,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "load_before": load_before,
            "load_after": load_average(),
            "passive": passive,
            "threshold": result.manifest.threshold,
            "train_runs": result.manifest.n_train_runs,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=305_000, help="simulated runs (~3.3 attempts each)")
    parser.add_argument("--fit-threads", type=int, default=None, help="OpenMP threads of the fit (default: auto)")
    parser.add_argument("--repeat", type=int, default=1, help="train this many times, each in a fresh process")
    parser.add_argument(
        "--family", default=DEFAULT_FAMILY, help=f"model family: stack, hgb, logreg or mean (default {DEFAULT_FAMILY})"
    )
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="forewarn-train-bench-"))
    t0 = time.perf_counter()
    n_runs, n_attempts = simulate(args.runs, folder / "history.pkl")
    print(f"simulated {n_runs:,} runs and {n_attempts:,} attempts in {time.perf_counter() - t0:.1f} s (not counted)")
    print(f"{os.cpu_count()} CPUs; target: training under 30 s and 3 GB peak")
    spawn = multiprocessing.get_context("spawn")
    for i in range(args.repeat):
        queue = spawn.Queue()
        child = spawn.Process(
            target=train, args=(folder / "history.pkl", folder / f"models-{i}", args.fit_threads, args.family, queue)
        )
        child.start()
        figures = queue.get()
        child.join()
        print(
            f"train {i + 1}: wall {figures['wall']:.1f} s, CPU {figures['cpu']:.1f} s, peak RSS "
            f"{figures['peak_rss_mb']:,.0f} MB; load {figures['load_before']} -> {figures['load_after']}; "
            f"family {args.family}; fit threads {args.fit_threads or 'auto'} "
            f"(passive OpenMP waits: {figures['passive']}); "
            f"{figures['train_runs']:,} labelled runs, threshold {figures['threshold']:.3f}"
        )


if __name__ == "__main__":
    main()
