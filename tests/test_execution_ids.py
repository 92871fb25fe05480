"""Execution ids: the attempts of two executions of one task run (Dask's re-run after a worker died) both stay.

Schema version 7 adds ``task_attempts.execution_id`` and makes ``(task_run_id, execution_id, attempt)`` the
attempts' key. Here: the real upgrade of a version-6 store holding rows, on SQLite and PostgreSQL; the ids
``forewarn.task`` draws; the readers that count a task run's tries. The store-level writes are in
``tests/test_store.py`` (``TestAttempts``), the spool's old records in ``tests/test_spool.py``, and the Dask
worker that dies mid-run in ``tests/test_scale_out.py``.
"""

from __future__ import annotations

import os
import random
import re
from datetime import timedelta
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from forewarn.errors import StoreError
from forewarn.learning.report import reliability_report
from forewarn.orchestration import tasks
from forewarn.records import AttemptOutcome, AttemptRecord
from forewarn.resilience.attempts import AttemptRunner
from forewarn.resilience.retry import RetryPolicy
from forewarn.store import TelemetryStore, migrations, schema
from test_store import T0, assert_upgrade_matches_a_new_store, make_v1_store

EXECUTIONS_VERSION = next(v for v, step in migrations.MIGRATIONS if step.__name__.endswith("_attempt_execution_id"))
"""The schema version whose step adds ``task_attempts.execution_id`` (found by name: holds if renumbered)."""

KEY = ("task_run_id", "execution_id", "attempt")


def make_store_before_executions(url: str) -> None:
    """A store one version before execution ids, made by the real steps, holding attempts of every kind.

    Besides forewarn 0.1's row (``old-t``, attempt 1, failure), a task run retried and fallen back to
    (``old-r``: attempts 1 to 3), and a replicated call with a wait and a provider (``old-c``).
    """
    make_v1_store(url)
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        steps = [(v, step) for v, step in migrations.MIGRATIONS if v < EXECUTIONS_VERSION]
        migrations.ensure_schema(conn, url=url, target=EXECUTIONS_VERSION - 1, migrations=steps)
        stamp = T0.replace(tzinfo=None) if engine.dialect.name == "sqlite" else T0
        insert = sa.text(
            "insert into task_attempts (flow_run_id, task_run_id, task_name, attempt, start_time, end_time, "
            "duration_seconds, outcome, used_fallback, wait_seconds, replica, provider) values (:f, :t, :n, :a, "
            ":s, :s, 0.0, :o, :fb, :w, :r, :p)"
        )
        row = {"f": "old", "n": "load", "s": stamp, "fb": False, "w": None, "r": None, "p": None}
        conn.execute(
            insert,
            [
                {**row, "t": "old-r", "a": 1, "o": "failure"},
                {**row, "t": "old-r", "a": 2, "o": "timeout"},
                {**row, "t": "old-r", "a": 3, "o": "fallback", "fb": True},
                {**row, "t": "old-c", "a": 1, "o": "success", "w": 0.5, "r": 2, "p": "backup"},
            ],
        )
    engine.dispose()


def stored(store: TelemetryStore) -> list[tuple[Any, ...]]:
    frame = store.attempts()
    cols = ["task_run_id", "execution_id", "attempt", "outcome", "used_fallback", "wait_seconds", "replica", "provider"]
    return sorted(tuple(None if pd.isna(v) else v for v in row) for row in frame[cols].itertuples(index=False))


def record(task_run_id: str, n: int, execution_id: str, outcome: AttemptOutcome, minutes: float) -> AttemptRecord:
    start = T0 + timedelta(minutes=minutes)
    return AttemptRecord("old", task_run_id, "load", n, start, start, outcome, execution_id=execution_id)


def unique_keys(url: str) -> list[tuple[str | None, tuple[str, ...]]]:
    engine = sa.create_engine(url)
    found = [(u["name"], tuple(u["column_names"])) for u in sa.inspect(engine).get_unique_constraints("task_attempts")]
    engine.dispose()
    return found


OLD_ROWS = [
    ("old-c", "", 1, "success", False, 0.5, 2, "backup"),
    ("old-r", "", 1, "failure", False, None, None, None),
    ("old-r", "", 2, "timeout", False, None, None, None),
    ("old-r", "", 3, "fallback", True, None, None, None),
    ("old-t", "", 1, "failure", False, None, None, None),
]


