"""Cost of a circuit breaker per call, in-process and shared through the store, and of one shared transition.

For each configuration, interleaved over ``--repeats`` rounds (so load drift hits all alike), a block of
``--calls`` closed-state calls (``before_call`` then ``record_success``, what ``forewarn.task`` does per
attempt) is timed in wall and CPU time, and the store round trips it made are counted. Configurations:
``process`` (``scope="process"``), and for SQLite (and PostgreSQL with ``--pg``) a shared breaker with the
default 1 s cache and with ``cache_seconds=0`` (a read per call). Then ``--transitions`` open/trial/close
cycles per store time what a transition written through costs (three short transactions per cycle).

    .venv/bin/python bench/breaker_overhead.py
    .venv/bin/python bench/breaker_overhead.py --pg postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any


class Counted:
    """A breaker backend that counts the round trips it passes on."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.description = backend.description
        self.trips = 0

    def read(self, name: str) -> Any:
        self.trips += 1
        return self.backend.read(name)

    def change(self, name: str, change: Callable[[Any], Any]) -> Any:
        self.trips += 1
        return self.backend.change(name, change)


class HandClock:
    """Time that moves only when told: the trial comes at once, without waiting reset_timeout."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pg", default=None, help="PostgreSQL URL (adds the shared-on-PostgreSQL runs)")
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--transitions", type=int, default=50)
    args = parser.parse_args()

    from forewarn.resilience.breaker import CircuitBreaker
    from forewarn.store import StoreBreakerState, TelemetryStore

    stores = {"sqlite": TelemetryStore(f"sqlite:///{tempfile.mkdtemp()}/bench.db")}
    if args.pg:
        stores["postgres"] = TelemetryStore(args.pg)

    configs: dict[str, tuple[CircuitBreaker, Counted | None]] = {
        "process": (CircuitBreaker("p", scope="process"), None)
    }
    for kind, store in stores.items():
        for cache in (1.0, 0.0):
            counted = Counted(StoreBreakerState(store))
            name = f"{kind}-cache{cache:g}"
            configs[name] = (CircuitBreaker(name, backend=counted, cache_seconds=cache), counted)

    wall: dict[str, list[float]] = {name: [] for name in configs}
    cpu: dict[str, list[float]] = {name: [] for name in configs}
    trips: dict[str, int] = dict.fromkeys(configs, 0)
    for _ in range(args.repeats):
        for name, (breaker, counted) in configs.items():
            before = counted.trips if counted else 0
            w0, c0 = time.perf_counter(), time.process_time()
            for _ in range(args.calls):
                breaker.before_call()
                breaker.record_success()
            wall[name].append((time.perf_counter() - w0) / args.calls * 1e6)
            cpu[name].append((time.process_time() - c0) / args.calls * 1e6)
            trips[name] += (counted.trips - before) if counted else 0

    with open("/proc/loadavg") as loadavg:
        print(f"load average: {loadavg.read().split()[:3]}")
    print(f"{args.calls} calls x {args.repeats} rounds per configuration, interleaved\n")
    print("| configuration | median wall µs/call | median CPU µs/call | store round trips per 1000 calls |")
    print("|---|---|---|---|")
    for name in configs:
        per_1000 = trips[name] / (args.calls * args.repeats) * 1000
        print(f"| {name} | {statistics.median(wall[name]):.1f} | {statistics.median(cpu[name]):.1f} | {per_1000:.1f} |")

    print("\n| store | transition (open, trial, close) median ms |")
    print("|---|---|")
    for kind, store in stores.items():
        clock = HandClock()
        breaker = CircuitBreaker(
            f"{kind}-transitions",
            backend=StoreBreakerState(store),
            failure_threshold=1,
            reset_timeout=1.0,
            clock=clock,
        )
        times = []
        for _ in range(args.transitions):
            t0 = time.perf_counter()
            breaker.record_failure()  # opens: written through
            clock.now += 1.0
            breaker.before_call()  # takes the trial: written through
            breaker.record_success()  # closes: written through
            times.append((time.perf_counter() - t0) / 3 * 1000)
        print(f"| {kind} | {statistics.median(times):.2f} |")
    for store in stores.values():
        store.close()


if __name__ == "__main__":
    main()
