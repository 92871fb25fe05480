"""The telemetry store: schema, round trips, filters, versioning and errors, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
import sqlite3
import threading
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from forewarn.errors import (
    ConfigurationError,
    ForewarnError,
    InvalidRecordError,
    SchemaVersionError,
    StoreError,
    StoreUnreachableError,
)
from forewarn.records import AttemptOutcome, AttemptRecord, FlowRunRecord, PredictionRecord, RunState, parameters_hash
from forewarn.store import _queries as queries
from forewarn.store import migrations, schema
from forewarn.store.telemetry import (
    ATTEMPT_COLUMNS,
    PREDICTION_COLUMNS,
    RUN_COLUMNS,
    TelemetryStore,
    encode_features,
    encode_parameters,
)

UTC = timezone.utc
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    """A time ``minutes`` after T0."""
    return T0 + timedelta(minutes=minutes)


def run(flow_run_id: str = "r1", flow_name: str = "etl", start: float | None = 0, **changes: Any) -> FlowRunRecord:
    values: dict[str, Any] = {
        "flow_run_id": flow_run_id,
        "flow_name": flow_name,
        "start_time": None if start is None else at(start),
        "host": "h1",
        "forewarn_version": "9.9.9",
    }
    values.update(changes)
    return FlowRunRecord(**values)


def attempt(task_run_id: str = "t1", n: int = 1, start: float = 0, **changes: Any) -> AttemptRecord:
    values: dict[str, Any] = {
        "flow_run_id": "r1",
        "task_run_id": task_run_id,
        "task_name": "load",
        "attempt": n,
        "start_time": at(start),
        "end_time": at(start + 0.5),
        "outcome": AttemptOutcome.SUCCESS,
        "host": "h1",
    }
    values.update(changes)
    return AttemptRecord(**values)


def plain(value: Any) -> Any:
    """A DataFrame cell as the Python value it stands for (NaT/NA → None, Timestamp → datetime)."""
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


CURRENT = schema.SCHEMA_VERSION
NEXT = CURRENT + 1  # the version the schema-version tests pretend a newer forewarn reads


def rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: plain(v) for k, v in rec.items()} for rec in frame.to_dict("records")]


def run_row(rec: FlowRunRecord, **changes: Any) -> dict[str, Any]:
    """The row runs() should return for ``rec`` as written by record_flow_run_start."""
    digest = encode_parameters(rec.parameters)[1]
    row = {
        "flow_run_id": rec.flow_run_id,
        "flow_name": rec.flow_name,
        "deployment": rec.deployment,
        "parameters": rec.parameters,
        "parameters_hash": rec.parameters_hash or digest,
        "flow_version": rec.flow_version,
        "scheduled_start": rec.scheduled_start,
        "start_time": rec.start_time,
        "end_time": rec.end_time,
        "state": rec.state.value,
        "host": rec.host,
        "forewarn_version": rec.forewarn_version,
        "source": "forewarn",
        "features": rec.features,
        "tags": sorted(set(rec.tags)),
    }
    row.update(changes)
    return row


@pytest.fixture
def store(store_url: str) -> Any:
    with TelemetryStore(store_url) as opened:
        yield opened


class TestOpening:
    def test_creates_every_table_and_index_and_records_the_version(self, store: TelemetryStore) -> None:
        """An empty database gets the whole schema and the current schema_version."""
        inspector = sa.inspect(store.engine)
        assert set(inspector.get_table_names()) >= {"forewarn_meta", "flow_runs", "task_attempts", "predictions"}
        indexes = {
            table: {tuple(ix["column_names"]) for ix in inspector.get_indexes(table)}
            for table in ("flow_runs", "task_attempts", "predictions")
        }
        assert indexes["flow_runs"] >= {("flow_name", "end_time"), ("state", "end_time"), ("end_time",)}
        assert indexes["task_attempts"] >= {("flow_run_id",), ("outcome", "end_time"), ("end_time",)}
        assert indexes["predictions"] >= {("flow_run_id",), ("predicted_at",), ("flow_name", "scheduled_start")}
        uniques = {tuple(u["column_names"]) for u in inspector.get_unique_constraints("task_attempts")}
        assert uniques == {("task_run_id", "execution_id", "attempt")}
        assert "features" in {c["name"] for c in inspector.get_columns("flow_runs")}
        assert store.schema_version == schema.SCHEMA_VERSION
        with store.engine.connect() as conn:
            version = str(schema.SCHEMA_VERSION)
            assert conn.execute(sa.select(schema.forewarn_meta)).all() == [("schema_version", version)]

    def test_reopening_keeps_the_data(self, store_url: str) -> None:
        """A second store on the same URL sees what the first wrote and changes nothing."""
        with TelemetryStore(store_url) as first:
            first.record_flow_run_start(run())
        with TelemetryStore(store_url) as second:
            assert second.runs()["flow_run_id"].tolist() == ["r1"]
            assert second.schema_version == schema.SCHEMA_VERSION

    def test_create_false_refuses_an_empty_database(self, store_url: str) -> None:
        """create=False opens existing stores only (on SQLite the file is missing, elsewhere the database empty)."""
        with pytest.raises(StoreError, match=r"no forewarn (telemetry )?store"):
            TelemetryStore(store_url, create=False)
        TelemetryStore(store_url).close()
        with TelemetryStore(store_url, create=False) as store:
            assert store.schema_version == schema.SCHEMA_VERSION

    def test_default_url_comes_from_settings(self, tmp_path: Path) -> None:
        """Without a URL the store opens FOREWARN_DB_URL."""
        with TelemetryStore() as store:
            assert store.url == f"sqlite:///{tmp_path / 'telemetry.db'}"
        assert (tmp_path / "telemetry.db").exists()

    def test_sqlite_creates_the_parent_directory(self, tmp_path: Path) -> None:
        """The SQLite file's missing directories are created."""
        path = tmp_path / "a" / "b" / "store.db"
        with TelemetryStore(f"sqlite:///{path}"):
            assert path.exists()

    def test_sqlite_connections_use_wal_and_a_busy_timeout(self, sqlite_url: str) -> None:
        """SQLite connections use WAL, synchronous=NORMAL, busy_timeout=30 s and foreign keys."""
        with TelemetryStore(sqlite_url) as store, store.engine.connect() as conn:
            pragma = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
            }
        assert pragma == {"journal_mode": "wal", "synchronous": 1, "busy_timeout": 30000, "foreign_keys": 1}

    @pytest.mark.postgres
    def test_postgres_commits_asynchronously(self, pg_url: str) -> None:
        """PostgreSQL connections use psycopg 3 and synchronous_commit=off."""
        plain_url = pg_url.replace("postgresql+psycopg://", "postgresql://")
        with TelemetryStore(plain_url) as store, store.engine.connect() as conn:
            assert store.engine.dialect.driver == "psycopg"
            assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "off"

    def test_unwritable_sqlite_directory_is_a_store_error(self, tmp_path: Path) -> None:
        """A SQLite path whose directory cannot be created fails with StoreError naming the fix."""
        (tmp_path / "file").write_text("not a directory")
        with pytest.raises(StoreError, match="cannot create the directory") as info:
            TelemetryStore(f"sqlite:///{tmp_path / 'file' / 'sub' / 'store.db'}")
        assert "FOREWARN_DB_URL" in str(info.value)
        assert not isinstance(info.value, StoreUnreachableError)

    def test_sqlite_path_that_is_a_directory_is_a_store_error(self, tmp_path: Path) -> None:
        """A SQLite URL naming a directory cannot be opened: StoreError, not a raw sqlite3 error."""
        with pytest.raises(StoreError, match="cannot open the SQLite store"):
            TelemetryStore(f"sqlite:///{tmp_path}")

    def test_unreachable_postgres_fails_fast_with_a_masked_url(self) -> None:
        """A PostgreSQL URL that does not answer raises StoreUnreachableError quickly, password hidden."""
        url = "postgresql+psycopg://forewarn:s3cr3t-Pa55@127.0.0.1:1/telemetry"
        started = time.monotonic()
        with pytest.raises(StoreUnreachableError) as info:
            TelemetryStore(url)
        # a refused connection fails at once; the generous bound catches a retry loop, not a slow machine
        assert time.monotonic() - started < 30
        message = str(info.value)
        assert "postgresql+psycopg://forewarn:***@127.0.0.1:1/telemetry" in message
        assert "127.0.0.1:1" in message and "Check that PostgreSQL is running" in message
        assert info.value.url == "postgresql+psycopg://forewarn:***@127.0.0.1:1/telemetry"
        shown = message + repr(info.value) + "".join(traceback.format_exception(info.value))
        assert "s3cr3t-Pa55" not in shown

    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            ("mysql://u:s3cr3t-Pa55@h/db", "forewarn talks to PostgreSQL through psycopg"),
            ("postgresql+psycopg2://u:s3cr3t-Pa55@h/db", "forewarn talks to PostgreSQL through psycopg"),
            ("not a url s3cr3t-Pa55", "a SQLAlchemy URL"),
        ],
    )
    def test_other_urls_are_configuration_errors(self, url: str, expected: str) -> None:
        """Only sqlite:/// and postgresql(+psycopg):// URLs are accepted, and the error hides passwords."""
        with pytest.raises(ConfigurationError, match=expected) as info:
            TelemetryStore(url)
        assert info.value.setting == "url"
        if "://" in url:
            assert "s3cr3t-Pa55" not in str(info.value)

    def test_close_and_context_manager(self, sqlite_url: str) -> None:
        """A closed store refuses work with StoreError; closing twice is harmless."""
        with TelemetryStore(sqlite_url) as store:
            assert repr(store) == f"TelemetryStore({sqlite_url!r})"
        assert repr(store) == f"TelemetryStore({sqlite_url!r}, closed)"
        store.close()
        with pytest.raises(StoreError, match="was closed"):
            store.record_attempt(attempt())
        with pytest.raises(StoreError, match="was closed"):
            store.runs()


