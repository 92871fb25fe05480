"""Per-task overhead of forewarn.task against a plain Prefect @task, in the same flow run, per store condition.

Each repetition runs, inside ONE flow run, for every store condition in turn, N sequential calls of a plain
Prefect task and N of the same body as a forewarn.task (blocks alternate so drift hits both), and times
each call. Conditions, interleaved: ``sqlite`` (a fresh SQLite file), ``postgres`` (``--pg``, through a
loopback TCP proxy), ``pg-down`` (the proxy refuses every connection) and ``pg-stalled`` (the proxy holds
every byte: a database that accepts and never answers). The proxy runs in a child process, so its
forwarding never competes for this process's GIL (a real deployment has no proxy).

Reported per condition and kind: the median wall time per call, their ratio, the median over repeats of
each repeat's ratio of block medians ("paired": a plain block and the forewarn block right after it share
the machine's load, so this moves less with other jobs), and the process CPU time per call (every
thread of this process: Prefect's, forewarn's drainer; steadier than wall time on a shared machine). A
block's CPU time includes flushing the spool after it where the store answers, so the drainer's work for a
block is charged to that block and not to the next one. At the end the proxy forwards again, every
recorder is flushed, and the attempt rows of *this* run's flow run are counted: nothing may be lost.

    .venv/bin/python bench/task_overhead.py                       # SQLite only
    .venv/bin/python bench/task_overhead.py --pg postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")
# the in-process server drops events it cannot keep up with and says so once per event: not our figures
os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # tcp_proxy.py


class ProxyProcess:
    """``tests/tcp_proxy.Proxy`` in a child process, driven over a pipe: ``refuse``, ``stall``, ``resume``."""

    def __init__(self, target: tuple[str, int]) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a process running Prefect's threads
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve_proxy, args=(target, child), daemon=True)
        self._process.start()
        self.port: int = self._conn.recv()

    def command(self, name: str) -> None:
        self._conn.send(name)
        self._conn.recv()  # done

    def refuse(self) -> None:
        self.command("refuse")

    def stall(self) -> None:
        self.command("stall")

    def resume(self) -> None:
        self.command("resume")

    def close(self) -> None:
        self.command("close")
        self._process.join(5)


def _serve_proxy(target: tuple[str, int], conn: Any) -> None:
    from tcp_proxy import Proxy

    proxy = Proxy(target)
    conn.send(proxy.port)
    while True:
        name = conn.recv()
        getattr(proxy, name)()
        conn.send(None)
        if name == "close":
            return


def thread_cpu() -> dict[tuple[int, str], float]:
    """CPU seconds so far of each live thread of this process, by (native id, Python name) (Linux)."""
    import threading

    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for thread in threading.enumerate():
        try:
            fields = Path(f"/proc/self/task/{thread.native_id}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[thread.native_id or 0, thread.name.split(" (")[0]] = (int(fields[11]) + int(fields[12])) / ticks
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pg", default=None, help="PostgreSQL URL (adds the postgres, pg-down, pg-stalled runs)")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", default=None, help="comma-separated conditions to run, e.g. sqlite,postgres")
    parser.add_argument("--threads", action="store_true", help="also print CPU per call of each thread, by name")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp()
    os.environ.setdefault("FOREWARN_SPOOL_DIR", f"{tmp}/spool")
    load_before = Path("/proc/loadavg").read_text().strip()

    import prefect
    from prefect.cache_policies import NO_CACHE
    from prefect.context import FlowRunContext

    import forewarn
    from forewarn.orchestration.recorder import default_recorder
    from forewarn.settings import get_settings
    from forewarn.store import TelemetryStore

    conditions, proxy = {"sqlite": (f"sqlite:///{tmp}/bench.db", None)}, None
    if args.pg:
        import sqlalchemy as sa

        TelemetryStore(args.pg).close()  # create the schema before the proxy starts playing up
        pg = sa.engine.make_url(args.pg)
        proxy = ProxyProcess((pg.host or "127.0.0.1", pg.port or 5432))
        via = pg.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        # one URL per condition (a distinct query string) so each has its own recorder and spool
        conditions.update(
            postgres=(via, proxy.resume),
            **{"pg-down": (f"{via}?application_name=down", proxy.refuse)},
            **{"pg-stalled": (f"{via}?application_name=stalled", proxy.stall)},
        )
    if args.only:
        conditions = {name: conditions[name] for name in args.only.split(",")}
    answers = {"sqlite", "postgres"}  # the conditions whose store can be flushed after each block

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

    by_thread: dict[tuple[str, str], dict[str, float]] = {}  # (condition, kind) -> thread name -> CPU seconds

    def timed(task: prefect.Task, n: int, *, flush: bool) -> tuple[list[float], float]:
        """Wall seconds of each of ``n`` calls, and the process CPU seconds of all of them (and the flush)."""
        times = []
        threads0 = thread_cpu() if args.threads else {}
        cpu0 = time.process_time()
        for i in range(n):
            t0 = time.perf_counter()
            task(i)
            times.append(time.perf_counter() - t0)
        if flush:
            recorder = default_recorder()
            assert recorder is not None
            recorder.flush(60)
        cpu = time.process_time() - cpu0
        if args.threads:
            block = by_thread.setdefault((os.environ["FOREWARN_DB_URL"], task.name), {})
            for key, seconds in thread_cpu().items():
                name = key[1]
                block[name] = block.get(name, 0.0) + seconds - threads0.get(key, 0.0)
        return times, cpu

    @prefect.flow(name="bench-overhead")
    def bench(calls: int, repeats: int) -> tuple[str, Any, Any, Any]:
        walls: dict[str, dict[str, list[float]]] = {c: {"plain": [], "forewarn": []} for c in conditions}
        pairs: dict[str, list[float]] = {c: [] for c in conditions}  # forewarn / plain median of each repeat
        cpus: dict[str, dict[str, float]] = {c: {"plain": 0.0, "forewarn": 0.0} for c in conditions}
        for condition in conditions:  # warm up both paths and open each store
            use(condition)
            timed(plain, 50, flush=False), timed(wrapped, 50, flush=condition in answers)
        kinds = (("plain", plain), ("forewarn", wrapped))
        for repeat in range(repeats):
            # ABBA: plain first in even repeats, forewarn first in odd ones, so whatever a block leaves
            # behind (Prefect's in-process server still handling the last block's events, a drain pass)
            # lands on both kinds equally rather than always on the second
            for condition in conditions:
                use(condition)
                medians = {}
                for kind, task in kinds if repeat % 2 == 0 else kinds[::-1]:
                    wall, cpu = timed(task, calls, flush=condition in answers)
                    walls[condition][kind] += wall
                    cpus[condition][kind] += cpu
                    medians[kind] = statistics.median(wall)
                pairs[condition].append(medians["forewarn"] / medians["plain"])
        if proxy is not None:
            proxy.resume()
        run = FlowRunContext.get()
        assert run is not None
        return str(run.flow_run.id), walls, cpus, pairs

    use(next(iter(conditions)))
    flow_run_id, walls, cpus, pairs = bench(args.calls, args.repeats)
    n = args.calls * args.repeats
    print(f"calls per kind and condition: {args.calls} x {args.repeats}; load before {load_before}")
    print(
        f"{'condition':<11} {'plain ms':>9} {'forewarn ms':>12} {'ratio':>7} {'paired':>7}   {'plain cpu ms':>12} "
        f"{'forewarn cpu ms':>15} {'cpu ratio':>9} {'errors':>7} {'flushed':>8}"
    )
    for condition in conditions:
        use(condition, play=False)  # the proxy forwards again: every spool drains
        p, f = statistics.median(walls[condition]["plain"]), statistics.median(walls[condition]["forewarn"])
        paired = pairs[condition]
        pc, fc = cpus[condition]["plain"] / n, cpus[condition]["forewarn"] / n
        recorder = default_recorder()
        assert recorder is not None
        flushed = recorder.flush(60)
        print(
            f"{condition:<11} {p * 1e3:9.3f} {f * 1e3:12.3f} {f / p:6.3f}x {statistics.median(paired):6.3f}x   "
            f"{pc * 1e3:12.3f} {fc * 1e3:15.3f} "
            f"{fc / pc:8.3f}x {recorder.errors:7d} {flushed!s:>8}"
        )
    expected = (n + 50) * len(conditions)
    urls = {url for name, (url, _) in conditions.items() if name == "sqlite"} | ({args.pg} if args.pg else set())
    stored = 0
    for url in urls:
        with TelemetryStore(url) as store:
            stored += len(store.attempts(flow_run_id=flow_run_id))
    print(f"attempt rows of this run ({flow_run_id}): {stored} of {expected} forewarn calls")
    if args.threads:
        print("CPU ms per call by thread (warm-up included):")
        for condition, (url, _) in conditions.items():
            for kind in ("plain", "wrapped"):
                block = by_thread.get((url, kind), {})
                top = sorted(block.items(), key=lambda item: -item[1])[:6]
                shown = ", ".join(f"{name} {seconds / (n + 50) * 1e3:.3f}" for name, seconds in top)
                print(f"  {condition:<11} {kind:<8} {shown}")
    print(f"load after: {Path('/proc/loadavg').read_text().strip()}")
    if proxy is not None:
        proxy.close()


if __name__ == "__main__":
    main()
