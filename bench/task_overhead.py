"""Per-task overhead of forewarn.task against a plain Prefect @task, in the same flow run.

Each repetition runs, inside ONE flow run, 1,000 sequential calls of a plain Prefect task and 1,000 of the
same body as a forewarn.task (blocks alternate so drift hits both), and times each call. Reported: the
median per-call time of each kind over all repetitions, and their ratio, measured in the same run.

    .venv/bin/python bench/task_overhead.py                       # SQLite store in a temp dir
    .venv/bin/python bench/task_overhead.py --db postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", default=None, help="store URL (default: a fresh SQLite file)")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp()
    os.environ["FOREWARN_DB_URL"] = args.db or f"sqlite:///{tmp}/bench.db"

    import prefect
    from prefect.cache_policies import NO_CACHE

    import forewarn
    from forewarn.orchestration.recorder import default_recorder

    def body(i: int) -> int:
        return i + 1

    plain = prefect.task(body, name="plain", cache_policy=NO_CACHE)
    wrapped = forewarn.task(body, name="wrapped", cache_policy=NO_CACHE)

    def timed(task: prefect.Task, n: int) -> list[float]:
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            task(i)
            times.append(time.perf_counter() - t0)
        return times

    @prefect.flow(name="bench-overhead")
    def bench(calls: int, repeats: int) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {"plain": [], "forewarn": []}
        timed(plain, 50), timed(wrapped, 50)  # warm up both paths and open the store
        for _ in range(repeats):
            out["plain"] += timed(plain, calls)
            out["forewarn"] += timed(wrapped, calls)
        return out

    result = bench(args.calls, args.repeats)
    p, f = statistics.median(result["plain"]), statistics.median(result["forewarn"])
    recorder = default_recorder()
    print(f"store: {recorder.store.url if recorder else '-'}")
    print(f"calls per kind: {args.calls} x {args.repeats}")
    print(f"plain prefect task : median {p * 1e3:.3f} ms/call")
    print(f"forewarn.task      : median {f * 1e3:.3f} ms/call")
    print(f"ratio              : {f / p:.3f}x  (overhead {(f - p) * 1e3:.3f} ms/call)")
    print(f"telemetry errors   : {recorder.errors if recorder else '-'}")
    attempts = recorder.store.attempts() if recorder else None
    print(f"attempt rows       : {0 if attempts is None else len(attempts)}")


if __name__ == "__main__":
    main()