class TestPasswords:
    @pytest.mark.postgres
    def test_password_never_appears_in_url_repr_or_errors(self, pg_url: str) -> None:
        """The URL, repr and every StoreError of a live PostgreSQL store mask the password."""
        url = sa.make_url(pg_url).set(password="s3cr3t-Pa55").render_as_string(hide_password=False)
        with TelemetryStore(url) as store:
            assert "s3cr3t-Pa55" not in store.url + repr(store)
            assert ":***@" in store.url and ":***@" in repr(store)
            with store.engine.connect() as conn:
                conn.exec_driver_sql("DROP TABLE task_attempts")
            for call in (lambda: store.record_attempt(attempt()), lambda: store.attempts()):
                with pytest.raises(StoreError) as info:
                    call()
                shown = str(info.value) + repr(info.value) + "".join(traceback.format_exception(info.value))
                assert "s3cr3t-Pa55" not in shown
                assert ":***@" in str(info.value)


class TestFlowRuns:
    def test_start_round_trip(self, store: TelemetryStore) -> None:
        """Every field of a FlowRunRecord comes back exactly, parameters decoded, times in UTC."""
        rec = run(
            deployment="etl/nightly",
            parameters={"day": "2026-03-01", "n": 3, "nested": {"a": [1, 2]}},
            flow_version="abc123",
            scheduled_start=at(-1),
        )
        store.record_flow_run_start(rec)
        assert rows(store.runs()) == [run_row(rec)]

    def test_start_is_idempotent_and_overwrites(self, store: TelemetryStore) -> None:
        """Recording a start twice leaves one row holding the latest record."""
        store.record_flow_run_start(run())
        store.record_flow_run_start(run())
        retried = run(start=5, parameters={"x": 1})
        store.record_flow_run_start(retried)
        assert rows(store.runs()) == [run_row(retried)]

    def test_end_sets_state_and_end_time(self, store: TelemetryStore) -> None:
        """record_flow_run_end updates state and end_time and nothing else; RunState or its string."""
        store.record_flow_run_start(run("r1"))
        store.record_flow_run_start(run("r2", start=1))
        store.record_flow_run_end("r1", RunState.COMPLETED, at(3))
        store.record_flow_run_end("r2", "FAILED", at(4))
        assert rows(store.runs()) == [
            run_row(run("r1"), state="COMPLETED", end_time=at(3)),
            run_row(run("r2", start=1), state="FAILED", end_time=at(4)),
        ]

    def test_end_of_an_unknown_run_is_a_store_error(self, store: TelemetryStore) -> None:
        """An end without a recorded start is reported, not silently dropped."""
        with pytest.raises(StoreError, match="no flow run 'nope'"):
            store.record_flow_run_end("nope", RunState.COMPLETED, at(1))

    def test_unknown_state_is_a_value_error(self, store: TelemetryStore) -> None:
        """States are RunState values."""
        store.record_flow_run_start(run())
        with pytest.raises(ValueError, match="'DONE' is not a run state: expected one of SCHEDULED"):
            store.record_flow_run_end("r1", "DONE", at(1))

    def test_times_in_other_timezones_are_stored_as_utc(self, store: TelemetryStore) -> None:
        """A +02:00 time is stored as the same instant in UTC and filtered correctly."""
        plus2 = timezone(timedelta(hours=2))
        store.record_flow_run_start(run())
        store.record_flow_run_end("r1", RunState.COMPLETED, datetime(2026, 3, 1, 14, 30, tzinfo=plus2))
        frame = store.runs(since=datetime(2026, 3, 1, 13, 59, tzinfo=plus2))
        assert frame["end_time"].tolist() == [pd.Timestamp("2026-03-01 12:30", tz="UTC")]
        assert store.runs(since=datetime(2026, 3, 1, 14, 1, tzinfo=plus2)).empty

    def test_bulk_import_with_source(self, store: TelemetryStore) -> None:
        """record_flow_runs writes many runs at once and labels their source."""
        recs = [run(f"r{i}", start=i, state=RunState.COMPLETED, end_time=at(i + 1)) for i in range(3)]
        assert store.record_flow_runs(recs, source="import") == 3
        assert store.record_flow_runs([]) == 0
        assert rows(store.runs()) == [run_row(r, source="import") for r in recs]
        with pytest.raises(ValueError, match="source='csv' is invalid"):
            store.record_flow_run_start(run(), source="csv")

    def test_parameters_json_and_hash(self, store: TelemetryStore) -> None:
        """Parameters are canonical JSON (non-JSON values as str) with their parameters_hash unless one is given."""
        store.record_flow_run_start(run("r1", parameters={"b": 1, "a": T0}))
        store.record_flow_run_start(run("r2", parameters={"a": 1}, parameters_hash="given"))
        frame = store.runs()
        assert frame["parameters"].tolist() == [{"a": "2026-03-01 12:00:00+00:00", "b": 1}, {"a": 1}]
        assert frame["parameters_hash"].tolist() == [encode_parameters({"b": 1, "a": T0})[1], "given"]
        assert encode_parameters({"b": 1, "a": T0})[1] == parameters_hash({"a": T0, "b": 1})

    def test_a_run_has_one_parameters_hash_whatever_path_wrote_it(self, store: TelemetryStore) -> None:
        """The hash the store fills in (one run or a frame) is the one forewarn.flow and the importer record:
        records.parameters_hash, so the feature "parameters changed" does not depend on how a run was written."""
        params = {"batch": 500, "full_refresh": False}
        store.record_flow_run_start(run("one", parameters=params))
        frame = pd.DataFrame(
            {
                "flow_run_id": ["bulk", "none"],
                "flow_name": ["etl", "etl"],
                "state": ["COMPLETED", "COMPLETED"],
                "parameters": [params, None],
            }
        )
        store.record_runs_frame(frame)
        hashes = store.runs().set_index("flow_run_id")["parameters_hash"]
        assert hashes["one"] == hashes["bulk"] == parameters_hash(params)
        assert hashes["none"] == parameters_hash({})  # a run without parameters, as forewarn.flow records it

    def test_long_strings_are_truncated_to_the_column(self, store: TelemetryStore) -> None:
        """Over-long names are cut to their column's size instead of failing the write."""
        store.record_flow_run_start(run(flow_name="f" * 300, deployment="d" * 300))
        frame = store.runs()
        assert frame.loc[0, "flow_name"] == "f" * 255
        assert frame.loc[0, "deployment"] == "d" * 255


