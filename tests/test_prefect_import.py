"""import_prefect_history and `forewarn import-prefect`, against a real Prefect API with real flow runs."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import prefect
import pytest
from prefect.client.orchestration import get_client
from typer.testing import CliRunner

import forewarn
from forewarn.cli import app
from forewarn.errors import ConfigurationError
from forewarn.orchestration.prefect_history import (
    import_prefect_history,
    task_run_attempts,
    watermark_identity,
    watermark_key,
)
from forewarn.records import RunState
from forewarn.redaction import Redactor
from forewarn.settings import get_settings
from forewarn.store import TelemetryStore
from forewarn.timeutil import utc_now

pytestmark = pytest.mark.usefixtures("prefect_harness")

ZERO = timedelta(0)


@prefect.task
def extract(rows: int) -> int:
    return rows


@prefect.task
def load(rows: int) -> int:
    if rows < 0:
        raise KeyError("no such table")
    return rows


_calls: dict[str, int] = {}


@prefect.task(retries=2, retry_delay_seconds=0)
def flaky_upload(key: str) -> str:
    """Fails on its first call for ``key``, then works."""
    _calls[key] = _calls.get(key, 0) + 1
    if _calls[key] == 1:
        raise ConnectionError("reset by peer")
    return key


@prefect.flow(name="imp-etl", version="v7")
def etl(rows: int, password: str = "hunter2") -> int:
    return load(extract(rows))


@prefect.flow(name="imp-upload")
def upload(key: str) -> str:
    return flaky_upload(key)


@prefect.flow(name="forewarn-forecast")
def operational() -> None:
    """Stands for forewarn's own forecast flow, which is not history to learn from."""


@forewarn.flow(name="imp-live")
def live() -> str:
    return "recorded by forewarn itself"


def run_ids(*states: Any) -> list[str]:
    return [str(state.state_details.flow_run_id) for state in states]


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Real flow runs on the test API: two ETL runs (one failed), one retried task, one operational, one that
    forewarn.flow recorded live into the seed store ``seed.db`` (each test starts from a copy of it)."""
    from forewarn.orchestration.recorder import default_recorder

    folder = tmp_path_factory.mktemp("prefect-import")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FOREWARN_DB_URL", f"sqlite:///{folder / 'seed.db'}")
        patch.setenv("FOREWARN_SPOOL_DIR", str(folder / "spool"))
        get_settings.cache_clear()
        before = utc_now()
        ok = etl(rows=5, return_state=True)
        failed = etl(rows=-1, return_state=True)
        retried = upload(key="k1", return_state=True)
        op = operational(return_state=True)
        recorded = live(return_state=True)
        recorder = default_recorder()
        assert recorder is not None
        recorder.flush()
    get_settings.cache_clear()
    yield {
        "seed": folder / "seed.db",
        "since": before,
        "until": utc_now(),
        "ok": run_ids(ok)[0],
        "failed": run_ids(failed)[0],
        "retried": run_ids(retried)[0],
        "operational": run_ids(op)[0],
        "live": run_ids(recorded)[0],
    }


@pytest.fixture
def store(history: dict[str, Any], tmp_path: Path) -> TelemetryStore:
    """This test's store: a copy of the seed store, which holds only the run forewarn.flow recorded."""
    # SQLite's backup API: the seed store may still hold pages in its write-ahead log, which a file copy misses
    with closing(sqlite3.connect(history["seed"])) as seed, closing(sqlite3.connect(tmp_path / "telemetry.db")) as copy:
        seed.backup(copy)
    return TelemetryStore(get_settings().db_url)


def imported_runs(store: TelemetryStore) -> dict[str, tuple[str, str]]:
    runs = store.runs()
    return {r.flow_run_id: (r.flow_name, r.state) for r in runs.itertuples() if r.source == "prefect"}


