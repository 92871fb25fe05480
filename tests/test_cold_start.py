"""Cold start: until the history is enough to train, training and forecast say so and complete."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from forewarn.cli import NOT_ENOUGH_HISTORY, app
from forewarn.learning.readiness import HistoryReadiness
from forewarn.records import FlowRunRecord, RunState
from forewarn.settings import get_settings
from forewarn.store import TelemetryStore

runner = CliRunner()
T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


def fill(store: TelemetryStore, completed: int, failed: int, cancelled: int = 0) -> None:
    """Ended runs of one flow, an hour apart."""
    states = [RunState.COMPLETED] * completed + [RunState.FAILED] * failed + [RunState.CANCELLED] * cancelled
    store.record_flow_runs(
        FlowRunRecord(
            f"r{i}",
            "etl",
            T0 + timedelta(hours=i),
            state,
            scheduled_start=T0 + timedelta(hours=i),
            end_time=T0 + timedelta(hours=i, minutes=5),
        )
        for i, state in enumerate(states)
    )


class TestReadiness:
    """HistoryReadiness counts labelled runs and failures as training does."""

    @pytest.mark.parametrize(
        ("completed", "failed", "ready"),
        [(180, 20, True), (179, 20, False), (190, 19, False), (0, 200, False), (1000, 20, True)],
    )
    def test_the_200_20_rule(self, completed: int, failed: int, ready: bool) -> None:
        assert HistoryReadiness(completed + failed, failed).ready is ready

    def test_cancelled_and_unfinished_runs_are_not_labelled(self) -> None:
        runs = pd.DataFrame({"flow_run_id": list("abcd"), "state": ["COMPLETED", "CRASHED", "CANCELLED", "RUNNING"]})
        assert HistoryReadiness.from_runs(runs) == HistoryReadiness(2, 1)

    def test_the_store_counts_the_same(self, sqlite_url: str) -> None:
        store = TelemetryStore(sqlite_url)
        fill(store, 30, 4, cancelled=2)
        from_store = HistoryReadiness.from_state_counts(store.state_counts())
        assert from_store == HistoryReadiness.from_runs(store.runs()) == HistoryReadiness(34, 4)


class TestCommandLine:
    def test_train_exits_3_with_where_the_history_stands(self, sqlite_url: str, normalize: Any) -> None:
        """`forewarn train` on too little history: exit 3, the counts, nothing saved."""
        fill(TelemetryStore(sqlite_url), 40, 3)
        result = runner.invoke(app, ["train", "--db", sqlite_url])
        assert result.exit_code == NOT_ENOUGH_HISTORY == 3
        assert "not enough history yet: 43 runs, 3 failures of the 200/20 needed" in normalize(result.output)
        assert not get_settings().model_dir.exists()

    def test_forecast_without_a_model_says_why_and_exits_0(self, sqlite_url: str, normalize: Any) -> None:
        """`forewarn forecast` with no model: the history's counts, no Prefect call, exit 0."""
        fill(TelemetryStore(sqlite_url), 10, 1)
        result = runner.invoke(app, ["forecast", "--db", sqlite_url])
        assert result.exit_code == 0, result.output
        assert normalize(result.output) == (
            "not enough history yet: 11 runs, 1 failures of the 200/20 needed; nothing to forecast without a model"
        )

    def test_forecast_refuses_a_store_that_does_not_exist(self, tmp_path: Path, normalize: Any) -> None:
        """A mistyped --db is "no forewarn store at ...", as for report and train: no new empty store."""
        typo = tmp_path / "typo.db"
        result = runner.invoke(app, ["forecast", "--db", f"sqlite:///{typo}"])
        assert result.exit_code != 0
        assert "no forewarn store at" in normalize(result.output)
        assert "Check the path in --db" in normalize(result.output)  # the option it came from, not "url"
        assert not typo.exists()

    def test_forecast_with_enough_history_but_no_model_says_train(self, sqlite_url: str, normalize: Any) -> None:
        fill(TelemetryStore(sqlite_url), 200, 20)
        result = runner.invoke(app, ["forecast", "--db", sqlite_url])
        assert result.exit_code == 0, result.output
        assert "though the history is enough (220 runs, 20 failures): run `forewarn train`" in normalize(result.output)


@pytest.mark.usefixtures("prefect_harness")
class TestFlows:
    """The training and forecast flows complete (not fail) without a model, with a markdown artifact."""

    @staticmethod
    def artifact(key: str) -> str:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

        with get_client(sync_client=True) as client:
            (latest,) = client.read_latest_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
        return str(latest.data)

    def test_training_flow_completes_without_a_model(self) -> None:
        from flows.training import train_failure_model

        fill(TelemetryStore(get_settings().db_url), 25, 2)
        state = train_failure_model(return_state=True)
        assert state.is_completed()
        result = state.result()
        assert (result["version"], result["runs"], result["failures"]) == (None, 27, 2)
        assert result["status"] == "not enough history yet: 27 runs, 2 failures of the 200/20 needed"
        assert "**27** labelled runs with **2** failures" in self.artifact("forewarn-model")

    def test_training_flow_imports_prefect_history_first(self) -> None:
        """import_prefect=True: the runs that ended in Prefect are in the store before training looks."""
        import prefect
        from flows.training import train_failure_model

        @prefect.flow(name="cold-etl")
        def etl() -> int:
            return 1

        ran = str(etl(return_state=True).state_details.flow_run_id)
        state = train_failure_model(import_prefect=True, return_state=True)
        assert state.is_completed()
        imported = TelemetryStore(get_settings().db_url).runs().set_index("flow_run_id")
        assert (imported.loc[ran, "flow_name"], imported.loc[ran, "source"]) == ("cold-etl", "prefect")
        assert "forewarn-train" not in set(imported["flow_name"])  # its own runs are not history

    def test_forecast_flow_completes_without_a_model(self) -> None:
        from flows.forecast import forecast_flow

        TelemetryStore(get_settings().db_url)
        state = forecast_flow(return_state=True)
        assert state.is_completed()
        assert state.result() == []
        assert "# forewarn forecast: not enough history yet" in self.artifact("forewarn-forecast")