class TestAttempts:
    def test_round_trip(self, store: TelemetryStore) -> None:
        """Every field of an AttemptRecord comes back, with id, duration and the run's flow_name."""
        store.record_flow_run_start(run())
        store.record_attempt(
            attempt(
                "t1",
                1,
                outcome=AttemptOutcome.FAILURE,
                exception_type="ConnectionError",
                exception_message="refused by ***",
                retryable=True,
            )
        )
        store.record_attempt(attempt("t1", 2, start=1, outcome=AttemptOutcome.FALLBACK, used_fallback=True))
        store.record_attempt(
            attempt("t9", flow_run_id=None, start=2, replica=2, provider="backup", execution_id="0f1e2d3c4b5a6978")
        )
        frame = store.attempts()
        assert list(frame.columns) == list(ATTEMPT_COLUMNS)
        ids = frame["id"].tolist()
        assert len(set(ids)) == 3
        assert rows(frame.drop(columns="id")) == [
            {
                "flow_run_id": "r1",
                "task_run_id": "t1",
                "task_name": "load",
                "attempt": 1,
                "start_time": at(0),
                "end_time": at(0.5),
                "duration_seconds": 30.0,
                "outcome": "failure",
                "exception_type": "ConnectionError",
                "exception_message": "refused by ***",
                "retryable": True,
                "used_fallback": False,
                "host": "h1",
                "wait_seconds": None,
                "replica": None,
                "provider": None,
                "execution_id": "",
                "flow_name": "etl",
            },
            {
                "flow_run_id": "r1",
                "task_run_id": "t1",
                "task_name": "load",
                "attempt": 2,
                "start_time": at(1),
                "end_time": at(1.5),
                "duration_seconds": 30.0,
                "outcome": "fallback",
                "exception_type": None,
                "exception_message": None,
                "retryable": None,
                "used_fallback": True,
                "host": "h1",
                "wait_seconds": None,
                "replica": None,
                "provider": None,
                "execution_id": "",
                "flow_name": "etl",
            },
            {
                "flow_run_id": None,
                "task_run_id": "t9",
                "task_name": "load",
                "attempt": 1,
                "start_time": at(2),
                "end_time": at(2.5),
                "duration_seconds": 30.0,
                "outcome": "success",
                "exception_type": None,
                "exception_message": None,
                "retryable": None,
                "used_fallback": False,
                "host": "h1",
                "wait_seconds": None,
                "replica": 2,
                "provider": "backup",
                "execution_id": "0f1e2d3c4b5a6978",
                "flow_name": None,
            },
        ]

    def test_record_attempts_writes_a_batch(self, store: TelemetryStore) -> None:
        """record_attempts writes all rows and returns their count; an empty batch writes nothing."""
        assert store.record_attempts(attempt(f"t{i}", start=i) for i in range(50)) == 50
        assert store.record_attempts([]) == 0
        assert store.attempts()["task_run_id"].tolist() == [f"t{i}" for i in range(50)]

    @pytest.mark.parametrize("n", [1, 3, 300])
    def test_record_attempts_reads_back_as_record_attempt_writes(self, store_url: str, tmp_path: Path, n: int) -> None:
        """The multi-row upserts (chunks of 128, 64, ... on SQLite; column arrays on PostgreSQL) store exactly
        the rows one record_attempt per record stores: every field, offset times, NUL, long text, None."""
        plus_two = timezone(timedelta(hours=2))
        recs = [
            attempt(
                f"t{i}",
                1 + i % 3,
                start=i,
                flow_run_id=None if i % 7 == 0 else "r1",
                start_time=at(i).astimezone(plus_two),  # stored in UTC
                outcome=list(AttemptOutcome)[i % len(AttemptOutcome)],
                exception_type="E\x00rror" if i % 2 else None,
                exception_message="m" * (20_000 if i == 2 else i),
                retryable=(None, True, False)[i % 3],
                used_fallback=bool(i % 4 == 0),
            )
            for i in range(n)
        ]
        batch = TelemetryStore(store_url)
        assert batch.record_attempts(recs) == n
        one_by_one = TelemetryStore(f"sqlite:///{tmp_path / 'one.db'}")
        for rec in recs:
            one_by_one.record_attempt(rec)
        written = batch.attempts().drop(columns="id")
        assert rows(written) == rows(one_by_one.attempts().drop(columns="id"))
        assert batch.attempts()["id"].is_monotonic_increasing  # inserted in the records' order

    def test_record_attempts_keeps_the_last_of_equal_keys_at_the_first_place(self, store: TelemetryStore) -> None:
        """Equal (task_run_id, attempt) in one batch leave one row, as one upsert after the other would."""
        recs = [
            attempt("t1", outcome=AttemptOutcome.FAILURE),
            attempt("t2"),
            attempt("t1", outcome=AttemptOutcome.TIMEOUT),
        ]
        assert store.record_attempts(recs) == 3
        frame = store.attempts().sort_values("id")
        assert frame[["task_run_id", "outcome"]].values.tolist() == [["t1", "timeout"], ["t2", "success"]]

    def test_a_retryable_that_is_no_boolean_is_refused_before_writing(self, store: TelemetryStore) -> None:
        with pytest.raises(ValueError, match=r"AttemptRecord\.retryable must be True, False or None, not 'yes'"):
            store.record_attempts([attempt("t1"), attempt("t2", retryable="yes")])
        assert store.attempts().empty

    def test_same_task_run_and_attempt_overwrites(self, store: TelemetryStore) -> None:
        """(task_run_id, execution_id, attempt) is unique: writing it again replaces the row (safe to retry)."""
        store.record_attempt(attempt(outcome=AttemptOutcome.FAILURE))
        store.record_attempt(attempt(outcome=AttemptOutcome.SUCCESS))
        store.record_attempts([attempt(outcome=AttemptOutcome.TIMEOUT)])
        assert store.attempts()["outcome"].tolist() == ["timeout"]

    def test_two_executions_of_one_task_run_keep_both_attempt_ones_and_replays_are_no_ops(
        self, store: TelemetryStore
    ) -> None:
        """A task run executed twice (Dask re-ran it after its worker died) numbers its attempts from 1 both
        times: the executions' rows all stay, and replaying any of them, one by one or in a batch, changes nothing."""
        dead = [
            attempt("t1", 1, start=0, outcome=AttemptOutcome.FAILURE, execution_id="aaaaaaaaaaaaaaaa"),
        ]
        rerun = [
            attempt("t1", 1, start=5, outcome=AttemptOutcome.FAILURE, execution_id="bbbbbbbbbbbbbbbb"),
            attempt("t1", 2, start=6, outcome=AttemptOutcome.SUCCESS, execution_id="bbbbbbbbbbbbbbbb"),
        ]
        for rec in rerun:  # the re-run's records may well arrive first: the dead process's wait in its spool
            store.record_attempt(rec)
        assert store.record_attempts(dead) == 1
        expected = [
            ("aaaaaaaaaaaaaaaa", 1, "failure", at(0)),
            ("bbbbbbbbbbbbbbbb", 1, "failure", at(5)),
            ("bbbbbbbbbbbbbbbb", 2, "success", at(6)),
        ]

        def stored() -> list[tuple[Any, ...]]:
            frame = store.attempts()
            return sorted(
                (r.execution_id, r.attempt, r.outcome, r.start_time.to_pydatetime()) for r in frame.itertuples()
            )

        assert stored() == expected
        ids = sorted(store.attempts()["id"])
        store.record_attempt(dead[0])  # a replay after a crash, one record at a time
        assert store.record_attempts([*rerun, *dead, *rerun]) == 5  # and a spool replaying everything
        assert stored() == expected
        assert sorted(store.attempts()["id"]) == ids  # updated in place, never a new row

    def test_a_batch_with_two_executions_keeps_both(self, store: TelemetryStore) -> None:
        """Inside one batch, equal (task_run_id, attempt) of different executions are different rows."""
        recs = [attempt("t1", execution_id="a" * 16), attempt("t1", execution_id="b" * 16), attempt("t1")]
        assert store.record_attempts(recs) == 3
        assert sorted(store.attempts()["execution_id"]) == ["", "a" * 16, "b" * 16]

    def test_an_execution_id_that_is_no_text_is_refused_and_none_is_no_execution(self, store: TelemetryStore) -> None:
        with pytest.raises(ValueError, match=r"AttemptRecord\.execution_id must be text, not 7"):
            store.record_attempt(attempt("t1", execution_id=7))
        store.record_attempt(attempt("t1", execution_id=None))
        store.record_attempt(attempt("t2", execution_id="x" * 100))  # cut to its column, like every text
        assert store.attempts()["execution_id"].tolist() == ["", "x" * schema.EXECUTION_ID_LENGTH]

    def test_outcome_as_string_and_unknown_outcome(self, store: TelemetryStore) -> None:
        """A plain string outcome is accepted if it is an AttemptOutcome value."""
        store.record_attempt(attempt(outcome="timeout"))
        assert store.attempts()["outcome"].tolist() == ["timeout"]
        with pytest.raises(ValueError, match="'boom' is not an attempt outcome"):
            store.record_attempt(attempt(outcome="boom"))

    def test_long_message_is_truncated(self, store: TelemetryStore) -> None:
        """Messages longer than the column are cut, not rejected."""
        store.record_attempt(attempt(exception_message="x" * 20_000, exception_type="E" * 300))
        frame = store.attempts()
        assert frame.loc[0, "exception_message"] == "x" * schema.MESSAGE_LENGTH
        assert frame.loc[0, "exception_type"] == "E" * 255

    def test_dtypes(self, store: TelemetryStore) -> None:
        """Times are datetime64[ns, UTC] whether or not there are rows."""
        empty = store.attempts()
        store.record_attempt(attempt())
        for frame in (empty, store.attempts()):
            assert list(frame.columns) == list(ATTEMPT_COLUMNS)
            assert str(frame["start_time"].dtype) == "datetime64[ns, UTC]"
            assert str(frame["end_time"].dtype) == "datetime64[ns, UTC]"
            assert str(frame["id"].dtype) == "int64"
            assert str(frame["duration_seconds"].dtype) == "float64"
            assert str(frame["used_fallback"].dtype) == "bool"
            assert str(frame["retryable"].dtype) == "boolean"


class TestInvalidRecords:
    """Bad records and arguments raise forewarn's InvalidRecordError, still a ValueError and a TypeError."""

    @pytest.mark.parametrize(
        "call",
        [
            lambda s: s.record_flow_run_end("r1", "DONE", at(1)),
            lambda s: s.record_attempt(attempt(start_time="yesterday")),
            lambda s: s.record_flow_run_start(run(), source="cron"),
            lambda s: s.record_prediction(prediction(reasons="one reason")),
            lambda s: s.runs(limit=-1),
            lambda s: s.count_ended("predictions", T0, T0),
            lambda s: s.record_runs_frame(pd.DataFrame({"flow_run_id": ["r1"]})),
            lambda s: s.record_attempts_frame(pd.DataFrame(), chunk_rows=0),
        ],
        ids=["state", "time type", "source", "reasons", "limit", "table", "frame column", "chunk_rows"],
    )
    def test_invalid_record_error(self, store: TelemetryStore, call: Any) -> None:
        """The error is refused before anything is written, and every old ``except`` still catches it."""
        with pytest.raises(InvalidRecordError) as info:
            call(store)
        assert all(isinstance(info.value, kind) for kind in (ForewarnError, ValueError, TypeError))
        assert store.runs().empty and store.attempts().empty and store.predictions().empty


class TestNaiveDatetimes:
    naive = datetime(2026, 3, 1, 12, 0)

    @pytest.mark.parametrize(
        ("call", "name"),
        [
            (lambda s, t: s.record_flow_run_start(run(start_time=t)), "FlowRunRecord.start_time"),
            (lambda s, t: s.record_flow_run_start(run(scheduled_start=t)), "FlowRunRecord.scheduled_start"),
            (lambda s, t: s.record_flow_run_end("r1", "COMPLETED", t), "end_time"),
            (lambda s, t: s.record_attempt(attempt(start_time=t)), "AttemptRecord.start_time"),
            (lambda s, t: s.record_attempts([attempt(end_time=t)]), "AttemptRecord.end_time"),
            (lambda s, t: s.runs(since=t), "since"),
            (lambda s, t: s.attempts(until=t), "until"),
            (lambda s, t: s.last_runs("etl", t, 3), "ended_before"),
            (lambda s, t: s.recent_failures(t), "since"),
            (lambda s, t: s.recent_failures(T0, t), "until"),
        ],
        ids=[
            "start.start_time",
            "start.scheduled_start",
            "end",
            "record_attempt",
            "record_attempts",
            "runs",
            "attempts",
            "last_runs",
            "recent_failures.since",
            "recent_failures.until",
        ],
    )
    def test_naive_datetimes_are_rejected_naming_the_argument(
        self, store: TelemetryStore, call: Any, name: str
    ) -> None:
        """forewarn never guesses a timezone: naive datetimes raise ValueError naming the argument."""
        with pytest.raises(ValueError, match=f"{name}=datetime.datetime.2026, 3, 1, 12, 0. is a naive"):
            call(store, self.naive)
        assert store.runs().empty and store.attempts().empty


