"""Breaker state in the telemetry store: the row, atomic changes, rows another program wrote, the v3 upgrade."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
import sqlalchemy as sa

from forewarn.errors import CircuitOpenError, StoreError
from forewarn.resilience.breaker import CircuitBreaker
from forewarn.store import TelemetryStore, migrations, schema
from forewarn.store.breakers import StoreBreakerState
from test_store import describe_schema, make_v1_store


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(store_url: str) -> Any:
    with TelemetryStore(store_url) as opened:
        yield opened


def breaker(store: TelemetryStore, clock: Clock, **kwargs: Any) -> CircuitBreaker:
    options: dict[str, Any] = {"failure_threshold": 2, "reset_timeout": 10.0, "cache_seconds": 1.0}
    options.update(kwargs)
    return CircuitBreaker("payments", backend=StoreBreakerState(store), clock=clock, **options)


def row(store: TelemetryStore, name: str = "payments") -> dict[str, Any]:
    table = schema.circuit_breakers
    with store.engine.connect() as conn:
        found = conn.execute(sa.select(table).where(table.c.name == name)).mappings().one()
    return {k: v for k, v in found.items() if k != "updated_at"}


class TestRow:
    """One row per breaker, written on each transition, its version one more each time."""

    def test_opening_and_closing_are_rows(self, store: TelemetryStore) -> None:
        """Closed (created), open at t, a half-open trial, closed again: each change bumps the version."""
        clock = Clock()
        b = breaker(store, clock)
        b.before_call()
        b.record_failure()
        b.record_failure()
        opened = row(store)
        assert opened["state"] == "open" and opened["since"] == clock.now and opened["outcomes"] == ""
        clock.now += 10.0
        b.before_call()
        trial = row(store)
        assert (trial["state"], trial["trials"], trial["trial_at"]) == ("half_open", 1, clock.now)
        b.record_success()
        closed = row(store)
        assert (closed["state"], closed["trials"], closed["since"]) == ("closed", 0, clock.now)
        assert opened["version"] < trial["version"] < closed["version"]

    def test_a_time_window_is_stored_as_buckets(self, store: TelemetryStore) -> None:
        """mode='time': the row holds [slot, calls, failures, slow] buckets as JSON."""
        clock = Clock(1000.0)
        b = breaker(store, clock, mode="time", window_seconds=10.0, minimum_calls=100)
        b.record_failure()
        b.record_success()
        b.flush()
        assert row(store)["buckets"] == "[[1000,2,1,0]]"
        assert b.failure_count == 1

    def test_threads_with_their_own_caches_take_one_trial(self, store: TelemetryStore) -> None:
        """Eight breakers (eight caches) over one store, half-open, asking at once: one trial, seven refused."""
        clock = Clock()
        breakers = [breaker(store, clock) for _ in range(8)]
        for b in breakers:
            b.before_call()
        breakers[0].record_failure()
        breakers[0].record_failure()
        clock.now += 10.0
        start = threading.Barrier(8)
        allowed: list[int] = []

        def ask(i: int) -> None:
            start.wait()
            try:
                breakers[i].before_call()
                allowed.append(i)
            except CircuitOpenError:
                pass

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(allowed) == 1
        assert row(store)["trials"] == 1


class TestForeignRows:
    """A row another program wrote is refused by name, and the breaker carries on in-process."""

    @pytest.mark.parametrize(
        ("column", "value", "shown"),
        [
            ("state", "ajar", "state='ajar', not closed, open or half_open"),
            ("outcomes", "SFX", "outcomes='SFX', not at most 10000 of the characters"),
            ("buckets", "[[1, 2]]", "buckets='[[1, 2]]', not a JSON list"),
            ("buckets", "{", "buckets='{', not a JSON list"),
            ("trials", -1, "trials=-1, not a whole number"),
        ],
    )
    def test_a_bad_row_is_named(self, store: TelemetryStore, column: str, value: Any, shown: str) -> None:
        """StoreError naming the breaker, the column, the value and the way out."""
        store.change_breaker("payments", lambda s: (s, None))
        with store.engine.begin() as conn:
            conn.execute(sa.update(schema.circuit_breakers).values({column: value}))
        with pytest.raises(StoreError) as info:
            store.breaker_state("payments")
        message = str(info.value)
        assert "circuit_breakers row 'payments' has " + shown in message
        assert "Delete the row" in message

    def test_the_breaker_falls_back_on_a_bad_row(self, store: TelemetryStore, caplog: pytest.LogCaptureFixture) -> None:
        """One warning, then the breaker works in-process."""
        store.change_breaker("payments", lambda s: (s, None))
        with store.engine.begin() as conn:
            conn.execute(sa.update(schema.circuit_breakers).values(state="ajar"))
        b = breaker(store, Clock())
        with caplog.at_level(logging.WARNING, logger="forewarn.breaker"):
            b.before_call()
            b.record_failure()
            b.record_failure()
            with pytest.raises(CircuitOpenError):
                b.before_call()
        assert len(caplog.records) == 1 and "state='ajar'" in caplog.records[0].getMessage()


class TestUpgradeToVersion4:
    """A version-3 store gains the circuit_breakers table in place."""

    def test_v3_store_is_upgraded(self, store_url: str) -> None:
        """A real v3 store (version 1 with a run, upgraded by the real steps 2 and 3): reopened, it has the
        same schema as a new store, its run kept, and breakers work."""
        fresh_url = store_url + "-fresh" if store_url.startswith("sqlite") else None
        with TelemetryStore(fresh_url or store_url) as new:
            new.record_flow_run_start(_run())
        fresh = describe_schema(fresh_url or store_url)
        if fresh_url is None:  # one PostgreSQL database: start it again from nothing
            engine = sa.create_engine(store_url)
            with engine.begin() as conn:
                schema.metadata.drop_all(conn)
            engine.dispose()
        make_v1_store(store_url)
        engine = sa.create_engine(store_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            migrations.ensure_schema(conn, url=store_url, target=3, migrations=migrations.MIGRATIONS[:2])
        engine.dispose()
        with TelemetryStore(store_url) as upgraded:  # v3 (the old run, no circuit_breakers) -> current
            assert upgraded.schema_version == schema.SCHEMA_VERSION
            assert upgraded.runs()["flow_run_id"].tolist() == ["old"]
            upgraded.change_breaker("payments", lambda s: (s, None))
            assert upgraded.breaker_state("payments").state == "closed"
        assert describe_schema(store_url) == fresh


def _run() -> Any:
    from datetime import datetime, timezone

    from forewarn.records import FlowRunRecord

    return FlowRunRecord("r1", "etl", start_time=datetime(2026, 1, 1, tzinfo=timezone.utc))


@pytest.mark.postgres
class TestPostgresOutage:
    """PostgreSQL taken away behind a proxy: in-process state, one line; given back: shared again, one line."""

    def test_falls_back_and_shares_again(self, pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
        """Refused connections: the breaker still opens (locally); back: it reads the shared 'closed' state."""
        from forewarn.store import StoreTimeouts
        from tcp_proxy import Proxy

        url = sa.engine.make_url(pg_url)
        server = Proxy((url.host or "127.0.0.1", url.port or 5432))
        via_proxy = url.set(host="127.0.0.1", port=server.port).render_as_string(hide_password=False)
        clock, store_clock = Clock(), Clock(0.0)
        try:
            with TelemetryStore(via_proxy, timeouts=StoreTimeouts(retry_interval=5.0), clock=store_clock) as store:
                b = breaker(store, clock)
                b.before_call()
                server.refuse()
                clock.now += 1.0
                with caplog.at_level(logging.WARNING, logger="forewarn.breaker"):
                    for _ in range(2):
                        b.before_call()
                        b.record_failure()
                    with pytest.raises(CircuitOpenError):
                        b.before_call()
                    assert b.shared is False
                    server.resume()
                    store_clock.now += 5.0  # the store's own guard lets one call try again
                    clock.now += 1.0
                    b.before_call()  # the shared state never saw the failures: closed
                    assert b.shared is True
            messages = [r.getMessage() for r in caplog.records]
            assert len(messages) == 2, messages
            assert "cannot reach its shared state in the telemetry store" in messages[0]
            assert "answers again" in messages[1]
        finally:
            server.close()
