"""Bulkheads and rate limits through Prefect's global concurrency limits, against the real test API."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

import forewarn
from forewarn import CircuitBreaker
from forewarn.errors import ConfigurationError
from forewarn.orchestration.concurrency import limit_gates
from forewarn.orchestration.recorder import default_recorder
from forewarn.settings import get_settings
from forewarn.store import TelemetryStore


class TestOptions:
    @pytest.mark.parametrize(
        ("kwargs", "setting"),
        [
            ({"concurrency": ""}, "concurrency"),
            ({"concurrency": ["payments", 3]}, "concurrency"),
            ({"rate_limit": []}, "rate_limit"),
            ({"rate_limit": 5}, "rate_limit"),
            ({"concurrency": "payments", "limit_timeout_seconds": 0}, "limit_timeout_seconds"),
            ({"concurrency": "payments", "limit_timeout_seconds": float("inf")}, "limit_timeout_seconds"),
            ({"concurrency": "payments", "limit_strict": "yes"}, "limit_strict"),
        ],
    )
    def test_bad_options_fail_at_decoration(self, kwargs: dict[str, Any], setting: str) -> None:
        """A bad limit option is a ConfigurationError naming it, raised when the task is defined."""
        with pytest.raises(ConfigurationError) as info:
            forewarn.task(**kwargs)
        assert info.value.setting == setting

    def test_no_limits_no_gate(self) -> None:
        """Without limits the runner has no gate: nothing is added to each attempt."""
        runner = forewarn.orchestration.tasks.runner_of(forewarn.task(lambda: 1))
        assert (runner.gate, runner.agate) == (None, None)
        assert limit_gates(concurrency=None, rate_limit=None) == (None, None)


def attempts_of(flow_run_id: str) -> list[tuple[int, str, str | None, float | None]]:
    recorder = default_recorder()
    assert recorder is not None and recorder.flush(10)
    frame = TelemetryStore(get_settings().db_url).attempts(flow_run_id=flow_run_id).sort_values("attempt")
    return [
        (int(a), str(o), None if pd.isna(e) else str(e), None if pd.isna(w) else float(w))
        for a, o, e, w in frame[["attempt", "outcome", "exception_type", "wait_seconds"]].itertuples(index=False)
    ]


@pytest.fixture
def limit_name() -> Iterator[str]:
    """A fresh global concurrency limit name, deleted after the test."""
    name = f"forewarn-test-{uuid.uuid4().hex[:8]}"
    yield name
    with get_client(sync_client=True) as client, contextlib.suppress(Exception):  # the test may not have made it
        client.delete_global_concurrency_limit_by_name(name)


@pytest.mark.usefixtures("prefect_harness")
class TestAgainstTheRealAPI:
    def test_bulkhead_full_refuses_and_records_the_wait(self, limit_name: str) -> None:
        """A limit with no free slot: each attempt waits its timeout, is refused and recorded; the breaker is spared."""
        with get_client(sync_client=True) as client:
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=limit_name, limit=1, active_slots=1)
            )
        breaker = CircuitBreaker("payments-api", failure_threshold=1)
        calls: list[int] = []

        @forewarn.task(
            retries=1,
            retry_delay_seconds=0,
            concurrency=limit_name,
            limit_timeout_seconds=0.5,
            circuit_breaker=breaker,
        )
        def charge() -> None:
            calls.append(1)

        @forewarn.flow(score=False)
        def orders() -> None:
            charge()

        state = orders(return_state=True)
        assert state.is_failed()
        assert calls == []  # never called: no slot
        rows = attempts_of(str(state.state_details.flow_run_id))
        assert [(a, o, e) for a, o, e, _ in rows] == [
            (1, "failure", "AcquireConcurrencySlotTimeoutError"),
            (2, "failure", "AcquireConcurrencySlotTimeoutError"),
        ]
        assert all(w is not None and 0.4 <= w < 30 for *_, w in rows)
        assert breaker.state == "closed"  # the service was not called, so it did not fail

    def test_free_slot_runs_and_releases(self, limit_name: str) -> None:
        """With a free slot the attempt runs, its (short) wait is recorded, and the slot is given back."""
        with get_client(sync_client=True) as client:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=limit_name, limit=1))

        @forewarn.task(concurrency=limit_name, limit_timeout_seconds=30)
        def charge() -> str:
            return "charged"

        @forewarn.flow(score=False)
        def orders() -> list[str]:
            return [charge(), charge()]  # the second needs the slot the first gave back

        state = orders(return_state=True)
        assert state.result() == ["charged", "charged"]
        with get_client(sync_client=True) as client:
            assert client.read_global_concurrency_limit_by_name(limit_name).active_slots == 0

    def test_rate_limit_takes_a_token_per_attempt(self, limit_name: str) -> None:
        """rate_limit= takes one slot of a decaying limit before each attempt; every attempt records its wait."""
        with get_client(sync_client=True) as client:
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=limit_name, limit=5, slot_decay_per_second=50)
            )
        outcomes = iter([ConnectionError("reset"), "ok"])

        @forewarn.task(retries=2, retry_delay_seconds=0, rate_limit=limit_name, limit_timeout_seconds=30)
        async def fetch() -> str:
            item = next(outcomes)
            if isinstance(item, Exception):
                raise item
            return item

        @forewarn.flow(score=False)
        async def sync_prices() -> str:
            return await fetch()

        import asyncio

        state = asyncio.run(sync_prices(return_state=True))
        assert state.is_completed()
        rows = attempts_of(str(state.state_details.flow_run_id))
        assert [(a, o) for a, o, _, _ in rows] == [(1, "failure"), (2, "success")]
        assert all(w is not None and 0 <= w < 30 for *_, w in rows)

    def test_missing_limit_is_not_silently_ignored(self, limit_name: str) -> None:
        """limit_strict (forewarn's default): a limit that does not exist fails the attempt with Prefect's error."""

        @forewarn.task(retries=0, concurrency=limit_name)
        def charge() -> str:
            return "charged"

        @forewarn.flow(score=False)
        def orders() -> str:
            return charge()

        state = orders(return_state=True)
        assert state.is_failed()
        rows = attempts_of(str(state.state_details.flow_run_id))
        assert [(o, e) for _, o, e, _ in rows] == [("failure", "ConcurrencySlotAcquisitionError")]
