"""The forecast of scheduled runs, against a real Prefect API with deployments and scheduled flow runs."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import UUID, uuid4

import pandas as pd
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.states import Scheduled

from forewarn.errors import ConfigurationError, ModelError
from forewarn.orchestration.forecast import (
    FORECAST_ARTIFACT_KEY,
    _with_known_versions,
    forecast_rows,
    forecast_upcoming_runs,
    publish_forecast,
    upcoming_runs_frame,
)
from forewarn.orchestration.warning import EVENT_NAME
from forewarn.records import FlowRunRecord, RunState
from forewarn.scoring import SCORE_COLUMNS, clear_model_cache
from forewarn.settings import get_settings
from forewarn.store import TelemetryStore
from test_warning import DOOMED, FINE, fleet, train_small_model

pytestmark = pytest.mark.usefixtures("prefect_harness")

# Far enough ahead that no other test's runs are scheduled in the forecast window.
NOW = datetime(2031, 3, 3, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small DOOMED/FINE model (threshold 0.3)."""
    return train_small_model(tmp_path_factory.mktemp("models"))


@pytest.fixture
def store(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> TelemetryStore:
    """This test's store with the two flows' history up to half an hour before NOW; the model installed."""
    monkeypatch.setenv("FOREWARN_MODEL_DIR", str(model_dir))
    get_settings.cache_clear()
    clear_model_cache()
    s = TelemetryStore(get_settings().db_url)
    s.record_runs_frame(fleet(NOW - timedelta(minutes=30)), source="forewarn")
    return s


@pytest.fixture(scope="module")
def scheduled(prefect_harness: None) -> dict[str, UUID]:
    """Deployments of both flows and scheduled runs inside and outside the 24 h after NOW, by label."""
    runs: dict[str, UUID] = {}
    with get_client(sync_client=True) as client:
        deployments = {}
        for flow in (DOOMED, FINE):
            flow_id = client.create_flow_from_name(flow)
            deployments[flow] = client.create_deployment(flow_id=flow_id, name="nightly", parameters={})
        plan = {
            "doomed+1h": (DOOMED, timedelta(hours=1)),
            "fine+2h": (FINE, timedelta(hours=2)),
            "doomed+23h": (DOOMED, timedelta(hours=23)),
            "doomed+30h": (DOOMED, timedelta(hours=30)),  # beyond the horizon
            "fine-1h": (FINE, timedelta(hours=-1)),  # already due: not upcoming
        }
        for label, (flow, offset) in plan.items():
            run = client.create_flow_run_from_deployment(
                deployments[flow], state=Scheduled(scheduled_time=NOW + offset)
            )
            runs[label] = run.id
    return runs


def capture_events(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    emitted: list[dict[str, Any]] = []
    monkeypatch.setattr("prefect.events.emit_event", lambda **kw: emitted.append(kw))
    return emitted


class TestForecast:
    """forecast_upcoming_runs() scores the runs scheduled within the horizon with what is known now."""

    def test_only_runs_inside_the_horizon(
        self, store: TelemetryStore, scheduled: dict[str, UUID], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Three runs start within 24 h of NOW: they, and only they, are scored, earliest first."""
        capture_events(monkeypatch)
        table = forecast_upcoming_runs(store, now=NOW)
        assert tuple(table.columns) == SCORE_COLUMNS
        expected = [str(scheduled[k]) for k in ("doomed+1h", "fine+2h", "doomed+23h")]
        assert table["flow_run_id"].tolist() == expected
        assert table["flow_name"].tolist() == [DOOMED, FINE, DOOMED]
        assert table["deployment"].tolist() == ["nightly"] * 3
        assert table["lead_seconds"].tolist() == [3600.0, 7200.0, 23 * 3600.0]
        assert table["warned"].tolist() == [True, False, True]

    def test_predictions_are_recorded_with_their_lead(
        self, store: TelemetryStore, scheduled: dict[str, UUID], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """One predictions row per scored run, source forecast, lead = scheduled start - now."""
        capture_events(monkeypatch)
        table = forecast_upcoming_runs(store, now=NOW)
        rows = store.predictions(source="forecast").sort_values("lead_seconds")
        assert rows["flow_run_id"].tolist() == table["flow_run_id"].tolist()
        assert rows["lead_seconds"].tolist() == [3600.0, 7200.0, 23 * 3600.0]
        assert (rows["predicted_at"] == pd.Timestamp(NOW)).all()
        assert rows["risk"].tolist() == pytest.approx(table["risk"].tolist(), abs=1e-12)
        assert rows["reasons"].tolist() == table["reasons"].tolist()

    def test_events_for_the_runs_at_risk(
        self, store: TelemetryStore, scheduled: dict[str, UUID], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """forewarn.run.at-risk is emitted for each warned run, its resource the scheduled flow run."""
        emitted = capture_events(monkeypatch)
        forecast_upcoming_runs(store, now=NOW)
        assert [e["event"] for e in emitted] == [EVENT_NAME, EVENT_NAME]
        assert [e["resource"]["prefect.resource.id"] for e in emitted] == [
            f"prefect.flow-run.{scheduled['doomed+1h']}",
            f"prefect.flow-run.{scheduled['doomed+23h']}",
        ]
        payload = emitted[0]["payload"]
        assert payload["source"] == "forecast" and payload["lead_seconds"] == 3600.0
        assert payload["flow_name"] == DOOMED and payload["deployment"] == "nightly"

    def test_same_cutoff_for_every_run(
        self, store: TelemetryStore, scheduled: dict[str, UUID], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A failure that ends after NOW is unknown to every run of the forecast, however far ahead."""
        capture_events(monkeypatch)
        before = forecast_upcoming_runs(store, now=NOW, record=False)
        t = NOW + timedelta(minutes=10)
        store.record_flow_run_start(FlowRunRecord("later-failure", FINE, t, RunState.FAILED, end_time=t))
        after = forecast_upcoming_runs(store, now=NOW, record=False)
        assert after["risk"].tolist() == before["risk"].tolist()

    def test_no_model_is_an_error(self, sqlite_url: str, tmp_path: Path, scheduled: dict[str, UUID]) -> None:
        """Unlike the pre-run hook, the forecast says plainly that it needs a model."""
        with pytest.raises(ModelError, match="forewarn train"):
            forecast_upcoming_runs(TelemetryStore(sqlite_url), now=NOW, model_dir=tmp_path / "none")

    def test_horizon_must_be_positive(self, store: TelemetryStore) -> None:
        """A zero or negative horizon is a configuration error naming the option."""
        with pytest.raises(ConfigurationError, match="horizon"):
            forecast_upcoming_runs(store, now=NOW, horizon=timedelta(0))


class TestPublish:
    """publish_forecast() writes the runs at risk as a table artifact."""

    def test_table_artifact_of_the_runs_at_risk(
        self, store: TelemetryStore, scheduled: dict[str, UUID], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Inside a flow run, the artifact holds one row per warned run and belongs to that run."""
        import prefect

        capture_events(monkeypatch)
        table = forecast_upcoming_runs(store, now=NOW, record=False)

        @prefect.flow(name="forecast-test")
        def publish() -> UUID:
            return publish_forecast(table)

        state = publish(return_state=True)
        artifact_id = state.result()
        with get_client(sync_client=True) as client:
            found = client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[FORECAST_ARTIFACT_KEY]))
            )
        (mine,) = [a for a in found if a.id == artifact_id]
        assert mine.type == "table" and mine.flow_run_id == state.state_details.flow_run_id
        assert "2 of 3 scheduled run(s) at risk" in (mine.description or "")
        rows = forecast_rows(table)
        assert [r["flow run"] for r in rows] == [str(scheduled["doomed+1h"]), str(scheduled["doomed+23h"])]
        assert rows[0]["in (hours)"] == 1.0 and rows[0]["reasons"]


class TestUpcomingRunsFrame:
    """Scheduled Prefect runs become score_runs targets."""

    def test_mapping(self) -> None:
        """Flow and deployment names by id, parameters with their hash, the expected start."""
        from forewarn.records import parameters_hash

        flow_id, deployment_id = uuid4(), uuid4()
        run = SimpleNamespace(
            id=uuid4(),
            flow_id=flow_id,
            deployment_id=deployment_id,
            parameters={"day": "mon"},
            flow_version=None,
            expected_start_time=NOW,
        )
        frame = upcoming_runs_frame([run], {flow_id: "etl"}, {deployment_id: "prod"})
        row = frame.iloc[0]
        assert (row.flow_name, row.deployment, row.parameters_hash) == ("etl", "prod", parameters_hash({"day": "mon"}))
        assert row.scheduled_start == pd.Timestamp(NOW)

    def test_a_run_without_a_version_gets_its_flows_latest(self, sqlite_url: str) -> None:
        """The code version of a scheduled run is unknown: the flow's latest ended run's version is used."""
        s = TelemetryStore(sqlite_url)
        t = NOW - timedelta(hours=2)
        for i, version in enumerate(["v1", "v2"]):
            end = t + timedelta(minutes=i)
            s.record_flow_run_start(
                FlowRunRecord(f"r{i}", "etl", end, RunState.COMPLETED, end_time=end, flow_version=version)
            )
        targets = pd.DataFrame(
            {"flow_run_id": ["u1", "u2"], "flow_name": ["etl", "new-flow"], "flow_version": [None, None]}
        )
        filled = _with_known_versions(s, targets, NOW)
        assert filled["flow_version"].tolist() == ["v2", None]
