"""CPU time of the telemetry spool, per record: the append on the task's thread, and the drain into the store.

Outside Prefect, in one process: N attempts are appended to a spool (``Spool.append``, what each task
attempt costs its own thread), then drained into the store in passes of B records, the way the
background drainer does (``Spool.drain`` with ``SpoolDrainer``'s writer: read, decode, check, one batch
write, commit). Reported: process CPU time (``time.process_time``, steadier than wall time on a shared
machine) per appended and per drained record, for each batch size. The drainer runs in the task's own
process, so its CPU is taken from the flow.

    .venv/bin/python bench/spool_drain.py                                  # SQLite
    .venv/bin/python bench/spool_drain.py --db postgresql+psycopg://postgres@127.0.0.1:5432/forewarn_bench
    .venv/bin/python bench/spool_drain.py --profile 256                     # cProfile of the drain, B=256
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from forewarn.records import AttemptOutcome, AttemptRecord
from forewarn.store import Spool, SpoolDrainer, TelemetryStore


def attempts(n: int, tag: str) -> list[AttemptRecord]:
    """``n`` attempts as a forewarn.task records them (ids as long as Prefect's)."""
    t0 = datetime.now(timezone.utc)
    flow_run = f"{tag}-0000-0000-0000-000000000000"[:36]
    return [
        AttemptRecord(
            flow_run, f"{tag}-{i:012d}"[:36], "load", 1, t0, t0 + timedelta(milliseconds=1), AttemptOutcome.SUCCESS
        )
        for i in range(n)
    ]


def measure(url: str, n: int, batch: int, profile: bool) -> tuple[float, float]:
    """(CPU seconds per append, per drained record) for ``n`` attempts drained ``batch`` at a time."""
    store = TelemetryStore(url)
    spool = Spool(Path(tempfile.mkdtemp()) / "spool")
    drainer = SpoolDrainer(spool, lambda: store, linger=0)
    records = attempts(n + batch, f"{time.time_ns():x}")
    for record in records[:batch]:  # warm up: statements compiled, connection pooled
        spool.append("attempt", record)
    spool.drain(drainer._write)
    append_cpu = drain_cpu = 0.0
    profiler = cProfile.Profile() if profile else None
    for start in range(batch, n + batch, batch):
        cpu = time.process_time()
        for record in records[start : start + batch]:
            spool.append("attempt", record)
        append_cpu += time.process_time() - cpu
        cpu = time.process_time()
        if profiler is not None:
            profiler.enable()
        spool.drain(drainer._write, adopt=False)
        if profiler is not None:
            profiler.disable()
        drain_cpu += time.process_time() - cpu
    drainer.close()
    store.close()
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    return append_cpu / n, drain_cpu / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default=None, help="store URL (default: a SQLite file in a temp dir)")
    parser.add_argument("--records", type=int, default=4096)
    parser.add_argument("--batches", default="8,64,256,512", help="records per drain pass, comma-separated")
    parser.add_argument("--profile", type=int, default=None, metavar="B", help="cProfile the drain at batch size B")
    args = parser.parse_args()
    url = args.db or f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    print(f"{url.split(':')[0]}, {args.records} attempts; load {Path('/proc/loadavg').read_text().strip()}")
    print(f"{'batch':>6} {'append us/record':>17} {'drain us/record':>16}")
    batches = [args.profile] if args.profile else [int(b) for b in args.batches.split(",")]
    for batch in batches:
        append, drain = measure(url, args.records, batch, profile=args.profile is not None)
        print(f"{batch:>6} {append * 1e6:17.1f} {drain * 1e6:16.1f}")


if __name__ == "__main__":
    main()
