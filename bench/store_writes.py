"""Cost of one telemetry write, outside Prefect: 2,000 `record_attempt` calls, then one batched write.

.venv/bin/python bench/store_writes.py                       # SQLite in a temp dir
.venv/bin/python bench/store_writes.py --db postgresql+psycopg://postgres@127.0.0.1:5432/forewarn_bench_writes
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import datetime, timezone

from forewarn.records import AttemptOutcome, AttemptRecord
from forewarn.store import TelemetryStore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", default=None)
    parser.add_argument("--rows", type=int, default=2000)
    args = parser.parse_args()
    store = TelemetryStore(args.db or f"sqlite:///{tempfile.mkdtemp()}/writes.db")
    t0 = datetime.now(timezone.utc)
    tag = f"{time.time_ns()}"
    single = [AttemptRecord(None, f"s{tag}-{i}", "bench", 1, t0, t0, AttemptOutcome.SUCCESS) for i in range(args.rows)]
    batch = [AttemptRecord(None, f"b{tag}-{i}", "bench", 1, t0, t0, AttemptOutcome.SUCCESS) for i in range(args.rows)]
    for record in single[:50]:  # warm the connection and the prepared statement
        store.record_attempt(record)
    start = time.perf_counter()
    for record in single[50:]:
        store.record_attempt(record)
    per_write = (time.perf_counter() - start) / (args.rows - 50)
    start = time.perf_counter()
    store.record_attempts(batch)
    batched = time.perf_counter() - start
    print(f"store: {store.url}")
    print(f"record_attempt: {per_write * 1e3:.3f} ms per write (one commit each)")
    per_row = batched / args.rows * 1e3
    print(f"record_attempts: {batched * 1e3:.1f} ms for {args.rows:,} rows ({per_row:.4f} ms per row)")


if __name__ == "__main__":
    main()