class TestImport:
    """Final flow runs and their task runs come into the store once, with what Prefect keeps."""

    def test_runs_with_states_names_versions_and_redacted_parameters(
        self, store: TelemetryStore, history: dict[str, Any]
    ) -> None:
        """Every ended run in the window, as Prefect saw it; secrets masked; forewarn's own flows skipped."""
        result = import_prefect_history(store, since=history["since"], now=history["until"])
        assert imported_runs(store) == {
            history["ok"]: ("imp-etl", "COMPLETED"),
            history["failed"]: ("imp-etl", "FAILED"),
            history["retried"]: ("imp-upload", "COMPLETED"),
        }
        assert (result.runs_read, result.runs_imported, result.runs_skipped) == (5, 3, 1)
        assert result.runs_known == 1  # the forewarn.flow run, recorded live
        ok = store.runs().set_index("flow_run_id").loc[history["ok"]]
        assert ok.parameters == {"rows": 5, "password": "***"}
        assert ok.flow_version == "v7"
        assert ok.start_time <= ok.end_time
        assert ok.scheduled_start <= ok.start_time

    def test_forewarn_records_are_not_overwritten(self, store: TelemetryStore, history: dict[str, Any]) -> None:
        """A run forewarn.flow recorded keeps its row (source forewarn, its forewarn version)."""
        import_prefect_history(store, since=history["since"], now=history["until"])
        live_row = store.runs(flow_name="imp-live").iloc[0]
        assert (live_row.flow_run_id, live_row.source) == (history["live"], "forewarn")

    def test_task_runs_as_attempts(self, store: TelemetryStore, history: dict[str, Any]) -> None:
        """One attempt per task run that ran once; a retried task run rebuilt from its state history."""
        import_prefect_history(store, since=history["since"], now=history["until"])
        rows = sorted(
            (r.flow_run_id, r.task_name, r.attempt, r.outcome, r.exception_type)
            for r in store.attempts(flow_run_id=[history["ok"], history["failed"], history["retried"]]).itertuples()
        )
        assert rows == sorted(
            [
                (history["ok"], "extract", 1, "success", None),
                (history["ok"], "load", 1, "success", None),
                (history["failed"], "extract", 1, "success", None),
                (history["failed"], "load", 1, "failure", "KeyError"),
                (history["retried"], "flaky_upload", 1, "failure", None),
                (history["retried"], "flaky_upload", 2, "success", None),
            ]
        )
        retried = store.attempts(flow_run_id=history["retried"])
        first, second = retried.itertuples()
        assert first.end_time <= second.start_time

    def test_the_operational_flows_on_request(self, store: TelemetryStore, history: dict[str, Any]) -> None:
        """include_operational=True imports forewarn's own flows too."""
        import_prefect_history(store, since=history["since"], now=history["until"], include_operational=True)
        assert history["operational"] in imported_runs(store)


