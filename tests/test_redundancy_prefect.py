"""Redundant, failover and compensated tasks inside real Prefect runs: exact telemetry rows and their order."""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from prefect.cache_policies import NO_CACHE
from prefect.transactions import transaction

import forewarn
from forewarn import RetryPolicy
from forewarn.errors import ConfigurationError
from forewarn.resilience import FaultProfile, Provider
from forewarn.settings import get_settings
from forewarn.store import TelemetryStore

pytestmark = pytest.mark.usefixtures("prefect_harness")

NO_WAIT = RetryPolicy(attempts=2, wait_initial=0.0, wait_jitter=0)
ROW = ["task_name", "attempt", "replica", "provider", "outcome", "exception_type"]


def rows(flow_run_id: str, *, order: str = "id") -> list[tuple[Any, ...]]:
    """The run's attempt rows in the order they were written (id), or sorted by another column."""
    with TelemetryStore(get_settings().db_url) as store:
        frame = store.attempts(flow_run_id=flow_run_id).sort_values(order)
    return [tuple(None if pd.isna(v) else v for v in row) for row in frame[ROW].itertuples(index=False)]


def run_id(state: Any) -> str:
    return str(state.state_details.flow_run_id)


class TestOptions:
    @pytest.mark.parametrize("kwargs", [{"replicas": 2}, {"hedge_after": 1.0}])
    def test_redundancy_needs_idempotent(self, kwargs: dict[str, Any]) -> None:
        """replicas/hedge_after without idempotent=True is refused, saying why and how."""
        with pytest.raises(ConfigurationError) as info:
            forewarn.task(**kwargs)
        assert info.value.setting == "idempotent"
        assert "charge a card twice" in str(info.value) and "idempotent=True" in str(info.value)

    def test_bad_redundancy_values_name_the_option(self) -> None:
        """A bad replica count names replicas."""
        with pytest.raises(ConfigurationError) as info:
            forewarn.task(idempotent=True, replicas=0)
        assert info.value.setting == "replicas"

    def test_a_task_wide_breaker_with_providers_is_refused(self) -> None:
        """Each provider has its own breaker; one breaker for all would block the backup too."""
        with pytest.raises(ConfigurationError, match="give each provider its own"):
            forewarn.task(providers=[print], circuit_breaker=forewarn.CircuitBreaker("x"))

    def test_compensate_must_be_callable(self) -> None:
        """compensate='refund' is refused at decoration."""
        with pytest.raises(ConfigurationError) as info:
            forewarn.task(compensate="refund")
        assert info.value.setting == "compensate"


class TestRedundantTasks:
    def test_replicas_record_every_copy(self) -> None:
        """Two replicas: the first blocks, the second answers; rows: copy 2 success, copy 1 abandoned."""
        release = threading.Event()
        calls = {"n": 0}
        lock = threading.Lock()

        @forewarn.task(idempotent=True, replicas=2, retry=NO_WAIT, cache_policy=NO_CACHE)
        def quote(item: str) -> str:
            with lock:
                calls["n"] += 1
                first = calls["n"] == 1
            if first:
                release.wait(30)
                return "slow"
            return f"price of {item}"

        @forewarn.flow
        def pricing() -> str:
            return quote("pen")

        try:
            state = pricing(return_state=True)
        finally:
            release.set()
        assert state.result() == "price of pen"
        assert rows(run_id(state), order="replica") == [
            ("quote", 1, 1, None, "abandoned", None),
            ("quote", 2, 2, None, "success", None),
        ]

    def test_async_losers_are_cancelled(self) -> None:
        """An async task hedged at once: the hanging first copy is cancelled and recorded cancelled."""
        cancelled: list[str] = []
        calls = {"n": 0}

        @forewarn.task(idempotent=True, hedge_after=0.0, retry=NO_WAIT, cache_policy=NO_CACHE)
        async def lookup(key: str) -> str:
            calls["n"] += 1
            if calls["n"] == 1:
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    cancelled.append(key)
                    raise
            return f"value of {key}"

        @forewarn.flow
        async def read() -> str:
            return await lookup("k")

        state = asyncio.run(read(return_state=True))
        assert state.result() == "value of k" and cancelled == ["k"]
        assert rows(run_id(state), order="replica") == [
            ("lookup", 1, 1, None, "cancelled", None),
            ("lookup", 2, 2, None, "success", None),
        ]

    def test_failover_in_a_flow_records_each_switch(self) -> None:
        """The primary fails its attempts, the backup serves: rows name the provider of each attempt."""

        def primary_gateway(amount: float) -> str:
            raise ConnectionError("primary gateway unreachable")

        def backup_gateway(amount: float) -> str:
            return f"charged {amount} on backup"

        @forewarn.task(providers=[primary_gateway, backup_gateway], retry=NO_WAIT, cache_policy=NO_CACHE)
        def charge(amount: float) -> str:
            raise AssertionError("the providers replace the task's own function")

        @forewarn.flow
        def pay() -> str:
            return charge(9.5)

        state = pay(return_state=True)
        assert state.result() == "charged 9.5 on backup"
        assert rows(run_id(state)) == [
            ("charge", 1, None, "primary_gateway", "failure", "ConnectionError"),
            ("charge", 2, None, "primary_gateway", "failure", "ConnectionError"),
            ("charge", 3, None, "backup_gateway", "success", None),
        ]

    def test_parameter_set_providers(self) -> None:
        """A provider may be keyword arguments over the call's: the same function, another host."""
        hosts: list[str] = []

        @forewarn.task(
            providers=[Provider("eu", parameters={"host": "eu"}), Provider("us", parameters={"host": "us"})],
            retry=RetryPolicy(attempts=1),
            cache_policy=NO_CACHE,
        )
        def fetch(key: str, host: str = "default") -> str:
            hosts.append(host)
            if host == "eu":
                raise TimeoutError("eu is slow today")
            return f"{key}@{host}"

        @forewarn.flow
        def read() -> str:
            return fetch("k")

        state = read(return_state=True)
        assert state.result() == "k@us" and hosts == ["eu", "us"]
        assert [r[3:5] for r in rows(run_id(state))] == [("eu", "failure"), ("us", "success")]


