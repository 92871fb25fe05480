"""A child process for the reliability tests: runs a forewarn flow against the store in FOREWARN_DB_URL.

    python tests/flow_worker.py TASKS SEED [--forever]

Prints ``DONE <task_run_id> <attempts>`` (flushed) after each task call returned, i.e. after its attempts
were recorded, and at the end ``ERRORS <telemetry write errors>``. With ``--forever`` it keeps running
tasks until killed.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")

from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext

import forewarn
from forewarn import FaultInjector, RetryPolicy
from forewarn.orchestration.recorder import default_recorder

POLICY = RetryPolicy(attempts=12, wait_initial=0, wait_max=0, wait_jitter=0)


def main() -> None:
    n_tasks, seed = int(sys.argv[1]), int(sys.argv[2])
    forever = "--forever" in sys.argv
    faults = FaultInjector(seed, transient_rate=0.3)
    attempts_seen: dict[str, int] = {}

    def count(record: forewarn.AttemptRecord) -> None:
        attempts_seen[record.task_run_id] = record.attempt

    @forewarn.task(retry=POLICY, cache_policy=NO_CACHE, on_attempt=[count])
    def work(i: int) -> str:
        faults.maybe_fail("work")
        return str(TaskRunContext.get().task_run.id)

    @forewarn.flow(name=f"worker-{seed}")
    def run() -> None:
        i = 0
        while forever or i < n_tasks:
            task_run_id = work(i)
            print(f"DONE {task_run_id} {attempts_seen[task_run_id]}", flush=True)
            i += 1

    run()
    recorder = default_recorder()
    print(f"ERRORS {recorder.errors if recorder else -1}", flush=True)


if __name__ == "__main__":
    main()