@pytest.fixture
def history(store: TelemetryStore) -> TelemetryStore:
    """Runs of two flows over time, and attempts of them."""
    ends = {
        "a1": ("etl", 0, RunState.COMPLETED, 10),
        "a2": ("etl", 20, RunState.FAILED, 30),
        "a3": ("etl", 40, RunState.COMPLETED, 50),
        "a4": ("etl", 60, RunState.CRASHED, 70),
        "b1": ("report", 5, RunState.TIMEDOUT, 15),
        "b2": ("report", 25, RunState.CANCELLED, 35),
        "b3": ("report", 45, RunState.FAILED, 55),
    }
    for run_id, (flow, start, _state, _end) in ends.items():
        store.record_flow_run_start(run(run_id, flow, start))
    store.record_flow_run_start(run("a5", "etl", 80))  # still RUNNING
    store.record_flow_run_start(run("a6", "etl", None, state=RunState.SCHEDULED))  # never started
    for run_id, (_flow, _start, state, end) in ends.items():
        store.record_flow_run_end(run_id, state, at(end))
    store.record_attempts(
        [
            attempt("a1-t", 1, 1, flow_run_id="a1"),
            attempt("a2-t", 1, 21, flow_run_id="a2", outcome=AttemptOutcome.FAILURE),
            attempt("a2-t", 2, 22, flow_run_id="a2", outcome=AttemptOutcome.TIMEOUT),
            attempt("b1-t", 1, 6, flow_run_id="b1", outcome=AttemptOutcome.FAILURE),
            attempt("b3-t", 1, 46, flow_run_id="b3", outcome=AttemptOutcome.FALLBACK_FAILURE),
        ]
    )
    return store


class TestReaders:
    def test_runs_are_ordered_by_start_with_unstarted_last(self, history: TelemetryStore) -> None:
        """runs() orders by start_time; a run that never started comes last."""
        frame = history.runs()
        assert list(frame.columns) == list(RUN_COLUMNS)
        assert frame["flow_run_id"].tolist() == ["a1", "b1", "a2", "b2", "a3", "b3", "a4", "a5", "a6"]
        assert frame["state"].tolist()[-2:] == ["RUNNING", "SCHEDULED"]
        for name in ("scheduled_start", "start_time", "end_time"):
            assert str(frame[name].dtype) == "datetime64[ns, UTC]"
        assert frame["end_time"].isna().tolist()[-2:] == [True, True]

    @pytest.mark.parametrize(
        ("filters", "expected"),
        [
            ({"flow_name": "report"}, ["b1", "b2", "b3"]),
            ({"flow_name": ["report", "nope"]}, ["b1", "b2", "b3"]),
            ({"flow_name": []}, []),
            ({"state": "FAILED"}, ["a2", "b3"]),
            ({"state": [RunState.FAILED, RunState.CRASHED]}, ["a2", "b3", "a4"]),
            ({"since": at(20)}, ["a2", "b2", "a3", "b3", "a4", "a5"]),
            ({"until": at(20)}, ["a1", "b1"]),
            ({"since": at(5), "until": at(40)}, ["b1", "a2", "b2"]),
            ({"flow_name": "etl", "since": at(1), "state": "COMPLETED"}, ["a3"]),
            ({"limit": 3}, ["a4", "a5", "a6"]),
            ({"flow_name": "etl", "until": at(60), "limit": 2}, ["a2", "a3"]),
            ({"limit": 0}, []),
        ],
    )
    def test_runs_filters(self, history: TelemetryStore, filters: dict[str, Any], expected: list[str]) -> None:
        """flow_name/state: one or a list; since/until: start_time in [since, until); limit: the newest."""
        assert history.runs(**filters)["flow_run_id"].tolist() == expected

    @pytest.mark.parametrize(
        ("filters", "expected"),
        [
            ({}, [("a1-t", 1), ("b1-t", 1), ("a2-t", 1), ("a2-t", 2), ("b3-t", 1)]),
            ({"flow_name": "etl"}, [("a1-t", 1), ("a2-t", 1), ("a2-t", 2)]),
            ({"flow_run_id": ["b1", "b3"]}, [("b1-t", 1), ("b3-t", 1)]),
            ({"outcome": "failure"}, [("b1-t", 1), ("a2-t", 1)]),
            (
                {"outcome": [AttemptOutcome.FAILURE, AttemptOutcome.TIMEOUT]},
                [("b1-t", 1), ("a2-t", 1), ("a2-t", 2)],
            ),
            ({"since": at(21.5), "until": at(46.6)}, [("a2-t", 1), ("a2-t", 2), ("b3-t", 1)]),
            ({"since": at(21.5), "until": at(46.5)}, [("a2-t", 1), ("a2-t", 2)]),
            ({"limit": 2}, [("a2-t", 2), ("b3-t", 1)]),
        ],
    )
    def test_attempts_filters(
        self, history: TelemetryStore, filters: dict[str, Any], expected: list[tuple[str, int]]
    ) -> None:
        """attempts() filters by flow (joined), run, outcome and end_time window, ordered by start."""
        frame = history.attempts(**filters)
        assert list(zip(frame["task_run_id"], frame["attempt"], strict=True)) == expected

    def test_last_runs(self, history: TelemetryStore) -> None:
        """The n runs of a flow that ended last before T, oldest first; unfinished runs left out."""
        assert history.last_runs("etl", at(60), 2)["flow_run_id"].tolist() == ["a2", "a3"]
        assert history.last_runs("etl", at(50), 5)["flow_run_id"].tolist() == ["a1", "a2"]
        assert history.last_runs("etl", at(1000), 10)["flow_run_id"].tolist() == ["a1", "a2", "a3", "a4"]
        assert history.last_runs("etl", at(10), 3).empty
        assert history.last_runs("etl", at(1000), 0).empty
        assert list(history.last_runs("nope", at(1000), 3).columns) == list(RUN_COLUMNS)
        with pytest.raises(ValueError, match="n=-1 is invalid"):
            history.last_runs("etl", at(10), -1)

    def test_recent_failures(self, history: TelemetryStore) -> None:
        """Failed, crashed and timed-out runs of every flow that ended in [since, until), by end_time."""
        assert history.recent_failures(at(0))["flow_run_id"].tolist() == ["b1", "a2", "b3", "a4"]
        assert history.recent_failures(at(15), at(55))["flow_run_id"].tolist() == ["b1", "a2"]
        assert history.recent_failures(at(71)).empty

    def test_values_are_bound_parameters(self, store: TelemetryStore) -> None:
        """Odd characters in names are data, never SQL."""
        name = "o'brien\"; DROP TABLE flow_runs; --"
        store.record_flow_run_start(run(flow_name=name))
        assert store.runs(flow_name=name)["flow_name"].tolist() == [name]
        assert store.last_runs(name, at(1), 1).empty


class TestQueryPlans:
    """On SQLite, EXPLAIN QUERY PLAN shows the readers' hot queries use their index."""

    @staticmethod
    def plan(store: TelemetryStore, stmt: sa.Select[Any]) -> str:
        compiled = stmt.compile(dialect=store.engine.dialect, compile_kwargs={"render_postcompile": True})
        params = tuple(None for _ in compiled.positiontup or ())  # plans do not depend on the values
        with store.engine.connect() as conn:
            found = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", params).all()
        return "\n".join(str(row[-1]) for row in found)

    @pytest.fixture
    def sqlite_store(self, sqlite_url: str) -> Any:
        with TelemetryStore(sqlite_url) as opened:
            opened.record_flow_runs(run(f"r{i}", f"f{i % 7}", i) for i in range(200))
            opened.record_attempts(attempt(f"t{i}", start=i) for i in range(200))
            yield opened

    def test_last_runs_uses_the_flow_name_end_time_index(self, sqlite_store: TelemetryStore) -> None:
        """'Last N runs of flow F that ended before T' is an index search, no table scan, no sort."""
        plan = self.plan(sqlite_store, queries.last_runs_query("f1", T0, 5))
        assert "USING INDEX ix_flow_runs_flow_name_end_time (flow_name=? AND end_time<?)" in plan
        # the flow_run_id tie-break only sorts runs that ended at the same instant ("RIGHT PART")
        assert "SCAN flow_runs" not in plan and "USE TEMP B-TREE FOR ORDER BY" not in plan

    def test_recent_failures_uses_the_state_end_time_index(self, sqlite_store: TelemetryStore) -> None:
        """'Recent failures across all flows' searches the (state, end_time) index."""
        plan = self.plan(sqlite_store, queries.recent_failures_query(T0, None))
        assert "USING INDEX ix_flow_runs_state_end_time (state=? AND end_time>?)" in plan
        assert "SCAN flow_runs" not in plan

    def test_recent_failed_attempts_use_the_outcome_end_time_index(self, sqlite_store: TelemetryStore) -> None:
        """Failed attempts in a time window search the (outcome, end_time) index."""
        stmt = queries.attempts_query(
            flow_name=None, flow_run_id=None, since=T0, until=None, outcome=["failure", "timeout"], limit=None
        )
        plan = self.plan(sqlite_store, stmt)
        assert "USING INDEX ix_task_attempts_outcome_end_time (outcome=? AND end_time>?)" in plan
        assert "SCAN task_attempts" not in plan


"""The schema this forewarn writes, and the one a test step pretends to add (tests stay true when it grows)."""


