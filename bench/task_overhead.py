"""Per-task overhead of forewarn.task against a plain Prefect @task, in the same flow run, per store condition.

Each repetition runs, inside ONE flow run, for every store condition in turn, 1,000 sequential calls of a
plain Prefect task and 1,000 of the same body as a forewarn.task (blocks alternate so drift hits both), and
times each call. Conditions, interleaved: ``sqlite`` (a fresh SQLite file), ``postgres`` (``--pg``, through
a loopback TCP proxy), ``pg-down`` (the proxy refuses every connection) and ``pg-stalled`` (the proxy holds
every byte: a database that accepts and never answers). Reported per condition: the median per-call time
of each kind and their ratio, and the machine's load. At the end the proxy forwards again and every
recorder is flushed, so the attempt rows show that nothing was lost.

    .venv/bin/python bench/task_overhead.py                       # SQLite only
    .venv/bin/python bench/task_overhead.py --pg postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # tcp_proxy.py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pg", default=None, help="PostgreSQL URL (adds the postgres, pg-down, pg-stalled runs)")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp()
    os.environ.setdefault("FOREWARN_SPOOL_DIR", f"{tmp}/spool")

    import prefect
    from prefect.cache_policies import NO_CACHE

    import forewarn
    from forewarn.orchestration.recorder import default_recorder
    from forewarn.settings import get_settings
    from forewarn.store import TelemetryStore

    conditions, proxy = {"sqlite": (f"sqlite:///{tmp}/bench.db", None)}, None
    if args.pg:
        import sqlalchemy as sa

        from tcp_proxy import Proxy

        TelemetryStore(args.pg).close()  # create the schema before the proxy starts playing up
        pg = sa.engine.make_url(args.pg)
        proxy = Proxy((pg.host or "127.0.0.1", pg.port or 5432))
        via = pg.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        # one URL per condition (a distinct query string) so each has its own recorder and spool
        conditions.update(
            postgres=(via, proxy.resume),
            **{"pg-down": (f"{via}?application_name=down", proxy.refuse)},
            **{"pg-stalled": (f"{via}?application_name=stalled", proxy.stall)},
        )

    def use(condition: str, *, play: bool = True) -> None:
        """Point FOREWARN_DB_URL at ``condition``'s store and (when ``play``) put the proxy in its mode."""
        url, set_proxy = conditions[condition]
        os.environ["FOREWARN_DB_URL"] = url
        get_settings.cache_clear()
        if play and set_proxy is not None:
            set_proxy()

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
    def bench(calls: int, repeats: int) -> dict[str, dict[str, list[float]]]:
        out = {c: {"plain": [], "forewarn": []} for c in conditions}
        for condition in conditions:  # warm up both paths and open each store
            use(condition)
            timed(plain, 50), timed(wrapped, 50)
        for _ in range(repeats):
            for condition in conditions:
                use(condition)
                out[condition]["plain"] += timed(plain, calls)
                out[condition]["forewarn"] += timed(wrapped, calls)
        if proxy is not None:
            proxy.resume()
        return out

    use("sqlite")
    result = bench(args.calls, args.repeats)
    print(f"calls per kind and condition: {args.calls} x {args.repeats}; load {Path('/proc/loadavg').read_text()}")
    print(f"{'condition':<11} {'plain ms':>9} {'forewarn ms':>12} {'ratio':>7} {'errors':>7} {'flushed':>8}")
    for condition, times in result.items():
        use(condition, play=False)  # the proxy forwards again: every spool drains
        p, f = statistics.median(times["plain"]), statistics.median(times["forewarn"])
        recorder = default_recorder()
        assert recorder is not None
        flushed = recorder.flush(60)
        print(f"{condition:<11} {p * 1e3:9.3f} {f * 1e3:12.3f} {f / p:6.3f}x {recorder.errors:7d} {flushed!s:>8}")
    expected = (args.calls * args.repeats + 50) * len(conditions)
    stored = sum(len(TelemetryStore(url).attempts()) for url in {conditions["sqlite"][0], args.pg} - {None})
    print(f"attempt rows: {stored} of {expected} calls")
    print(f"load after: {Path('/proc/loadavg').read_text().strip()}")
    if proxy is not None:
        proxy.close()


if __name__ == "__main__":
    main()
