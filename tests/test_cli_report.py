"""The report: exact figures from hand-made telemetry, the CLI over it, and the demo end to end."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from forewarn.cli import app
from forewarn.learning.report import reliability_report
from forewarn.records import AttemptOutcome, AttemptRecord, FlowRunRecord, RunState
from forewarn.store import TelemetryStore

T0 = datetime(2026, 5, 1, tzinfo=timezone.utc)
runner = CliRunner()


def fill(store: TelemetryStore) -> None:
    """Two flows: orders (3 runs: clean, recovered, failed) and billing (1 run with a fallback)."""
    spec = {
        "o1": ("orders", RunState.COMPLETED, [("t1", ["success"])]),
        "o2": ("orders", RunState.COMPLETED, [("t2", ["failure", "timeout", "success"]), ("t3", ["success"])]),
        "o3": ("orders", RunState.FAILED, [("t4", ["failure"])]),
        "b1": ("billing", RunState.COMPLETED, [("t5", ["failure", "fallback"])]),
    }
    for i, (run_id, (flow, state, tasks)) in enumerate(spec.items()):
        start = T0 + timedelta(minutes=i)
        store.record_flow_run_start(FlowRunRecord(run_id, flow, start_time=start))
        for task_run_id, outcomes in tasks:
            for n, outcome in enumerate(outcomes, start=1):
                store.record_attempt(
                    AttemptRecord(
                        run_id,
                        task_run_id,
                        "step",
                        n,
                        start,
                        start,
                        AttemptOutcome(outcome),
                        used_fallback=outcome == "fallback",
                    )
                )
        store.record_flow_run_end(run_id, state, start + timedelta(seconds=30))


class TestReliabilityReport:
    def test_exact_figures(self, sqlite_url: str) -> None:
        """Runs, success rate, ER, retries and fallback rate follow their definitions exactly."""
        store = TelemetryStore(sqlite_url)
        fill(store)
        report = reliability_report(store.runs(), store.attempts())
        overall = report.loc["ALL"]
        assert overall["runs"] == 4 and overall["completed"] == 3
        assert overall["success_rate"] == pytest.approx(3 / 4)
        assert overall["runs_with_fault"] == 3  # o2, o3, b1
        assert overall["escaped"] == 2 and overall["ER"] == pytest.approx(2 / 3)
        assert overall["retries"] == 2 and overall["retries_per_run"] == pytest.approx(2 / 4)
        assert overall["task_runs"] == 5 and overall["fallbacks"] == 1
        assert overall["fallback_rate"] == pytest.approx(1 / 5)
        orders = report.loc["orders"]
        assert (orders["runs"], orders["runs_with_fault"], orders["ER"]) == (3, 2, 0.5)
        assert report.loc["billing", "ER"] == 1.0
        assert list(report.index) == ["ALL", "billing", "orders"]

    def test_er_is_undefined_without_faults(self) -> None:
        """With no faulted run ER is NaN, not 0 or 1."""
        runs = pd.DataFrame({"flow_run_id": ["r"], "flow_name": ["f"], "state": ["COMPLETED"]})
        attempts = pd.DataFrame({"flow_run_id": ["r"], "task_run_id": ["t"], "attempt": [1], "outcome": ["success"]})
        assert pd.isna(reliability_report(runs, attempts).loc["ALL", "ER"])

    def test_running_runs_count_as_runs_not_as_ended(self) -> None:
        """A run still RUNNING (or killed) is in runs but in neither success rate nor ER."""
        runs = pd.DataFrame({"flow_run_id": ["a", "b"], "flow_name": ["f", "f"], "state": ["RUNNING", "FAILED"]})
        attempts = pd.DataFrame(
            {"flow_run_id": ["a", "b"], "task_run_id": ["t", "u"], "attempt": [1, 1], "outcome": ["failure", "failure"]}
        )
        row = reliability_report(runs, attempts).loc["ALL"]
        assert (row["runs"], row["ended"], row["runs_with_fault"], row["ER"]) == (2, 1, 1, 0.0)


class TestCli:
    def test_report_command(self, sqlite_url: str) -> None:
        """forewarn report prints the per-flow table and the masked store URL."""
        fill(TelemetryStore(sqlite_url))
        result = runner.invoke(app, ["report", "--db", sqlite_url])
        assert result.exit_code == 0, result.output
        assert "orders" in result.output and "billing" in result.output
        assert "66.7%" in result.output  # overall ER

    @pytest.mark.parametrize("columns", [60, 80, 200])
    def test_report_shows_the_flow_names_at_any_width(
        self, sqlite_url: str, terminal_columns: Callable[[int], None], columns: int
    ) -> None:
        """On a 60-column terminal as on a 200-column one the flow names are in the table and no line is cut."""
        fill(TelemetryStore(sqlite_url))
        terminal_columns(columns)
        result = runner.invoke(app, ["report", "--db", sqlite_url])
        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        assert any("│ orders " in line for line in lines) and any("│ billing " in line for line in lines)
        assert max(map(len, lines)) <= columns

    def test_long_flow_names_fold_rather_than_vanish(
        self, terminal_columns: Callable[[int], None], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A name too long for a narrow terminal is folded over lines in its own column; the figures stay whole."""
        from forewarn.cli import print_report

        name = "nightly-warehouse-reconciliation"
        runs = pd.DataFrame({"flow_run_id": ["r"], "flow_name": [name], "state": ["COMPLETED"]})
        attempts = pd.DataFrame({"flow_run_id": ["r"], "task_run_id": ["t"], "attempt": [1], "outcome": ["success"]})
        terminal_columns(60)
        print_report(reliability_report(runs, attempts))
        rows = [line.split("│") for line in capsys.readouterr().out.splitlines() if line.startswith("│")]
        assert name in "".join(row[1].strip() for row in rows)
        first_line = rows[1][1].strip()  # rows[0] is ALL
        assert name.startswith(first_line) and len(first_line) >= 8  # a readable piece of the name, not a sliver
        assert "100.0%" in "".join("".join(row) for row in rows)  # success rate of the one run, unbroken

    def test_report_bad_time_is_a_clear_error(self, sqlite_url: str) -> None:
        """A malformed --since names the option and the expected form."""
        result = runner.invoke(app, ["report", "--db", sqlite_url, "--since", "yesterday"])
        assert result.exit_code != 0
        assert "ISO-8601" in result.output

    def test_unreachable_store_is_a_clean_exit(self) -> None:
        """An unreachable database ends with exit code 2 and no password in the output."""
        result = runner.invoke(app, ["report", "--db", "postgresql+psycopg://u:s3cret@127.0.0.1:1/x"])
        assert result.exit_code == 2
        assert "s3cret" not in result.output

    def test_info_masks_the_password(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """forewarn info shows the settings with the password masked."""
        from forewarn.settings import get_settings

        monkeypatch.setenv("FOREWARN_DB_URL", "postgresql+psycopg://u:s3cret@db:5432/x")
        get_settings.cache_clear()
        result = runner.invoke(app, ["info"])
        assert result.exit_code == 0
        assert "FOREWARN_DB_URL" in result.output and "s3cret" not in result.output


class TestReadersNeverCreate:
    """Commands that only read refuse a missing store instead of creating an empty one."""

    @pytest.mark.parametrize("command", [["report"], ["backtest"], ["train"], ["monitor"], ["serve-metrics"]])
    def test_a_mistyped_path_is_no_store(
        self, tmp_path: Path, normalize: Callable[[str], str], command: list[str]
    ) -> None:
        """Every reader on a missing SQLite file: exit 2, 'no forewarn store at PATH', no file created."""
        path = tmp_path / "typo" / "telemtry.db"
        result = runner.invoke(app, [*command, "--db", f"sqlite:///{path}"])
        assert result.exit_code == 2, result.output
        assert f"no forewarn store at {path}: the file does not exist" in normalize(result.output)
        assert "No runs" not in result.output
        assert not (tmp_path / "typo").exists()

    def test_report_on_another_apps_database_names_its_tables(
        self, tmp_path: Path, normalize: Callable[[str], str]
    ) -> None:
        """A foreign database is refused with its table names printed literally, never read as markup."""
        import sqlite3

        path = tmp_path / "shop.db"
        with sqlite3.connect(path) as conn:
            conn.execute('create table "[red]orders" (id int)')
        result = runner.invoke(app, ["report", "--db", f"sqlite:///{path}"])
        assert result.exit_code == 2, result.output
        assert "is not a forewarn store" in normalize(result.output)
        assert "'[red]orders'" in result.output

    def test_the_training_flow_reads_without_creating(self, tmp_path: Path) -> None:
        """flows/training.py's load_history is a reader too: a missing store is an error, not an empty history."""
        from flows.training import load_history

        from forewarn.errors import StoreError

        with pytest.raises(StoreError, match="no forewarn store at"):
            load_history.fn(f"sqlite:///{tmp_path / 'missing.db'}")
        assert not (tmp_path / "missing.db").exists()

    def test_info_opens_no_store(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """forewarn info shows where the store is without creating it."""
        from forewarn.settings import get_settings

        monkeypatch.setenv("FOREWARN_DB_URL", f"sqlite:///{tmp_path / 'data' / 'telemetry.db'}")
        get_settings.cache_clear()
        result = runner.invoke(app, ["info"])
        assert result.exit_code == 0, result.output
        assert not (tmp_path / "data").exists()

    def test_import_still_creates_the_store(self, tmp_path: Path) -> None:
        """A writer (import-runs) creates a new store at a new path, as before."""
        csv = tmp_path / "runs.csv"
        csv.write_text("run_id,flow_name,scheduled_start,state\nr1,etl,2026-01-01T00:00:00Z,COMPLETED\n")
        path = tmp_path / "new" / "store.db"
        result = runner.invoke(app, ["import-runs", str(csv), "--db", f"sqlite:///{path}"])
        assert result.exit_code == 0, result.output
        with TelemetryStore(f"sqlite:///{path}", create=False) as store:
            assert store.runs()["flow_run_id"].tolist() == ["r1"]


@pytest.mark.usefixtures("prefect_harness")
class TestDemo:
    @pytest.fixture(autouse=True)
    def _prefect_log_level(self) -> Iterator[None]:
        """The demo quiets Prefect's loggers for its own output; later tests get their level back."""
        prefect_logger = logging.getLogger("prefect")
        level = prefect_logger.level
        yield
        prefect_logger.setLevel(level)  # setLevel, not an attribute: it also clears the loggers' level cache

    def test_demo_runs_orders_and_reports(self, capsys: pytest.CaptureFixture[str]) -> None:
        """The demo runs orders, imports history, trains, and scores new orders before they start."""
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "flows"))
        try:
            import demo
        finally:
            sys.path.pop(0)
        assert demo.main(["--runs", "5", "--seed", "3"]) == 0
        out = capsys.readouterr().out
        assert "this demo's order runs" in out and "process-order" in out
        assert "forewarn report" in out and "risk" in out  # next steps, and the orders scored before they start
        store = TelemetryStore()
        orders = store.runs(flow_name="process-order").sort_values("start_time")
        assert len(store.runs()) > 20_000 - 100  # the simulated history it learned from
        predictions = store.predictions(source="hook").sort_values("predicted_at")
        # 5 orders, then orders through a payment outage, each scored before it starts, until one is warned
        assert 1 <= len(predictions) <= 12 and len(orders) == 5 + len(predictions)
        assert set(predictions["flow_run_id"]) == set(orders["flow_run_id"].iloc[5:])
        assert (orders["state"].iloc[5:] == "FAILED").all()
        assert ((predictions["risk"] >= 0) & (predictions["risk"] <= 1)).all()
        warned = predictions["warned"].to_numpy()
        if warned.any():  # the first warning ends the outage scene, and its reasons are shown
            assert warned.sum() == 1 and warned[-1]
            assert "AT RISK" in out and "because" in out and "forewarn.run.at-risk" in out
        else:
            assert len(predictions) == 12 and "no warning after 12 failed orders" in out