class TestSchemaVersions:
    """Newer stores refused, older ones upgraded by the next step (NEXT: one more than this forewarn reads)."""

    @staticmethod
    def set_version(url: str, version: int) -> None:
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.update(schema.forewarn_meta).values(value=str(version)))
        engine.dispose()

    def test_newer_store_is_refused(self, store_url: str) -> None:
        """A store written by a newer forewarn raises SchemaVersionError telling how to get out."""
        TelemetryStore(store_url).close()
        self.set_version(store_url, NEXT)
        with pytest.raises(SchemaVersionError) as info:
            TelemetryStore(store_url)
        assert (
            f"this store was written by a newer forewarn (schema {NEXT}, this forewarn reads up to "
            f"{schema.SCHEMA_VERSION}): upgrade forewarn (pip install -U forewarn) or point FOREWARN_DB_URL at "
            "another store"
        ) in str(info.value)
        assert isinstance(info.value, StoreError)

    @staticmethod
    def add_queue_column(op: Any) -> None:
        with op.batch_alter_table("task_attempts") as batch:
            batch.add_column(sa.Column("queue", sa.String(64)))

    def test_older_store_is_upgraded(self, store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
        """Opening a store with a forewarn that reads one version more runs that step once and keeps the data."""
        with TelemetryStore(store_url) as old:
            old.record_attempt(attempt())
        calls: list[int] = []

        def step(op: Any) -> None:
            calls.append(NEXT)
            self.add_queue_column(op)

        monkeypatch.setattr(schema, "SCHEMA_VERSION", NEXT)
        monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, (NEXT, step)])
        with TelemetryStore(store_url) as upgraded:
            assert upgraded.schema_version == NEXT
            columns = {c["name"] for c in sa.inspect(upgraded.engine).get_columns("task_attempts")}
            assert "queue" in columns
            assert upgraded.attempts()["task_run_id"].tolist() == ["t1"]
        with TelemetryStore(store_url) as again:
            assert again.schema_version == NEXT
        assert calls == [NEXT]

    def test_failed_upgrade_leaves_the_store_unchanged(self, store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
        """A step that fails rolls back every change of the upgrade, version included."""
        TelemetryStore(store_url).close()

        def broken(op: Any) -> None:
            self.add_queue_column(op)
            raise RuntimeError("the step is broken")

        real = list(migrations.MIGRATIONS)
        monkeypatch.setattr(schema, "SCHEMA_VERSION", NEXT)
        monkeypatch.setattr(migrations, "MIGRATIONS", [*real, (NEXT, broken)])
        failed = rf"from schema {NEXT - 1} to {NEXT} failed \(RuntimeError: the step is broken\)"
        with pytest.raises(StoreError, match=failed):
            TelemetryStore(store_url)
        monkeypatch.setattr(schema, "SCHEMA_VERSION", NEXT - 1)
        monkeypatch.setattr(migrations, "MIGRATIONS", real)
        with TelemetryStore(store_url) as store:
            assert store.schema_version == NEXT - 1
            columns = {c["name"] for c in sa.inspect(store.engine).get_columns("task_attempts")}
            assert "queue" not in columns

    def test_missing_step_is_reported(self, store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
        """SCHEMA_VERSION without a matching step is a StoreError, not a half-migrated store."""
        TelemetryStore(store_url).close()
        monkeypatch.setattr(schema, "SCHEMA_VERSION", NEXT + 1)
        monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, (NEXT, self.add_queue_column)])
        with pytest.raises(StoreError, match=rf"no step for schema version\(s\) \[{NEXT + 1}\]"):
            TelemetryStore(store_url)

    def test_concurrent_openers_migrate_once(self, store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
        """Four stores opening one old store at once: the step runs once, every opener sees the new version."""
        TelemetryStore(store_url).close()
        calls: list[int] = []

        def slow_step(op: Any) -> None:
            calls.append(NEXT)
            time.sleep(0.3)  # widen the window in which a second migrator could start
            self.add_queue_column(op)

        monkeypatch.setattr(schema, "SCHEMA_VERSION", NEXT)
        monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, (NEXT, slow_step)])
        barrier = threading.Barrier(4)
        versions: list[int] = []
        errors: list[BaseException] = []

        def open_store() -> None:
            barrier.wait()
            try:
                with TelemetryStore(store_url) as opened:
                    versions.append(opened.schema_version)
            except BaseException as exc:  # reported by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=open_store) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == []
        assert versions == [NEXT] * 4
        assert calls == [NEXT]

    def test_concurrent_creators_of_an_empty_store(self, store_url: str) -> None:
        """Four stores opening one empty database at once all succeed; the schema is created once."""
        barrier = threading.Barrier(4)
        errors: list[BaseException] = []

        def open_store() -> None:
            barrier.wait()
            try:
                TelemetryStore(store_url).close()
            except BaseException as exc:  # reported by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=open_store) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == []
        with TelemetryStore(store_url) as store:
            assert store.schema_version == schema.SCHEMA_VERSION


