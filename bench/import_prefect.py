"""How fast `forewarn import-prefect` reads Prefect's history into the store, first time and incrementally.

Starts Prefect's ephemeral test server (``prefect_test_harness``), creates N ended flow runs through the API,
each with T task runs (one in R retried, so its attempts come from its state history), then imports them into
a fresh SQLite store and reports the wall-clock and CPU time of: the first import (everything), the same
import again with ``since`` (every run read, all skipped by id), and an incremental import after one more
run, with the default 10-minute overlap (what ended in the last 10 minutes is read again and skipped) and
without (the watermark alone: one run read).

    .venv/bin/python bench/import_prefect.py                  # 300 runs x 3 task runs
    .venv/bin/python bench/import_prefect.py --runs 300 --tasks 5
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def timed(label: str, work: Callable[[], Any]) -> Any:
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"{label:<44} {wall:7.2f} s wall {cpu:7.2f} s CPU  {result}")
    return result


def create_history(client: Any, runs: int, tasks: int, retried_every: int) -> None:
    """``runs`` ended flow runs of one flow, each with ``tasks`` task runs, through the API as an engine would."""
    from prefect import flow
    from prefect.states import Completed, Failed, Pending, Retrying, Running

    @flow(name="bench-etl")
    def etl(day: int) -> None:
        """A flow only for its name."""

    steps = [_task(f"step{t}") for t in range(tasks)]
    for i in range(runs):
        flow_run = client.create_flow_run(etl, parameters={"day": i}, state=Pending())
        client.set_flow_run_state(flow_run.id, Running(), force=True)
        for t, step in enumerate(steps):
            task_run = client.create_task_run(step, flow_run_id=flow_run.id, dynamic_key=str(t), state=Pending())
            client.set_task_run_state(task_run.id, Running(), force=True)
            if (i * tasks + t) % retried_every == 0:
                client.set_task_run_state(task_run.id, Retrying(), force=True)
            client.set_task_run_state(task_run.id, Completed(), force=True)
        final: Any = Failed(message="Flow run encountered an exception") if i % 10 == 0 else Completed()
        client.set_flow_run_state(flow_run.id, final, force=True)


def _task(name: str) -> Any:
    from prefect import task

    @task(name=name)
    def step() -> None:
        """A task only for its name and key."""

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--retried-every", type=int, default=20, help="One task run in this many is retried once.")
    args = parser.parse_args()

    from prefect.client.orchestration import get_client
    from prefect.testing.utilities import prefect_test_harness

    from forewarn.orchestration.prefect_history import import_prefect_history
    from forewarn.store import TelemetryStore
    from forewarn.timeutil import utc_now

    with (
        prefect_test_harness(server_startup_timeout=120),
        tempfile.TemporaryDirectory() as tmp,
        get_client(sync_client=True) as client,
    ):
        began = utc_now()
        timed(
            f"create {args.runs} runs x {args.tasks} task runs (API)",
            lambda: create_history(client, args.runs, args.tasks, args.retried_every),
        )
        store = TelemetryStore(f"sqlite:///{tmp}/bench.db")
        first = timed("first import", lambda: _summary(import_prefect_history(store, client=client)))
        timed(
            "same window again (all known)",
            lambda: _summary(import_prefect_history(store, client=client, since=began - timedelta(minutes=1))),
        )
        create_history(client, 1, args.tasks, args.retried_every)
        timed("one more run, 10-minute overlap", lambda: _summary(import_prefect_history(store, client=client)))
        create_history(client, 1, args.tasks, args.retried_every)
        timed(
            "one more run, no overlap",
            lambda: _summary(import_prefect_history(store, client=client, overlap=timedelta(0))),
        )
        print(f"store: {len(store.runs())} runs, {len(store.attempts())} attempts; first import {first}")
    print(f"load average: {Path('/proc/loadavg').read_text().strip()}")


def _summary(result: Any) -> str:
    return (
        f"read {result.runs_read}, imported {result.runs_imported} runs / {result.attempts_imported} attempts, "
        f"known {result.runs_known}"
    )


if __name__ == "__main__":
    main()