class TestCompensation:
    def test_later_failure_undoes_succeeded_steps_latest_first(self) -> None:
        """Shipping fails: the charge is refunded, then the reservation released; rows in that order."""
        undone: list[str] = []

        def release(reservation: str, order: str) -> None:
            undone.append(f"release {reservation}")

        def refund(charge_id: str, order: str) -> None:
            undone.append(f"refund {charge_id}")

        @forewarn.task(compensate=release, retry=NO_WAIT, cache_policy=NO_CACHE)
        def reserve(order: str) -> str:
            return f"rsv-{order}"

        @forewarn.task(compensate=refund, retry=NO_WAIT, cache_policy=NO_CACHE)
        def charge(order: str) -> str:
            return f"ch-{order}"

        @forewarn.task(retry=NO_WAIT, cache_policy=NO_CACHE)
        def ship(order: str) -> str:
            raise ValueError("no carrier serves this address")

        @forewarn.flow
        def saga(order: str = "A-1") -> str:
            with transaction():
                reserve(order)
                charge(order)
                return ship(order)

        state = saga(return_state=True)
        assert state.is_failed()
        assert undone == ["refund ch-A-1", "release rsv-A-1"]
        assert rows(run_id(state)) == [
            ("reserve", 1, None, None, "success", None),
            ("charge", 1, None, None, "success", None),
            ("ship", 1, None, None, "failure", "ValueError"),
            ("charge", 2, None, None, "compensated", None),
            ("reserve", 2, None, None, "compensated", None),
        ]

    def test_a_failing_undo_is_recorded_and_the_others_still_run(self) -> None:
        """A refund that raises is a compensation_failure row; the release before it still happens."""
        undone: list[str] = []

        def release(reservation: str) -> None:
            undone.append("release")

        def refund(charge_id: str) -> None:
            raise ConnectionError("refund API down")

        @forewarn.task(compensate=release, retry=NO_WAIT, cache_policy=NO_CACHE)
        def reserve() -> str:
            return "rsv"

        @forewarn.task(compensate=refund, retry=NO_WAIT, cache_policy=NO_CACHE)
        def charge() -> str:
            return "ch"

        @forewarn.flow
        def saga() -> None:
            with transaction():
                reserve()
                charge()
                raise RuntimeError("the flow itself fails after both steps")

        state = saga(return_state=True)
        assert state.is_failed() and undone == ["release"]
        assert rows(run_id(state))[-2:] == [
            ("charge", 2, None, None, "compensation_failure", "ConnectionError"),
            ("reserve", 2, None, None, "compensated", None),
        ]

    def test_no_undo_when_the_flow_succeeds(self) -> None:
        """A completed saga commits: no compensation row."""

        @forewarn.task(compensate=lambda result: None, cache_policy=NO_CACHE)
        def step() -> str:
            return "done"

        @forewarn.flow
        def fine() -> str:
            with transaction():
                return step()

        state = fine(return_state=True)
        assert state.is_completed()
        assert [r[4] for r in rows(run_id(state))] == ["success"]


class TestOrderFlowSaga:
    def test_shipping_failure_refunds_then_releases(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The example order flow: shipping fails for good, so the payment is refunded and the stock released."""
        monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "flows"))
        sys.modules.pop("order_flow", None)
        import order_flow

        real = order_flow._services

        def shipping_down(*args: Any) -> Any:
            services = real(*args)
            services.faults.overrides["shipping.book"] = FaultProfile(permanent_rate=1.0)
            return services

        monkeypatch.setattr(order_flow, "_services", shipping_down)
        state = order_flow.process_order(order_id="S-1", transient_rate=0.0, permanent_rate=0.0, return_state=True)
        assert state.is_failed()
        assert [(r[0], r[4]) for r in rows(run_id(state))] == [
            ("validate_order", "success"),
            ("reserve_inventory", "success"),
            ("charge_payment", "success"),
            ("arrange_shipping", "failure"),
            ("charge_payment", "compensated"),
            ("reserve_inventory", "compensated"),
        ]