class TestForeignDatabases:
    """A store never writes into another application's database, and a reader never creates one."""

    @staticmethod
    def make_foreign(url: str, *tables: str) -> None:
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            for table in tables:
                conn.exec_driver_sql(f'create table "{table}" (id integer primary key, note text)')
            conn.exec_driver_sql(f"insert into \"{tables[0]}\" (id, note) values (1, 'keep me')")
        engine.dispose()

    @pytest.mark.parametrize("create", [True, False])
    def test_another_apps_database_is_refused_naming_its_tables(self, store_url: str, create: bool) -> None:
        """Tables but no forewarn_meta.schema_version: StoreError naming them and the fix; nothing created."""
        self.make_foreign(store_url, "orders", "customers")
        with pytest.raises(StoreError) as info:
            TelemetryStore(store_url, create=create)
        message = str(info.value)
        assert "is not a forewarn store" in message
        assert "2 table(s) ('customers', 'orders')" in message
        assert "forewarn_meta.schema_version" in message
        assert "Point FOREWARN_DB_URL at an empty database or at a forewarn store" in message
        assert not isinstance(info.value, SchemaVersionError)
        engine = sa.create_engine(store_url)
        with engine.connect() as conn:
            assert sorted(sa.inspect(conn).get_table_names()) == ["customers", "orders"]
            assert conn.exec_driver_sql("select note from orders").scalar() == "keep me"
        engine.dispose()

    def test_a_foreign_sqlite_file_is_left_byte_for_byte(self, tmp_path: Path) -> None:
        """Not even the journal mode changes: the refusal comes before the engine's WAL switch."""
        path = tmp_path / "shop.db"
        with sqlite3.connect(path) as conn:
            conn.execute("create table orders (id integer primary key)")
        before = path.read_bytes()
        with pytest.raises(StoreError, match="orders"):
            TelemetryStore(f"sqlite:///{path}")
        assert path.read_bytes() == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["shop.db"]

    def test_many_tables_are_summarised_and_quoted(self, sqlite_url: str) -> None:
        """Five names, quoted and cut, then a count: a table name is another program's text."""
        names = [f"t{i:02d}" for i in range(12)] + ["[bold]x\nforged line" + "y" * 80]
        engine = sa.create_engine(sqlite_url)
        with engine.begin() as conn:
            for name in names:
                conn.exec_driver_sql(f'create table "{name}" (id int)')
        engine.dispose()
        with pytest.raises(StoreError) as info:
            TelemetryStore(sqlite_url)
        message = str(info.value)
        assert "13 table(s) ('[bold]x\\nforged line" in message  # sorted first, shown as repr
        assert "and 8 more" in message
        assert "\n" not in message and "y" * 41 not in message

    def test_a_view_counts_as_foreign(self, sqlite_url: str) -> None:
        """A database holding only a view is still somebody's."""
        engine = sa.create_engine(sqlite_url)
        with engine.begin() as conn:
            conn.exec_driver_sql("create view answer as select 42 as n")
        engine.dispose()
        with pytest.raises(StoreError, match=r"1 table\(s\) \('answer'\)"):
            TelemetryStore(sqlite_url)

    def test_writers_still_create_a_store_in_an_empty_database(self, store_url: str) -> None:
        """An empty or missing database becomes a store for a writer, as before."""
        with TelemetryStore(store_url) as store:
            assert store.schema_version == schema.SCHEMA_VERSION

    def test_a_reader_on_a_missing_path_creates_nothing(self, tmp_path: Path) -> None:
        """create=False on a mistyped SQLite path: 'no forewarn store at PATH', no file, no directory."""
        path = tmp_path / "typo" / "telemtry.db"
        with pytest.raises(StoreError) as info:
            TelemetryStore(f"sqlite:///{path}", create=False)
        assert f"no forewarn store at {path}: the file does not exist" in str(info.value)
        assert "url" in str(info.value)  # the setting the path came from
        assert not (tmp_path / "typo").exists()

    def test_a_reader_names_the_setting_it_read(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """Without a URL the error points at FOREWARN_DB_URL."""
        from forewarn.settings import get_settings

        monkeypatch.setenv("FOREWARN_DB_URL", f"sqlite:///{tmp_path / 'missing.db'}")
        get_settings.cache_clear()
        with pytest.raises(StoreError, match="Check the path in FOREWARN_DB_URL"):
            TelemetryStore(create=False)
        assert not (tmp_path / "missing.db").exists()

    def test_a_reader_on_an_empty_file_leaves_it_empty(self, tmp_path: Path) -> None:
        """An existing empty file is no store for a reader, and stays zero bytes."""
        path = tmp_path / "empty.db"
        path.touch()
        with pytest.raises(StoreError, match="holds no forewarn telemetry store"):
            TelemetryStore(f"sqlite:///{path}", create=False)
        assert path.stat().st_size == 0

    def test_a_file_that_is_not_sqlite_is_refused_unchanged(self, tmp_path: Path) -> None:
        """A text file at the store path: a StoreError with SQLite's reason; the file is not touched."""
        path = tmp_path / "notes.db"
        path.write_text("dear diary, " * 100)
        with pytest.raises(StoreError, match=r"cannot open the SQLite store .*file is not a database"):
            TelemetryStore(f"sqlite:///{path}")
        assert path.read_text() == "dear diary, " * 100

    @pytest.mark.parametrize("value", ["2b", "", " 2", "2_0", "0", "-1", "\u0662", "9" * 50])
    def test_a_version_that_is_not_one_is_a_schema_version_error(self, store_url: str, value: str) -> None:
        """forewarn_meta.schema_version '2b' raises SchemaVersionError naming the value, not ValueError."""
        TelemetryStore(store_url).close()
        engine = sa.create_engine(store_url)
        with engine.begin() as conn:
            conn.execute(sa.update(schema.forewarn_meta).values(value=value))
        engine.dispose()
        with pytest.raises(SchemaVersionError) as info:
            TelemetryStore(store_url)
        assert f"forewarn_meta.schema_version is {value[:40]!r}, not a schema version" in str(info.value)
        assert info.value.url is not None


class TestLockedSqlite:
    """A write that finds SQLite locked past busy_timeout is retried with backoff, then reported."""

    @pytest.fixture
    def locked(self, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
        """A store with busy_timeout=0 and a second connection holding the write lock."""
        monkeypatch.setattr("forewarn.store._engine.SQLITE_BUSY_TIMEOUT_MS", 0)
        store = TelemetryStore(sqlite_url, sleep=lambda s: None)
        store.record_flow_run_start(run())
        blocker = sa.create_engine(sqlite_url, isolation_level="AUTOCOMMIT").connect()
        blocker.exec_driver_sql("BEGIN IMMEDIATE")
        yield store, blocker
        blocker.close()
        store.close()

    @pytest.mark.parametrize(
        "write",
        [
            lambda s: s.record_attempt(attempt()),
            lambda s: s.record_attempts([attempt()]),
            lambda s: s.record_flow_run_start(run("r2")),
            lambda s: s.record_flow_run_end("r1", "COMPLETED", at(1)),
        ],
        ids=["record_attempt", "record_attempts", "record_flow_run_start", "record_flow_run_end"],
    )
    def test_retried_until_the_lock_is_released(self, locked: Any, write: Any) -> None:
        """The caller never sees 'database is locked' when the lock goes away during the retries."""
        store, blocker = locked
        sleeps: list[float] = []

        def sleep(seconds: float) -> None:
            sleeps.append(seconds)
            if len(sleeps) == 2:
                blocker.exec_driver_sql("COMMIT")

        store._sleep = sleep
        write(store)
        assert sleeps == [0.05, 0.1]

    def test_reported_as_store_error_when_it_stays_locked(self, locked: Any) -> None:
        """After five retries (0.05 s doubling) the write fails with StoreError, not OperationalError."""
        store, _blocker = locked
        sleeps: list[float] = []
        store._sleep = sleeps.append
        with pytest.raises(StoreError, match=r"record_attempt failed .* after 5 retries: database is locked"):
            store.record_attempt(attempt())
        assert sleeps == [0.05, 0.1, 0.2, 0.4, 0.8]

    def test_other_errors_are_not_retried(self, store: TelemetryStore) -> None:
        """A constraint violation fails at once as StoreError."""
        sleeps: list[float] = []
        store._sleep = sleeps.append
        with pytest.raises(StoreError, match="record_attempt failed on the telemetry store"):
            store.record_attempt(attempt(task_name=None))
        assert sleeps == []


class TestFeatures:
    """flow_runs.features holds a run's pre-run feature_<name> attributes; readers expand them into columns."""

    def test_features_become_feature_columns_after_the_table_columns(self, store: TelemetryStore) -> None:
        """Numbers stay numbers, text stays text, a missing feature is NaN or None; names are sorted."""
        store.record_flow_run_start(run("r1", start=0, features={"rows": 1200, "source": "sap", "ratio": 0.5}))
        store.record_flow_run_start(run("r2", start=1, features={"rows": 30, "ok": True}))
        store.record_flow_run_start(run("r3", start=2))
        frame = store.runs()
        assert list(frame.columns) == [
            *RUN_COLUMNS,
            "feature_ok",
            "feature_ratio",
            "feature_rows",
            "feature_source",
        ]
        assert frame["features"].tolist() == [
            {"rows": 1200, "source": "sap", "ratio": 0.5},
            {"rows": 30, "ok": True},
            {},
        ]
        assert str(frame["feature_rows"].dtype) == "float64"  # r3 has none: NaN
        assert frame["feature_rows"].tolist()[:2] == [1200.0, 30.0] and pd.isna(frame["feature_rows"][2])
        assert str(frame["feature_ratio"].dtype) == "float64"
        assert frame["feature_source"].tolist() == ["sap", None, None]
        assert frame["feature_ok"].tolist() == [None, True, None]

    def test_complete_whole_numbers_are_int64_and_complete_flags_bool(self, store: TelemetryStore) -> None:
        """A feature every run has keeps its exact type: int64 for whole numbers, bool for flags."""
        store.record_flow_runs([run(f"r{i}", start=i, features={"rows": i, "full": i % 2 == 0}) for i in range(3)])
        frame = store.runs()
        assert str(frame["feature_rows"].dtype) == "int64" and frame["feature_rows"].tolist() == [0, 1, 2]
        assert str(frame["feature_full"].dtype) == "bool" and frame["feature_full"].tolist() == [True, False, True]

    def test_runs_without_features_have_no_feature_columns(self, store: TelemetryStore) -> None:
        """Only features present in the selected rows become columns; no rows, no feature columns."""
        store.record_flow_run_start(run("r1", "etl", features={"rows": 1}))
        store.record_flow_run_start(run("r2", "report"))
        assert list(store.runs(flow_name="report").columns) == list(RUN_COLUMNS)
        assert list(store.runs(flow_name="nope").columns) == list(RUN_COLUMNS)
        assert list(store.runs(flow_name="etl").columns) == [*RUN_COLUMNS, "feature_rows"]

    def test_last_runs_and_recent_failures_expand_features_too(self, store: TelemetryStore) -> None:
        """The other runs readers return the same shape as runs()."""
        store.record_flow_run_start(run("r1", state=RunState.FAILED, end_time=at(1), features={"rows": 5}))
        assert store.last_runs("etl", at(2), 1)["feature_rows"].tolist() == [5]
        assert store.recent_failures(at(0))["feature_rows"].tolist() == [5]

    def test_features_are_stored_as_sorted_json_or_null(self, store: TelemetryStore) -> None:
        """The column holds canonical JSON (sorted keys), and NULL for a run without features."""
        store.record_flow_run_start(run("r1", features={"b": "x", "a": 1}))
        store.record_flow_run_start(run("r2", start=1))
        with store.engine.connect() as conn:
            stored = conn.execute(sa.select(schema.flow_runs.c.features).order_by("flow_run_id")).scalars().all()
        assert stored == ['{"a": 1, "b": "x"}', None]
        assert encode_features({"b": "x", "a": 1}) == '{"a": 1, "b": "x"}'


def runs_frame(n: int = 3) -> pd.DataFrame:
    """A runs frame as the importer makes it: n etl runs one minute apart, with two features."""
    starts = pd.Series([at(i) for i in range(n)], dtype="datetime64[ns, UTC]")
    return pd.DataFrame(
        {
            "flow_run_id": [f"r{i}" for i in range(n)],
            "flow_name": "etl",
            "deployment": pd.Series(["etl/prod", None, "etl/prod"][:n] + ["etl/prod"] * max(n - 3, 0), dtype=object),
            "parameters": pd.Series([{"day": i} if i % 2 else None for i in range(n)], dtype=object),
            "parameters_hash": pd.Series([None] * n, dtype=object),
            "flow_version": "1.0",
            "scheduled_start": starts,
            "start_time": starts + pd.Timedelta(seconds=5),
            "end_time": pd.Series([at(i + 0.5) if i else pd.NaT for i in range(n)], dtype="datetime64[ns, UTC]"),
            "state": ["RUNNING"] + ["COMPLETED"] * (n - 1),
            "feature_rows": [100 * i for i in range(n)],
            "feature_source": pd.Series(["sap", None, "sftp"][:n] + ["sap"] * max(n - 3, 0), dtype=object),
        }
    )


class TestBulkFrames:
    """record_runs_frame / record_attempts_frame: a whole imported history in one transaction."""

    def test_runs_frame_reads_back_like_records(self, store: TelemetryStore, sqlite_url: str) -> None:
        """A runs frame gives exactly the rows record_flow_runs gives for the same runs."""
        frame = runs_frame()
        assert store.record_runs_frame(frame) == 3
        records = [
            FlowRunRecord(
                flow_run_id=row["flow_run_id"],
                flow_name="etl",
                start_time=row["start_time"].to_pydatetime(),
                state=RunState(row["state"]),
                deployment=row["deployment"],
                parameters=row["parameters"] or {},
                flow_version="1.0",
                scheduled_start=row["scheduled_start"].to_pydatetime(),
                end_time=None if pd.isna(row["end_time"]) else row["end_time"].to_pydatetime(),
                host=None,  # type: ignore[arg-type]
                features={k[8:]: v for k, v in row.items() if k.startswith("feature_") and v is not None},
            )
            for row in frame.to_dict("records")
        ]
        with TelemetryStore(sqlite_url) as other:
            other.record_flow_runs(records, source="import")
            expected = rows(other.runs())
        assert rows(store.runs()) == expected
        assert expected[1]["features"] == {"rows": 100} and expected[1]["parameters"] == {"day": 1}

    def test_sqlite_times_are_stored_in_the_one_text_format(self, sqlite_url: str) -> None:
        """Bulk-written times are the same text record_flow_run_start writes, so comparisons agree."""
        with TelemetryStore(sqlite_url) as store:
            store.record_runs_frame(runs_frame(2))
            store.record_flow_run_start(run("x", start=0.25, scheduled_start=at(0)))
            with store.engine.connect() as conn:
                stored = conn.exec_driver_sql(
                    "select flow_run_id, scheduled_start, start_time from flow_runs order by flow_run_id"
                ).all()
        assert stored == [
            ("r0", "2026-03-01 12:00:00.000000", "2026-03-01 12:00:05.000000"),
            ("r1", "2026-03-01 12:01:00.000000", "2026-03-01 12:01:05.000000"),
            ("x", "2026-03-01 12:00:00.000000", "2026-03-01 12:00:15.000000"),
        ]

    def test_chunks_report_progress_and_upsert(self, store: TelemetryStore) -> None:
        """progress(done, total) before the first chunk and after each; writing again keeps one row per id."""
        calls: list[tuple[int, int]] = []
        store.record_runs_frame(runs_frame(5), chunk_rows=2, progress=lambda done, total: calls.append((done, total)))
        assert calls == [(0, 5), (2, 5), (4, 5), (5, 5)]
        changed = runs_frame(5).assign(state="FAILED", end_time=pd.Timestamp(at(9)))
        store.record_runs_frame(changed)
        frame = store.runs()
        assert len(frame) == 5 and set(frame["state"]) == {"FAILED"} and set(frame["source"]) == {"import"}

    def test_a_failure_midway_writes_nothing(self, store: TelemetryStore) -> None:
        """Every chunk runs in one transaction: an error after the first chunk rolls all of them back."""

        def progress(done: int, total: int) -> None:
            if done == 2:
                raise RuntimeError("interrupted")

        with pytest.raises(RuntimeError, match="interrupted"):
            store.record_runs_frame(runs_frame(5), chunk_rows=2, progress=progress)
        assert store.runs().empty

    @pytest.mark.parametrize(
        ("change", "message"),
        [
            (lambda f: f.drop(columns="state"), "the runs frame has no column(s) state"),
            (lambda f: f.assign(state="DONE"), "runs['state'] holds 'DONE': expected RunState values"),
            (lambda f: f.assign(flow_name=None), "runs['flow_name'] is empty in 3 row(s), first at position 0"),
            (
                lambda f: f.assign(start_time=f["start_time"].dt.tz_localize(None)),
                "runs['start_time'] holds datetime64[ns] values: expected timezone-aware times",
            ),
        ],
        ids=["missing-column", "state", "empty-name", "naive-time"],
    )
    def test_bad_frames_are_value_errors(self, store: TelemetryStore, change: Any, message: str) -> None:
        """A frame that breaks the runs-frame contract is refused before anything is written."""
        with pytest.raises(ValueError, match=re.escape(message)):
            store.record_runs_frame(change(runs_frame()))
        assert store.runs().empty

    def test_attempts_frame_reads_back_like_records(self, store: TelemetryStore, sqlite_url: str) -> None:
        """An attempts frame gives the rows record_attempts gives; used_fallback follows the outcome."""
        recs = [
            attempt("t1", 1, 0, outcome=AttemptOutcome.FAILURE, exception_type="KeyError", host=None),
            attempt("t1", 2, 1, outcome=AttemptOutcome.FALLBACK, used_fallback=True, host=None),
            attempt("t2", 1, 2, flow_run_id=None, host=None),
        ]
        frame = pd.DataFrame(
            {
                "flow_run_id": pd.Series([r.flow_run_id for r in recs], dtype=object),
                "task_run_id": [r.task_run_id for r in recs],
                "task_name": [r.task_name for r in recs],
                "attempt": [r.attempt for r in recs],
                "start_time": pd.Series([r.start_time for r in recs], dtype="datetime64[ns, UTC]"),
                "end_time": pd.Series([r.end_time for r in recs], dtype="datetime64[ns, UTC]"),
                "outcome": [r.outcome.value for r in recs],
                "exception_type": pd.Series([r.exception_type for r in recs], dtype=object),
            }
        )
        assert store.record_attempts_frame(frame, chunk_rows=2) == 3
        with TelemetryStore(sqlite_url) as other:
            other.record_attempts(recs)
            expected = rows(other.attempts().drop(columns="id"))
        assert rows(store.attempts().drop(columns="id")) == expected
        assert [r["used_fallback"] for r in expected] == [False, True, False]
        assert [r["execution_id"] for r in expected] == ["", "", ""]  # an import knows no executions

    def test_an_attempts_frame_may_name_executions(self, store: TelemetryStore) -> None:
        """With an execution_id column, equal (task_run_id, attempt) of two executions are two rows; a blank is ''."""
        frame = pd.DataFrame(
            {
                "task_run_id": ["t1", "t1", "t1"],
                "task_name": ["load"] * 3,
                "attempt": [1, 1, 2],
                "start_time": pd.Series([at(0), at(1), at(2)], dtype="datetime64[ns, UTC]"),
                "end_time": pd.Series([at(0.5), at(1.5), at(2.5)], dtype="datetime64[ns, UTC]"),
                "outcome": ["failure", "failure", "success"],
                "execution_id": pd.Series(["a" * 16, None, None], dtype=object),
            }
        )
        assert store.record_attempts_frame(frame) == 3
        assert store.record_attempts_frame(frame) == 3  # a second import of the same file: upserted, no new row
        got = store.attempts()[["execution_id", "attempt", "outcome"]].values.tolist()
        assert got == [["a" * 16, 1, "failure"], ["", 1, "failure"], ["", 2, "success"]]

    def test_empty_frames_write_nothing(self, store: TelemetryStore) -> None:
        """No rows: no transaction, no progress call, a count of 0."""
        calls: list[tuple[int, int]] = []
        assert store.record_runs_frame(runs_frame().iloc[:0], progress=lambda d, t: calls.append((d, t))) == 0
        assert calls == [] and store.runs().empty


def prediction(flow_run_id: str = "r1", minutes: float = 0, **changes: Any) -> PredictionRecord:
    values: dict[str, Any] = {
        "flow_run_id": flow_run_id,
        "flow_name": "etl",
        "predicted_at": at(minutes),
        "risk": 0.2,
        "threshold": 0.5,
        "model_version": "2026-03-01T00:00:00Z",
        "scheduled_start": at(minutes + 60),
    }
    values.update(changes)
    return PredictionRecord(**values)


class TestPredictions:
    def test_round_trip(self, store: TelemetryStore) -> None:
        """Every field comes back; warned and lead_seconds are derived; reasons is a list."""
        store.record_prediction(
            prediction(risk=0.75, deployment="etl/prod", reasons=("2 of the last 5 runs failed", "input 3x usual"))
        )
        frame = store.predictions()
        assert list(frame.columns) == list(PREDICTION_COLUMNS)
        assert rows(frame.drop(columns="id")) == [
            {
                "flow_run_id": "r1",
                "flow_name": "etl",
                "deployment": "etl/prod",
                "scheduled_start": at(60),
                "predicted_at": at(0),
                "lead_seconds": 3600.0,
                "risk": 0.75,
                "threshold": 0.5,
                "warned": True,
                "model_version": "2026-03-01T00:00:00Z",
                "reasons": ["2 of the last 5 runs failed", "input 3x usual"],
                "source": "hook",
            }
        ]
        for name, dtype in [
            ("risk", "float64"),
            ("lead_seconds", "float64"),
            ("warned", "bool"),
            ("predicted_at", "datetime64[ns, UTC]"),
            ("id", "int64"),
        ]:
            assert str(frame[name].dtype) == dtype

    def test_a_run_may_be_scored_many_times(self, store: TelemetryStore) -> None:
        """Predictions are appended: each forecast of the same run is a new row with less lead time."""
        assert (
            store.record_predictions(
                [prediction(minutes=m, scheduled_start=at(60), source="forecast") for m in (0, 30, 59)]
            )
            == 3
        )
        assert store.record_predictions([]) == 0
        assert store.predictions(flow_run_id="r1")["lead_seconds"].tolist() == [3600.0, 1800.0, 60.0]

    def test_filters_and_limit(self, store: TelemetryStore) -> None:
        """flow_name, flow_run_id and source take one value or a list; [since, until) on predicted_at."""
        store.record_predictions(
            [
                prediction("a", 0, source="forecast"),
                prediction("b", 10, flow_name="report"),
                prediction("c", 20),
                prediction("d", 30, scheduled_start=None),
            ]
        )
        ids = lambda frame: frame["flow_run_id"].tolist()  # noqa: E731
        assert ids(store.predictions()) == ["a", "b", "c", "d"]
        assert ids(store.predictions(flow_name="report")) == ["b"]
        assert ids(store.predictions(source="hook")) == ["b", "c", "d"]
        assert ids(store.predictions(flow_run_id=["a", "d"])) == ["a", "d"]
        assert ids(store.predictions(since=at(10), until=at(30))) == ["b", "c"]
        assert ids(store.predictions(limit=2)) == ["c", "d"]
        assert pd.isna(store.predictions(flow_run_id="d").loc[0, "lead_seconds"])

    def test_bad_records_are_refused(self, store: TelemetryStore) -> None:
        """An unknown source, naive times and a bare string of reasons are caught before writing."""
        with pytest.raises(ValueError, match="source='batch' is invalid: expected one of hook, forecast"):
            store.record_prediction(prediction(source="batch"))
        with pytest.raises(ValueError, match=r"PredictionRecord.predicted_at=.* is a naive datetime"):
            store.record_prediction(prediction(predicted_at=datetime(2026, 3, 1)))
        with pytest.raises(TypeError, match="reasons must be a sequence of strings"):
            store.record_prediction(prediction(reasons="one reason"))
        assert store.predictions().empty

    def test_scores_of_one_run_use_its_index(self, sqlite_url: str) -> None:
        """On SQLite, the predictions of one run and of a time window search their indexes."""
        with TelemetryStore(sqlite_url) as store:
            store.record_predictions(prediction(f"r{i}", i) for i in range(50))
            for stmt, index in [
                (
                    queries.predictions_query(
                        flow_name=None, flow_run_id="r1", since=None, until=None, source=None, limit=None
                    ),
                    "ix_predictions_flow_run_id",
                ),
                (
                    queries.predictions_query(
                        flow_name=None, flow_run_id=None, since=T0, until=None, source=None, limit=None
                    ),
                    "ix_predictions_predicted_at",
                ),
            ]:
                assert index in TestQueryPlans.plan(store, stmt)


# --- the real upgrade from schema 1 to 2 ----------------------------------------------------------------

V1 = sa.MetaData(naming_convention=schema.metadata.naming_convention)
"""The version-1 tables exactly as forewarn 0.1 created them (a frozen copy: never import them from schema)."""

sa.Table(
    "forewarn_meta",
    V1,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(255), nullable=False),
    comment="forewarn's own bookkeeping; key schema_version holds the schema version as text",
)
sa.Table(
    "flow_runs",
    V1,
    sa.Column("flow_run_id", sa.String(255), primary_key=True),
    sa.Column("flow_name", sa.String(255), nullable=False),
    sa.Column("deployment", sa.String(255)),
    sa.Column("parameters", sa.Text, nullable=False, server_default="{}", comment="JSON object"),
    sa.Column("parameters_hash", sa.String(64)),
    sa.Column("flow_version", sa.String(255)),
    sa.Column("scheduled_start", sa.DateTime(timezone=True)),
    sa.Column("start_time", sa.DateTime(timezone=True)),
    sa.Column("end_time", sa.DateTime(timezone=True)),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("host", sa.String(255)),
    sa.Column("forewarn_version", sa.String(64)),
    sa.Column("source", sa.String(16), nullable=False, server_default="forewarn"),
    sa.Index(None, "flow_name", "end_time"),
    sa.Index(None, "state", "end_time"),
    sa.Index(None, "end_time"),
)
sa.Table(
    "task_attempts",
    V1,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("flow_run_id", sa.String(255)),
    sa.Column("task_run_id", sa.String(255), nullable=False),
    sa.Column("task_name", sa.String(255), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("start_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("end_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("duration_seconds", sa.Float, nullable=False),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("exception_type", sa.String(255)),
    sa.Column("exception_message", sa.String(10_000)),
    sa.Column("retryable", sa.Boolean(create_constraint=False)),
    sa.Column("used_fallback", sa.Boolean(create_constraint=False), nullable=False, server_default=sa.false()),
    sa.Column("host", sa.String(255)),
    sa.UniqueConstraint("task_run_id", "attempt"),
    sa.Index(None, "flow_run_id"),
    sa.Index(None, "outcome", "end_time"),
    sa.Index(None, "end_time"),
)


def make_v1_store(url: str) -> None:
    """A version-1 store holding one finished run and one attempt, written with plain SQL."""
    engine = sa.create_engine(url)
    stamp = T0.replace(tzinfo=None) if engine.dialect.name == "sqlite" else T0  # as UTCDateTime stored it
    with engine.begin() as conn:
        V1.create_all(conn)
        conn.execute(V1.tables["forewarn_meta"].insert().values(key="schema_version", value="1"))
        conn.execute(
            V1.tables["flow_runs"]
            .insert()
            .values(
                flow_run_id="old",
                flow_name="etl",
                parameters='{"day": 1}',
                parameters_hash="h",
                scheduled_start=stamp,
                start_time=stamp,
                end_time=stamp,
                state="FAILED",
                host="h1",
                forewarn_version="0.1.0",
                source="forewarn",
            )
        )
        conn.execute(
            V1.tables["task_attempts"]
            .insert()
            .values(
                flow_run_id="old",
                task_run_id="old-t",
                task_name="load",
                attempt=1,
                start_time=stamp,
                end_time=stamp,
                duration_seconds=0.0,
                outcome="failure",
                used_fallback=False,
            )
        )
    engine.dispose()


def assert_upgrade_matches_a_new_store(url: str, make_old_store: Callable[[str], None]) -> None:
    """The schema of a store made by ``make_old_store`` and opened (so upgraded) equals a freshly created one's."""
    TelemetryStore(url).close()
    fresh = describe_schema(url)
    engine = sa.create_engine(url)
    schema.metadata.drop_all(engine)
    engine.dispose()
    make_old_store(url)
    TelemetryStore(url).close()
    assert describe_schema(url) == fresh


def describe_schema(url: str) -> dict[str, Any]:
    """Every table's columns (name, type, nullability, default, comment), indexes, keys, as the database has them."""
    engine = sa.create_engine(url)
    inspector = sa.inspect(engine)
    out: dict[str, Any] = {}
    for table in sorted(inspector.get_table_names()):
        out[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], c.get("default"), c.get("comment"))
                for c in inspector.get_columns(table)
            ],
            "indexes": sorted((ix["name"], tuple(ix["column_names"])) for ix in inspector.get_indexes(table)),
            "unique": sorted(tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)),
            "pk": inspector.get_pk_constraint(table)["constrained_columns"],
        }
    engine.dispose()
    return out


