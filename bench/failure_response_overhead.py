"""CPU cost that the failure response adds to every recorded forewarn.task call (no Prefect run, no store).

A recorded call enters ``tasks._responding`` (a context variable holding the call's attempt records, so a
final failure can say what was tried) and the sink appends each record to it. This times that bookkeeping
for a call of one successful attempt, against an empty call, in CPU time (steadier than wall time on a busy
machine), alternating the two twice.

    .venv/bin/python bench/failure_response_overhead.py
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

from forewarn.orchestration.tasks import _call_records, _responding
from forewarn.records import AttemptOutcome, AttemptRecord

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
RECORD = AttemptRecord("f", "t", "charge", 1, T0, T0, AttemptOutcome.SUCCESS)
CALLS = 200_000


def bare() -> None:
    return None


def responding() -> None:
    with _responding(None):
        collected = _call_records.get()
        if collected is not None:
            collected.append(RECORD)


def main() -> None:
    for name, call in [("empty call", bare), ("_responding + one record", responding)] * 2:
        start = time.process_time()
        for _ in range(CALLS):
            call()
        print(f"{name:26s} {(time.process_time() - start) / CALLS * 1e6:.2f} us/call (CPU)")


if __name__ == "__main__":
    main()
