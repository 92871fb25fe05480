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
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, DeploymentFilter, DeploymentFilterId
from prefect.states import Scheduled

from forewarn.errors import ConfigurationError, ModelError
from forewarn.orchestration.forecast import (
    FORECAST_ARTIFACT_KEY,
    FORECAST_COLUMNS,
    _with_known_versions,
    forecast_rows,
    forecast_upcoming_runs,
    publish_forecast,
    upcoming_runs_frame,
)
from forewarn.orchestration.warning import EVENT_NAME
from forewarn.records import FlowRunRecord, PredictionRecord, RunState
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
        assert tuple(table.columns) == FORECAST_COLUMNS == (*SCORE_COLUMNS, "notified")
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


@pytest.fixture(scope="module")
def others(scheduled: dict[str, UUID]) -> dict[str, UUID]:
    """Runs inside the horizon that the default scope leaves out, and a tagged DOOMED run a month ahead."""
    runs: dict[str, UUID] = {}
    with get_client(sync_client=True) as client:
        for flow in ("no-history-flow", "forewarn-forecast"):
            deployment = client.create_deployment(flow_id=client.create_flow_from_name(flow), name="hourly")
            runs[flow] = client.create_flow_run_from_deployment(
                deployment, state=Scheduled(scheduled_time=NOW + timedelta(hours=3))
            ).id
        vip = client.create_deployment(flow_id=client.create_flow_from_name(DOOMED), name="vip")
        # a month ahead: outside every other test's horizon, whatever order the tests run in
        runs["tagged"] = client.create_flow_run_from_deployment(
            vip, state=Scheduled(scheduled_time=NOW + timedelta(days=30)), tags=["vip"]
        ).id
    return runs