class TestUpgradeToVersion2:
    """A store written by forewarn 0.1 (schema 1) is upgraded in place by the real MIGRATIONS step."""

    def test_v1_store_is_upgraded_and_keeps_its_rows(self, store_url: str) -> None:
        """Opening a v1 store: the current version, the old rows unchanged, features and predictions usable."""
        make_v1_store(store_url)
        with TelemetryStore(store_url) as store:
            assert store.schema_version == schema.SCHEMA_VERSION
            old = rows(store.runs())
            assert old == [
                {
                    "flow_run_id": "old",
                    "flow_name": "etl",
                    "deployment": None,
                    "parameters": {"day": 1},
                    "parameters_hash": "h",
                    "flow_version": None,
                    "scheduled_start": T0,
                    "start_time": T0,
                    "end_time": T0,
                    "state": "FAILED",
                    "host": "h1",
                    "forewarn_version": "0.1.0",
                    "source": "forewarn",
                    "features": {},
                    "tags": [],
                }
            ]
            assert store.attempts()[["task_run_id", "outcome", "flow_name"]].values.tolist() == [
                ["old-t", "failure", "etl"]
            ]
            store.record_flow_run_start(run("new", start=1, features={"rows": 7}))
            assert store.runs()["feature_rows"].tolist()[1] == 7
            store.record_prediction(prediction("new"))
            assert store.predictions()["flow_run_id"].tolist() == ["new"]

    def test_upgraded_store_matches_a_new_one(self, store_url: str) -> None:
        """Columns, types, defaults, comments, indexes and keys of a migrated store equal a fresh store's."""
        assert_upgrade_matches_a_new_store(store_url, make_v1_store)

    def test_failed_upgrade_from_v1_leaves_it_at_v1(self, store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
        """If the predictions table cannot be created, the features column is rolled back too."""
        make_v1_store(store_url)
        engine = sa.create_engine(store_url)
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE predictions (x INTEGER)")  # in the way of the step
        with pytest.raises(StoreError, match="from schema 1 to 2 failed"):
            TelemetryStore(store_url)
        assert "features" not in {c["name"] for c in sa.inspect(engine).get_columns("flow_runs")}
        with engine.connect() as conn:
            assert conn.execute(sa.text("select value from forewarn_meta")).scalar() == "1"
        engine.dispose()


class TestUpgradeToVersion3:
    """A version-2 store gets ``task_attempts.wait_seconds`` from the real MIGRATIONS step."""

    def test_v2_store_is_upgraded_and_records_waits(self, store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
        """Old attempts read back with no wait; a new attempt keeps the seconds it waited for a limit slot."""
        make_v1_store(store_url)
        with monkeypatch.context() as v2:
            v2.setattr(schema, "SCHEMA_VERSION", 2)
            v2.setattr(migrations, "MIGRATIONS", [step for step in migrations.MIGRATIONS if step[0] <= 2])
            TelemetryStore(store_url).close()
        engine = sa.create_engine(store_url)
        assert "wait_seconds" not in {c["name"] for c in sa.inspect(engine).get_columns("task_attempts")}
        engine.dispose()
        with TelemetryStore(store_url) as store:
            assert store.schema_version == CURRENT >= 3
            store.record_attempt(attempt("new-t", 1, wait_seconds=1.5))
            frame = store.attempts().sort_values("task_run_id")
            waits = [None if pd.isna(v) else v for v in frame["wait_seconds"].tolist()]
            assert dict(zip(frame["task_run_id"], waits, strict=True)) == {"new-t": 1.5, "old-t": None}


class TestWalSwitch:
    def test_locked_wal_switch_is_retried_with_backoff(self) -> None:
        """A 'database is locked' from PRAGMA journal_mode is retried (the busy handler does not cover it)."""
        from forewarn.store._engine import switch_to_wal

        class Cursor:
            calls = 0

            def execute(self, sql: str) -> None:
                Cursor.calls += 1
                if Cursor.calls <= 2:
                    raise sqlite3.OperationalError("database is locked")

        waits: list[float] = []
        switch_to_wal(Cursor(), sleep=waits.append)
        assert Cursor.calls == 3 and waits == [0.005, 0.01]

    def test_other_errors_are_not_retried(self) -> None:
        """Anything but a lock is raised at once."""
        from forewarn.store._engine import switch_to_wal

        class Cursor:
            def execute(self, sql: str) -> None:
                raise sqlite3.OperationalError("disk I/O error")

        with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
            switch_to_wal(Cursor(), sleep=lambda s: None)


class TestHistory:
    def test_history_gives_runs_and_attempts_or_none(self, sqlite_url: str) -> None:
        """history() returns every run, and the attempts only when there are any."""
        store = TelemetryStore(sqlite_url)
        store.record_flow_run_start(run())
        runs, attempts = store.history()
        assert list(runs["flow_run_id"]) == [run().flow_run_id] and attempts is None
        t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
        store.record_attempt(AttemptRecord(run().flow_run_id, "t", "step", 1, t0, t0, AttemptOutcome.SUCCESS))
        _, attempts = store.history()
        assert attempts is not None and list(attempts["task_run_id"]) == ["t"]


class TestConcurrentCreation:
    def test_a_store_committed_between_the_two_first_reads_is_not_called_foreign(
        self, store_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Another opener commits the new store (tables and version at once) right after this one read no
        version: its tables are then visible, and the store is opened, not refused as another application's."""
        TelemetryStore(store_url).close()  # the other opener's committed store
        real = migrations.read_version
        calls: list[int] = []

        def first_read_before_the_commit(conn: sa.Connection, *, url: str = "") -> int | None:
            calls.append(1)
            return None if len(calls) == 1 else real(conn, url=url)

        monkeypatch.setattr(migrations, "read_version", first_read_before_the_commit)
        engine = sa.create_engine(store_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            assert migrations.ensure_schema(conn, url="the store") == schema.SCHEMA_VERSION
        engine.dispose()
        assert len(calls) == 2
