"""The store's side of history importers and the cold-start check, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from forewarn.errors import InvalidRecordError
from forewarn.records import AttemptOutcome, AttemptRecord, FlowRunRecord, RunState
from forewarn.store import TelemetryStore, schema

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


def run(run_id: str, flow: str = "etl", state: RunState = RunState.COMPLETED) -> FlowRunRecord:
    return FlowRunRecord(run_id, flow, T0, state, end_time=T0)


def attempt(task_run_id: str, n: int = 1) -> AttemptRecord:
    return AttemptRecord("r1", task_run_id, "load", n, T0, T0, AttemptOutcome.SUCCESS)


class TestRecordHistory:
    def test_runs_attempts_and_meta_in_one_transaction(self, store_url: str) -> None:
        store = TelemetryStore(store_url)
        written = store.record_history([run("r1"), run("r2")], [attempt("t1")], source="prefect", meta={"mark": "a"})
        assert written == (2, 1)
        assert store.runs()["source"].tolist() == ["prefect", "prefect"]
        assert store.meta_value("mark") == "a"
        store.record_history([], source="prefect", meta={"mark": "b"})  # a key is updated, not added twice
        assert store.meta_value("mark") == "b"

    def test_a_bad_record_writes_nothing(self, store_url: str) -> None:
        """A naive time in the page's last attempt: no run, no attempt, no meta key."""
        store = TelemetryStore(store_url)
        naive = AttemptRecord("r1", "t2", "load", 1, datetime(2026, 1, 1), T0, AttemptOutcome.SUCCESS)
        with pytest.raises(InvalidRecordError):
            store.record_history([run("r1")], [attempt("t1"), naive], source="prefect", meta={"mark": "a"})
        assert store.runs().empty and store.attempts().empty and store.meta_value("mark") is None

    def test_the_schema_version_key_is_refused(self, sqlite_url: str) -> None:
        store = TelemetryStore(sqlite_url)
        with pytest.raises(InvalidRecordError, match="schema_version"):
            store.record_history([], source="prefect", meta={"schema_version": "99"})
        assert store.schema_version == schema.SCHEMA_VERSION


class TestLookups:
    def test_known_ids_in_chunks(self, store_url: str) -> None:
        store = TelemetryStore(store_url)
        store.record_history([run(f"r{i}") for i in range(5)], [attempt("t1", 1), attempt("t1", 2)], source="prefect")
        asked = [f"r{i}" for i in range(3, 9)]
        assert store.known_ids("flow_runs", asked, chunk=2) == {"r3", "r4"}
        assert store.known_ids("task_attempts", ["t1", "t9"]) == {"t1"}
        assert store.known_ids("flow_runs", []) == set()
        with pytest.raises(InvalidRecordError, match="table"):
            store.known_ids("predictions", ["x"])

    def test_state_counts_and_flow_names(self, store_url: str) -> None:
        store = TelemetryStore(store_url)
        store.record_flow_runs([run("a"), run("b", "sync", RunState.FAILED), run("c", "sync", RunState.FAILED)])
        assert store.state_counts() == {"COMPLETED": 1, "FAILED": 2}
        assert store.flow_names() == {"etl", "sync"}
