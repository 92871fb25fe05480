"""Many writers at once: processes and threads recording into one store lose nothing and never fail."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from datetime import datetime, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from forewarn.records import AttemptOutcome, AttemptRecord
from forewarn.store import TelemetryStore
from forewarn.store.schema import flow_runs, task_attempts

PROCESSES = 4
ROWS_PER_PROCESS = 500
# The store's SQLite busy_timeout: a write that waited this long for the lock would have failed.
BUSY_TIMEOUT_S = 30

# Each child opens the store, says "ready", waits for "go" on stdin (so all four write at the same time),
# then records a flow run and ROWS one-row attempts as fast as it can, the way forewarn.task does: one
# record_attempt call per attempt. It prints a JSON summary; any exception ends it with a traceback and
# exit status 1.
CHILD = textwrap.dedent(
    """
    import json, sys, time
    from datetime import datetime, timezone
    from forewarn.records import AttemptOutcome, AttemptRecord, FlowRunRecord, RunState
    from forewarn.store import TelemetryStore

    url, proc, rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    store = TelemetryStore(url)
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.perf_counter()
    now = datetime.now(timezone.utc)
    store.record_flow_run_start(FlowRunRecord(f"run-{proc}", "concurrency", start_time=now))
    slowest = 0.0
    for i in range(rows):
        t0 = time.perf_counter()
        at = datetime.now(timezone.utc)
        store.record_attempt(AttemptRecord(
            f"run-{proc}", f"task-{proc}-{i}", "write", 1, at, at,
            AttemptOutcome.FAILURE if i % 10 == 0 else AttemptOutcome.SUCCESS,
            "ValueError" if i % 10 == 0 else None, "boom" if i % 10 == 0 else None,
        ))
        slowest = max(slowest, time.perf_counter() - t0)
    store.record_flow_run_end(f"run-{proc}", RunState.COMPLETED, datetime.now(timezone.utc))
    elapsed = time.perf_counter() - started
    store.close()
    print(json.dumps({"proc": proc, "elapsed": elapsed, "slowest": slowest}), flush=True)
    """
)


def run_writers(url: str, processes: int = PROCESSES, rows: int = ROWS_PER_PROCESS) -> list[dict[str, Any]]:
    """Start the writer processes, release them together, and return their summaries."""
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, url, str(proc), str(rows)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for proc in range(processes)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            line = child.stdout.readline()
            if line.strip() != "ready":
                _out, err = child.communicate(timeout=30)
                pytest.fail(f"writer did not open the store (exit {child.returncode}):\n{line}{err}")
        for child in children:  # the start signal, as close together as we can
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        summaries = []
        for child in children:
            out, err = child.communicate(timeout=60)
            assert child.returncode == 0, f"writer failed (exit {child.returncode}):\n{err}"
            # stderr may carry a library's warning on a busy machine; what must not be there is a failure
            assert "Traceback" not in err and "locked" not in err.lower(), err
            summaries.append(json.loads(out.strip().splitlines()[-1]))
        return summaries
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()


def count(url: str) -> tuple[int, int, int, int]:
    """(attempt rows, distinct task runs, failures, completed flow runs) in the store at ``url``."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        a = task_attempts.c
        rows, distinct, failures = conn.execute(
            sa.select(
                sa.func.count(),
                sa.func.count(sa.distinct(a.task_run_id)),
                sa.func.count().filter(a.outcome == "failure"),
            )
        ).one()
        completed = conn.execute(
            sa.select(sa.func.count()).where(flow_runs.c.state == "COMPLETED", flow_runs.c.end_time.is_not(None))
        ).scalar_one()
    engine.dispose()
    return rows, distinct, failures, completed


@pytest.mark.slow
class TestProcesses:
    def test_four_processes_writing_one_row_per_call(self, store_url: str) -> None:
        """4 processes x 500 record_attempt calls at once: exactly 2,000 rows and no error in any child."""
        TelemetryStore(store_url).close()  # create the schema first, as the first flow run would
        summaries = run_writers(store_url)
        # Behaviour, not speed: no single write came near waiting out the lock. The total time is the machine's.
        assert max(s["slowest"] for s in summaries) < BUSY_TIMEOUT_S
        assert sorted(s["proc"] for s in summaries) == list(range(PROCESSES))
        total = PROCESSES * ROWS_PER_PROCESS
        assert count(store_url) == (total, total, total // 10, PROCESSES)

    def test_four_processes_creating_the_store_at_once(self, store_url: str) -> None:
        """Writers that all find an empty database create the schema once and then write normally."""
        summaries = run_writers(store_url, rows=50)
        assert len(summaries) == PROCESSES
        assert count(store_url) == (PROCESSES * 50, PROCESSES * 50, PROCESSES * 5, PROCESSES)


class TestThreads:
    def test_threads_share_one_store(self, store_url: str) -> None:
        """8 threads writing through one TelemetryStore (its connection pool) lose nothing."""
        now = datetime.now(timezone.utc)
        errors: list[BaseException] = []
        barrier = threading.Barrier(8)
        with TelemetryStore(store_url) as store:

            def write(thread: int) -> None:
                barrier.wait()
                try:
                    for i in range(100):
                        store.record_attempt(
                            AttemptRecord(None, f"t{thread}-{i}", "w", 1, now, now, AttemptOutcome.SUCCESS)
                        )
                    store.record_attempts(
                        AttemptRecord(None, f"t{thread}-{i}", "w", 2, now, now, AttemptOutcome.SUCCESS)
                        for i in range(50)
                    )
                except BaseException as exc:  # reported by the assertion below
                    errors.append(exc)

            threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            assert errors == []
            assert len(store.attempts()) == 8 * 150
