"""Shared breakers across REAL processes, on SQLite and PostgreSQL.

Each child process opens the store, makes one ``CircuitBreaker`` over it with a clock the test sets, and
obeys one JSON command per line on stdin (``call``, ``fail``, ``succeed``, ``flush``, ``state``, ``time``),
answering one JSON line. The test sends a command to every child before reading any answer, so the children
act at the same time; time only moves when the test says so, and nothing sleeps.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from forewarn.store import TelemetryStore

pytestmark = pytest.mark.slow

CHILD = textwrap.dedent(
    """
    import json, sys, traceback
    from forewarn.errors import CircuitOpenError
    from forewarn.resilience.breaker import CircuitBreaker
    from forewarn.store import TelemetryStore
    from forewarn.store.breakers import StoreBreakerState

    url, options = sys.argv[1], json.loads(sys.argv[2])
    now = [0.0]
    store = TelemetryStore(url)
    breaker = CircuitBreaker("payments", backend=StoreBreakerState(store), clock=lambda: now[0], **options)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        op = command["op"]
        try:
            if op == "time":
                now[0] = command["t"]
                answer = {}
            elif op == "call":
                try:
                    breaker.before_call()
                    answer = {"allowed": True}
                except CircuitOpenError as exc:
                    answer = {"allowed": False, "retry_after": exc.retry_after}
            elif op == "fail":
                breaker.record_failure()
                answer = {}
            elif op == "succeed":
                breaker.record_success()
                answer = {}
            elif op == "flush":
                breaker.flush()
                answer = {}
            elif op == "state":
                answer = {"state": breaker.state, "failures": breaker.failure_count, "shared": breaker.shared}
            else:
                answer = {"error": "unknown op " + op}
        except Exception:
            answer = {"error": traceback.format_exc()}
        print(json.dumps(answer), flush=True)
    store.close()
    """
)

T0 = 1_700_000_000.0


class Fleet:
    """Child processes sharing one breaker through one store."""

    def __init__(self, url: str, n: int, options: dict[str, Any]) -> None:
        TelemetryStore(url).close()  # the schema exists before the children open it
        self.children = [
            subprocess.Popen(
                [sys.executable, "-c", CHILD, url, json.dumps(options)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(n)
        ]
        for child in self.children:
            self._answer(child)

    def send(self, op: str, to: list[int] | None = None, **args: Any) -> list[dict[str, Any]]:
        """Send one command to the chosen children (all by default), then collect their answers in order."""
        chosen = [self.children[i] for i in (range(len(self.children)) if to is None else to)]
        for child in chosen:
            assert child.stdin is not None
            child.stdin.write(json.dumps({"op": op, **args}) + "\n")
            child.stdin.flush()
        return [self._answer(child) for child in chosen]

    def at(self, t: float, to: list[int] | None = None) -> None:
        self.send("time", to, t=T0 + t)

    def close(self) -> None:
        for child in self.children:
            if child.stdin is not None:
                child.stdin.close()
        for child in self.children:
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    @staticmethod
    def _answer(child: subprocess.Popen[str]) -> dict[str, Any]:
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line:
            child.kill()
            _out, err = child.communicate(timeout=30)
            pytest.fail(f"child exited ({child.returncode}) without answering:\n{err}")
        answer: dict[str, Any] = json.loads(line)
        assert "error" not in answer, answer["error"]
        return answer


@pytest.fixture
def fleet_of(store_url: str) -> Iterator[Any]:
    fleets: list[Fleet] = []

    def make(n: int, **options: Any) -> Fleet:
        options = {"failure_threshold": 3, "reset_timeout": 10.0, "cache_seconds": 1.0, **options}
        fleet = Fleet(store_url, n, options)
        fleets.append(fleet)
        return fleet

    yield make
    for fleet in fleets:
        fleet.close()


@pytest.mark.parametrize("n", [2, 8])
class TestAcrossProcesses:
    def test_opened_by_one_refused_by_the_others(self, fleet_of: Any, n: int) -> None:
        """Process 0 opens it; the others, which read 'closed' a moment before, are refused once their
        cache_seconds (1 s) has passed, without any call of theirs reaching the service."""
        fleet = fleet_of(n)
        others = list(range(1, n))
        fleet.at(0.0)
        assert all(a["allowed"] for a in fleet.send("call"))
        fleet.send("fail", [0])
        fleet.send("fail", [0])
        fleet.send("fail", [0])
        assert fleet.send("state", [0])[0]["state"] == "open"
        fleet.at(0.5, others)
        assert all(a["allowed"] for a in fleet.send("call", others))  # within their cache: not seen yet
        fleet.at(1.0, others)
        refused = fleet.send("call", others)
        assert [a["allowed"] for a in refused] == [False] * (n - 1)
        assert all(a["retry_after"] == pytest.approx(9.0) for a in refused)
        assert all(s["shared"] for s in fleet.send("state"))

    def test_one_trial_at_a_time_in_half_open(self, fleet_of: Any, n: int) -> None:
        """After reset_timeout every process asks at once: exactly one trial goes; it succeeds and closes the
        breaker for all."""
        fleet = fleet_of(n)
        fleet.at(0.0)
        fleet.send("call")
        for _ in range(3):
            fleet.send("fail", [0])
        fleet.at(10.0)
        answers = fleet.send("call")
        allowed = [i for i, a in enumerate(answers) if a["allowed"]]
        assert len(allowed) == 1
        refused = [a["retry_after"] for a in answers if not a["allowed"]]
        assert refused == [pytest.approx(10.0)] * (n - 1)  # until the trial would count as lost
        fleet.send("succeed", allowed)
        fleet.at(11.0)
        assert all(a["allowed"] for a in fleet.send("call"))
        assert {s["state"] for s in fleet.send("state")} == {"closed"}

    def test_time_window_adds_up_every_process_and_forgets_old_calls(self, fleet_of: Any, n: int) -> None:
        """mode='time', 10 s window, minimum 2n calls, 50 %: one failure per process at t=0 is too few
        calls; at t=11 those left the window, so one more failure each is still too few (every process reads
        n failures once its cache expired); one success each at t=13 makes 2n calls, n failed: open."""
        fleet = fleet_of(n, mode="time", window_seconds=10.0, minimum_calls=2 * n, failure_rate=0.5)
        fleet.at(0.0)
        fleet.send("call")
        fleet.send("fail")
        fleet.send("flush")
        fleet.at(11.0)
        fleet.send("fail")
        fleet.send("flush")
        fleet.at(12.5)
        assert {(s["state"], s["failures"]) for s in fleet.send("state")} == {("closed", n)}
        fleet.at(13.0)
        fleet.send("succeed")
        fleet.send("flush")
        fleet.at(14.5)
        answers = fleet.send("call")
        assert not any(a["allowed"] for a in answers)