class TestIncremental:
    """A second import writes nothing twice and reads only what ended since the watermark."""

    def test_reimport_writes_nothing(self, store: TelemetryStore, history: dict[str, Any]) -> None:
        """The same window again: every run is known, no row is written, the rows are unchanged."""
        import_prefect_history(store, since=history["since"], now=history["until"])
        runs, attempts = store.runs(), store.attempts()
        again = import_prefect_history(store, since=history["since"], now=history["until"])
        assert (again.runs_imported, again.attempts_imported, again.runs_known) == (0, 0, 4)
        assert store.runs().equals(runs) and store.attempts().equals(attempts)

    def test_a_new_run_imports_just_that_one(self, store: TelemetryStore, history: dict[str, Any]) -> None:
        """After the watermark, only the run that ended since is read and imported."""
        first = import_prefect_history(store, since=history["since"], now=history["until"], overlap=ZERO)
        assert store.meta_value(watermark_key(first.api_url)) == history["until"].isoformat()
        new = run_ids(etl(rows=9, return_state=True))[0]
        second = import_prefect_history(store, overlap=ZERO)
        assert (second.since, second.runs_read, second.runs_imported) == (history["until"], 1, 1)
        assert second.attempts_imported == 2
        assert imported_runs(store)[new] == ("imp-etl", "COMPLETED")

    def test_overlap_reads_again_but_writes_nothing_twice(self, store: TelemetryStore, history: dict[str, Any]) -> None:
        """With an overlap reaching back over the first import, the runs read again are skipped by id."""
        import_prefect_history(store, since=history["since"], now=history["until"])
        # the same upper bound: flow runs other tests leave on the session's shared Prefect API after the
        # fixture's end cannot come in, so anything imported now would be a run imported twice
        second = import_prefect_history(store, now=history["until"], overlap=history["until"] - history["since"])
        assert second.runs_imported == 0 and second.runs_known >= 4

    def test_ephemeral_mode_keeps_one_watermark_across_ports(self) -> None:
        """Without PREFECT_API_URL each import's temporary server has a new port: the watermark follows the
        Prefect database instead, so the next import is incremental; with it, the API URL as before."""
        from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL, PREFECT_API_URL, temporary_settings

        database = "postgresql+asyncpg://prefect:hunter2-secret@db:5432/prefect"
        with temporary_settings(
            updates={PREFECT_API_DATABASE_CONNECTION_URL: database}, restore_defaults={PREFECT_API_URL}
        ):
            first = watermark_identity("http://127.0.0.1:8901/api")
            second = watermark_identity("http://127.0.0.1:8642/api")
        assert first == second and first.startswith("ephemeral:postgresql+asyncpg://prefect:***@db")
        assert "hunter2" not in first
        with temporary_settings(updates={PREFECT_API_URL: "http://prefect:4200/api"}):
            assert watermark_identity("http://prefect:4200/api") == "http://prefect:4200/api"

    def test_a_damaged_watermark_is_named(self, store: TelemetryStore, history: dict[str, Any]) -> None:
        with get_client(sync_client=True) as client:
            key = watermark_key(str(client.api_url))
        store.record_history([], source="prefect", meta={key: "yesterday"})
        with pytest.raises(ConfigurationError, match="yesterday"):
            import_prefect_history(store)


class TestAttemptsFromStates:
    """task_run_attempts() turns what Prefect keeps of a task run into attempt rows."""

    @staticmethod
    def task_run(state: Any, run_count: int = 1) -> SimpleNamespace:
        """A finished task run as the Prefect API returns it, with only the fields the importer reads."""
        t0 = datetime(2026, 1, 1, tzinfo=timezone.utc) if run_count else None
        return SimpleNamespace(
            id="t",
            flow_run_id="f",
            name="x",
            dynamic_key="0",
            run_count=run_count,
            start_time=t0,
            end_time=t0,
            state=state,
        )

    def test_unrun_and_cancelled_task_runs_have_no_attempt(self) -> None:
        from prefect.states import Cancelled, Completed

        assert task_run_attempts(self.task_run(Completed(name="Cached"), run_count=0), [], Redactor()) == []
        assert task_run_attempts(self.task_run(Cancelled()), [], Redactor()) == []

    def test_exception_messages_are_redacted(self) -> None:
        from prefect.states import Failed

        failed = Failed(message="Task run encountered an exception ValueError: password=hunter2 refused")
        (attempt,) = task_run_attempts(self.task_run(failed), [], Redactor())
        assert attempt.exception_type == "ValueError"
        assert "hunter2" not in (attempt.exception_message or "")


class TestCommand:
    def test_import_prefect_prints_what_it_did(
        self, store: TelemetryStore, history: dict[str, Any], normalize: Any
    ) -> None:
        """`forewarn import-prefect --since` imports and says how many runs and attempts."""
        result = CliRunner().invoke(app, ["import-prefect", "--since", history["since"].isoformat()])
        assert result.exit_code == 0, result.output
        text = normalize(result.output)
        assert "imported" in text and "skipped 1 run(s) of forewarn's own flows" in text
        assert len(TelemetryStore(get_settings().db_url).runs(flow_name="imp-etl")) >= 2

    def test_bad_since_is_refused(self, tmp_path: Path) -> None:
        result = CliRunner().invoke(app, ["import-prefect", "--since", "last week"])
        assert result.exit_code == 2
        assert "last week" in result.output


def test_run_state_mapping_covers_prefect_timeouts() -> None:
    from prefect.states import Failed

    from forewarn.orchestration.flows import final_run_state

    assert final_run_state(Failed(name="TimedOut")) is RunState.TIMEDOUT