class TestUpgrade:
    def test_a_version_6_store_keeps_its_rows_as_executions_unknown(self, store_url: str) -> None:
        """Every old row is kept with execution_id ''; a new execution of an old task run adds its own rows,
        and an old row written again (a replay from an old spool) still updates in place."""
        make_store_before_executions(store_url)
        assert unique_keys(store_url) == [("uq_task_attempts_task_run_id_attempt", ("task_run_id", "attempt"))]
        with TelemetryStore(store_url) as store:
            assert store.schema_version == schema.SCHEMA_VERSION >= EXECUTIONS_VERSION
            assert stored(store) == OLD_ROWS
            ids = set(store.attempts()["id"])
            store.record_attempt(record("old-t", 1, "0123456789abcdef", AttemptOutcome.SUCCESS, 5))
            store.record_attempts([record("old-t", 1, "", AttemptOutcome.FAILURE, 0)])  # an old spool's replay
            after = stored(store)
            assert set(store.attempts()["id"]) > ids
        assert ("old-t", "0123456789abcdef", 1, "success", False, None, None, None) in after
        assert len(after) == len(OLD_ROWS) + 1
        assert unique_keys(store_url) == [("uq_task_attempts_task_run_id_execution_id_attempt", KEY)]

    def test_upgraded_store_matches_a_new_one(self, store_url: str) -> None:
        """Columns (execution_id last, not null, default ''), indexes and keys equal a new store's."""
        assert_upgrade_matches_a_new_store(store_url, make_store_before_executions)
        assert unique_keys(store_url) == [("uq_task_attempts_task_run_id_execution_id_attempt", KEY)]

    def test_the_old_key_is_found_by_its_columns_whatever_it_is_called(self, store_url: str) -> None:
        """A store whose old unique key has another name (PostgreSQL's own ``..._key``; an unnamed one on
        SQLite) is upgraded too: the key is found by its columns, and no second unique key is left behind."""
        make_store_before_executions(store_url)
        engine = sa.create_engine(store_url)
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.exec_driver_sql(
                    "alter table task_attempts rename constraint uq_task_attempts_task_run_id_attempt "
                    "to task_attempts_task_run_id_attempt_key"
                )
            else:  # SQLite names no constraint it is not told to: rebuild the table with an unnamed one
                ddl = conn.exec_driver_sql("select sql from sqlite_master where name = 'task_attempts'").scalar()
                indexes = (
                    conn.exec_driver_sql(
                        "select sql from sqlite_master where tbl_name = 'task_attempts' and type = 'index' "
                        "and sql is not null"
                    )
                    .scalars()
                    .all()
                )
                unnamed = re.sub(r"CONSTRAINT uq_task_attempts_task_run_id_attempt ", "", ddl)
                assert unnamed != ddl
                conn.exec_driver_sql("alter table task_attempts rename to old_attempts")
                conn.exec_driver_sql(unnamed)
                conn.exec_driver_sql("insert into task_attempts select * from old_attempts")
                conn.exec_driver_sql("drop table old_attempts")
                for sql in indexes:
                    conn.exec_driver_sql(sql)
        engine.dispose()
        assert [columns for _, columns in unique_keys(store_url)] == [("task_run_id", "attempt")]
        with TelemetryStore(store_url) as store:
            assert stored(store) == OLD_ROWS
            store.record_attempt(record("old-t", 1, "e", AttemptOutcome.SUCCESS, 5))
            assert len(store.attempts()) == len(OLD_ROWS) + 1
        assert unique_keys(store_url) == [("uq_task_attempts_task_run_id_execution_id_attempt", KEY)]

    def test_a_failed_upgrade_leaves_the_store_at_version_6(
        self, store_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The step runs in the upgrade's one transaction: if anything after it fails, the column, the key
        and (on SQLite) the rebuilt table are all rolled back, and the rows are untouched."""
        make_store_before_executions(store_url)
        real = dict(migrations.MIGRATIONS)[EXECUTIONS_VERSION]

        def step_then_fail(op: Any) -> None:
            real(op)
            raise RuntimeError("disk full")

        broken = [(v, step_then_fail if v == EXECUTIONS_VERSION else step) for v, step in migrations.MIGRATIONS]
        monkeypatch.setattr(migrations, "MIGRATIONS", broken)
        with pytest.raises(StoreError, match=f"from schema {EXECUTIONS_VERSION - 1} to {EXECUTIONS_VERSION} failed"):
            TelemetryStore(store_url)
        engine = sa.create_engine(store_url)
        assert "execution_id" not in {c["name"] for c in sa.inspect(engine).get_columns("task_attempts")}
        with engine.connect() as conn:
            assert conn.execute(sa.text("select value from forewarn_meta")).scalar() == str(EXECUTIONS_VERSION - 1)
            assert conn.execute(sa.text("select count(*) from task_attempts")).scalar() == len(OLD_ROWS)
        engine.dispose()
        assert unique_keys(store_url) == [("uq_task_attempts_task_run_id_attempt", ("task_run_id", "attempt"))]
        monkeypatch.undo()
        with TelemetryStore(store_url) as store:  # and the real step then upgrades it
            assert stored(store) == OLD_ROWS


class TestExecutionIds:
    def test_ids_are_16_hex_digits_and_never_repeat(self) -> None:
        ids = [tasks._execution_id() for _ in range(10_000)]
        assert all(re.fullmatch(r"[0-9a-f]{16}", i) for i in ids)
        assert len(set(ids)) == len(ids)

    def test_a_user_seeding_random_neither_repeats_them_nor_sees_them_drawn(self) -> None:
        """The ids come from a private generator: random.seed() in a task cannot make two executions share
        one, and drawing an id does not move the user's seeded sequence."""
        random.seed(7)
        first = (tasks._execution_id(), random.random())
        random.seed(7)
        second = (tasks._execution_id(), random.random())
        assert first[0] != second[0]
        assert first[1] == second[1]

    @pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
    def test_a_forked_child_draws_other_ids_than_its_parent(self) -> None:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os.write(write, tasks._execution_id().encode())
            os._exit(0)
        os.close(write)
        os.waitpid(pid, 0)
        child = os.read(read, 64).decode()
        os.close(read)
        assert re.fullmatch(r"[0-9a-f]{16}", child)
        assert child != tasks._execution_id()

    def test_every_row_of_a_call_carries_its_execution_id(self) -> None:
        """The runner writes the id it is given into each attempt and the fallback; without one, ''."""
        rows: list[AttemptRecord] = []
        runner = AttemptRunner(
            "charge",
            RetryPolicy(attempts=2, wait_initial=0, wait_max=0, wait_jitter=0),
            fallback=lambda exc: "queued",
            sink=rows.append,
            sleep=lambda s: None,
        )

        def down() -> None:
            raise ConnectionError("down")

        assert runner.run(down, (), {}, task_run_id="t1", flow_run_id="f1", execution_id="e1") == "queued"
        assert runner.run(down, (), {}, task_run_id="t1", flow_run_id="f1") == "queued"
        got = [(r.execution_id, r.attempt, r.outcome.value) for r in rows]
        assert got == [
            ("e1", 1, "failure"),
            ("e1", 2, "failure"),
            ("e1", 3, "fallback"),
            ("", 1, "failure"),
            ("", 2, "failure"),
            ("", 3, "fallback"),
        ]


class TestTriesAreRows:
    def test_the_report_counts_a_re_runs_first_attempt_as_a_retry(self) -> None:
        """Failed, killed, re-run and succeeded: two rows of one task run, so one try after the first."""
        runs = pd.DataFrame({"flow_run_id": ["r1"], "flow_name": ["orders"], "state": ["COMPLETED"]})
        start = pd.Timestamp(T0)
        attempts = pd.DataFrame(
            {
                "flow_run_id": ["r1", "r1", "r1", "r1"],
                "task_run_id": ["t1", "t1", "t2", "t2"],
                "execution_id": ["b", "a", "c", "c"],
                "attempt": [1, 1, 1, 2],
                "start_time": [start + pd.Timedelta(minutes=1), start, start, start + pd.Timedelta(seconds=1)],
                "outcome": ["success", "failure", "failure", "fallback"],
            }
        )
        row = reliability_report(runs, attempts).loc["ALL"]
        assert (int(row["attempts"]), int(row["retries"]), int(row["task_runs"])) == (3, 1, 2)

    def test_the_store_totals_count_a_re_runs_first_attempt_as_a_retry(self, store_url: str) -> None:
        """The metrics' retries (attempts after the first of their task run) agree with the report on the store."""
        with TelemetryStore(store_url) as store:
            store.record_attempts(
                [
                    record("t1", 1, "a", AttemptOutcome.FAILURE, 0),  # the execution whose worker died
                    record("t1", 1, "b", AttemptOutcome.FAILURE, 2),  # the re-run: a retry, though attempt 1
                    record("t1", 2, "b", AttemptOutcome.SUCCESS, 3),
                    record("t2", 1, "c", AttemptOutcome.FAILURE, 0),
                    record("t2", 2, "c", AttemptOutcome.FALLBACK, 1),  # not a retry
                    record("t3", 1, "", AttemptOutcome.SUCCESS, 0),  # imported
                ]
            )
            totals = {(outcome, n, retries) for _, _, outcome, n, retries in store.totals(since=T0).attempts}
        assert totals == {("failure", 3, 1), ("success", 2, 1), ("fallback", 1, 0)}