class TestScope:
    """Which scheduled runs the forecast scores."""

    def test_default_is_flows_with_history_never_forewarns_own(
        self,
        store: TelemetryStore,
        scheduled: dict[str, UUID],
        others: dict[str, UUID],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A flow without history and forewarn's own forecast flow (even with history) are not scored."""
        capture_events(monkeypatch)
        t = NOW - timedelta(hours=2)
        store.record_flow_run_start(FlowRunRecord("op-1", "forewarn-forecast", t, RunState.FAILED, end_time=t))
        table = forecast_upcoming_runs(store, now=NOW, record=False)
        assert set(table["flow_name"]) == {DOOMED, FINE}

    def test_by_deployment_name_or_flow_and_name(
        self,
        store: TelemetryStore,
        scheduled: dict[str, UUID],
        others: dict[str, UUID],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        capture_events(monkeypatch)
        fine = forecast_upcoming_runs(store, now=NOW, record=False, deployments=[f"{FINE}/nightly"])
        assert fine["flow_run_id"].tolist() == [str(scheduled["fine+2h"])]
        hourly = forecast_upcoming_runs(store, now=NOW, record=False, deployments=["hourly"])
        assert hourly["flow_run_id"].tolist() == [str(others["no-history-flow"])]  # chosen: scored without history

    def test_by_tag(
        self,
        store: TelemetryStore,
        scheduled: dict[str, UUID],
        others: dict[str, UUID],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        capture_events(monkeypatch)
        table = forecast_upcoming_runs(store, now=NOW, record=False, tags=["vip"], horizon=timedelta(days=31))
        assert table["flow_run_id"].tolist() == [str(others["tagged"])]


class TestWarnOnce:
    """Each scheduled run is warned about once, and again only when its risk rises."""

    def test_two_forecasts_one_warning_per_run(
        self, store: TelemetryStore, scheduled: dict[str, UUID], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The hourly forecast scores a run twice, records both scores, and emits one event for it."""
        emitted = capture_events(monkeypatch)
        first = forecast_upcoming_runs(store, now=NOW, deployments=["nightly"])
        second = forecast_upcoming_runs(store, now=NOW + timedelta(minutes=10), deployments=["nightly"])
        warned = [f"prefect.flow-run.{scheduled[k]}" for k in ("doomed+1h", "doomed+23h")]
        assert [e["resource"]["prefect.resource.id"] for e in emitted] == warned
        assert first["notified"].tolist() == first["warned"].tolist() == [True, False, True]
        assert second["warned"].tolist() == [True, False, True]
        assert second["notified"].tolist() == [False, False, False]
        recorded = store.predictions(source="forecast", flow_run_id=str(scheduled["doomed+1h"]))
        assert len(recorded) == 2

    def test_a_rise_warns_again(
        self, store: TelemetryStore, scheduled: dict[str, UUID], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Warned at a lower risk an hour earlier: this forecast warns again; the next one does not."""
        emitted = capture_events(monkeypatch)
        run = str(scheduled["doomed+1h"])
        current = forecast_upcoming_runs(store, now=NOW, record=False, emit_events=False, deployments=["nightly"])
        risk = float(current.set_index("flow_run_id").loc[run, "risk"])
        threshold = float(current.set_index("flow_run_id").loc[run, "threshold"])
        assert risk >= threshold + 0.1  # room for a lower earlier warning
        earlier = PredictionRecord(
            run,
            DOOMED,
            NOW - timedelta(hours=1),
            risk=risk - 0.1,
            threshold=threshold,
            model_version="m0",
            scheduled_start=NOW + timedelta(hours=1),
            source="forecast",
        )
        store.record_prediction(earlier)
        again = forecast_upcoming_runs(store, now=NOW, deployments=[f"{DOOMED}/nightly"], rise=0.1)
        assert again.set_index("flow_run_id").loc[run, "notified"]
        after = forecast_upcoming_runs(
            store, now=NOW + timedelta(minutes=5), deployments=[f"{DOOMED}/nightly"], rise=0.1
        )
        assert not after.set_index("flow_run_id").loc[run, "notified"]
        assert [e["resource"]["prefect.resource.id"] for e in emitted].count(f"prefect.flow-run.{run}") == 1


class TestScheduledDeployment:
    """A deployment with a real schedule: the Prefect server's own scheduler creates its runs."""

    def test_two_hourly_forecasts_warn_once_per_scheduled_run(
        self, store: TelemetryStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from prefect.client.schemas.actions import DeploymentScheduleCreate
        from prefect.client.schemas.schedules import IntervalSchedule

        later = NOW + timedelta(days=10)  # a window no other test forecasts
        every_6h = IntervalSchedule(interval=timedelta(hours=6), anchor_date=later + timedelta(minutes=30))
        with get_client(sync_client=True) as client:
            deployment = client.create_deployment(
                flow_id=client.create_flow_from_name(DOOMED),
                name="every-6h",
                schedules=[DeploymentScheduleCreate(schedule=every_6h, active=True)],
            )
            client.request(  # the scheduler service's own step, run now instead of on its loop
                "POST",
                "/deployments/{id}/schedule",
                path_params={"id": deployment},
                json={"start_time": later.isoformat(), "end_time": (later + timedelta(hours=24)).isoformat()},
            )
            created = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment]))
            )
        starts = sorted(run.expected_start_time for run in created)
        assert len(starts) >= 2 and starts[0] == later + timedelta(minutes=30)  # every 6 h from the anchor
        emitted = capture_events(monkeypatch)
        first = forecast_upcoming_runs(store, now=later, deployments=["every-6h"])
        second = forecast_upcoming_runs(store, now=later + timedelta(hours=1), deployments=["every-6h"])
        assert sorted(first["flow_run_id"]) == sorted(str(run.id) for run in created)
        assert first["warned"].all() and first["notified"].all()  # DOOMED fails 95 % of its runs
        assert len(second) == len(created) - 1  # the first run was due by then
        assert second["warned"].all() and not second["notified"].any()
        warned = {f"prefect.flow-run.{run}" for run in first["flow_run_id"]}
        assert sorted(e["resource"]["prefect.resource.id"] for e in emitted) == sorted(warned)
        assert len(store.predictions(source="forecast")) == len(first) + len(second)


class TestCommandLine:
    def test_preview_records_and_emits_nothing_notify_does(
        self, store: TelemetryStore, scheduled: dict[str, UUID], monkeypatch: pytest.MonkeyPatch, normalize: Any
    ) -> None:
        """`forewarn forecast` previews; `--notify` records every score and emits once per warned run."""
        from typer.testing import CliRunner

        from forewarn.cli import app

        emitted = capture_events(monkeypatch)
        monkeypatch.setattr("forewarn.orchestration.forecast.utc", lambda now=None: NOW)
        preview = CliRunner().invoke(app, ["forecast", "--all", "--deployment", "nightly"])
        assert preview.exit_code == 0, preview.output
        assert "preview: nothing recorded or notified" in normalize(preview.output)
        assert store.predictions().empty and emitted == []
        notified = CliRunner().invoke(app, ["forecast", "--notify", "--deployment", "nightly"])
        assert notified.exit_code == 0, notified.output
        assert "2 of 3 scheduled run(s) in the next 24 h at risk; 2 warned about now" in normalize(notified.output)
        assert len(store.predictions(source="forecast")) == 3 and len(emitted) == 2


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
