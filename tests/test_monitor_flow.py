"""flows/monitor.py: the report as an artifact, and the training deployment started when it says retrain."""

from __future__ import annotations

import importlib.util
from datetime import timedelta
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterDeploymentId

from forewarn.learning.drift import RiskReference
from forewarn.records import RunState
from forewarn.timeutil import utc_now
from test_monitoring import install_manifest, predict, run

# flows/ is not a package: load the flow's module from its file, leaving sys.path alone
FLOW_FILE = Path(__file__).resolve().parents[1] / "flows" / "monitor.py"
_spec = importlib.util.spec_from_file_location("forewarn_monitor_flow", FLOW_FILE)
assert _spec is not None and _spec.loader is not None
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
MONITOR_ARTIFACT_KEY, monitor_flow = _module.MONITOR_ARTIFACT_KEY, _module.monitor_flow

pytestmark = pytest.mark.usefixtures("prefect_harness")


def drifted(url: str) -> None:
    """60 runs of the last six days, all warned at risk 0.7, every other one FAILED: PSI and failure rate fire."""
    from forewarn.store import TelemetryStore

    store = TelemetryStore(url)
    now = utc_now()
    for i in range(60):
        start = now - timedelta(days=6) + timedelta(hours=2 * i)
        run(store, f"r{i}", "etl", start, RunState.FAILED if i % 2 else RunState.COMPLETED)
        predict(store, f"r{i}", "etl", start, 0.7)
    store.close()


@pytest.fixture(scope="module")
def training_deployment(prefect_harness: None) -> UUID:
    """A deployment named like the training one (no worker: a started run just stays scheduled)."""
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name("monitor-test-train")
        return client.create_deployment(flow_id=flow_id, name="train", parameters={})


def runs_of(deployment_id: UUID) -> list[UUID]:
    with get_client(sync_client=True) as client:
        found = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id]))
        )
    return [r.id for r in found]


class TestMonitorFlow:
    def test_retrain_starts_the_training_deployment(
        self, sqlite_url: str, tmp_path: Path, training_deployment: UUID
    ) -> None:
        """A "retrain" verdict with trigger_training starts one run of the training deployment."""
        install_manifest(tmp_path / "models", RiskReference((0.5,), (0.5, 0.5), 1000))
        drifted(sqlite_url)
        before = runs_of(training_deployment)
        summary = monitor_flow(
            trigger_training=True,
            training_deployment="monitor-test-train/train",
            db_url=sqlite_url,
            model_dir=str(tmp_path / "models"),
        )
        assert summary["retrain"] is True and summary["training_flow_run_id"] is not None
        assert set(runs_of(training_deployment)) - set(before) == {UUID(summary["training_flow_run_id"])}

    def test_without_the_option_nothing_is_started_and_the_report_is_an_artifact(
        self, sqlite_url: str, tmp_path: Path, training_deployment: UUID
    ) -> None:
        install_manifest(tmp_path / "models", RiskReference((0.5,), (0.5, 0.5), 1000))
        drifted(sqlite_url)
        before = runs_of(training_deployment)
        state = monitor_flow(db_url=sqlite_url, model_dir=str(tmp_path / "models"), return_state=True)
        summary = state.result()
        assert summary["retrain"] is True and summary["training_flow_run_id"] is None
        assert runs_of(training_deployment) == before
        with get_client(sync_client=True) as client:
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[MONITOR_ARTIFACT_KEY]))
            )
        (mine,) = [a for a in artifacts if a.flow_run_id == state.state_details.flow_run_id]
        assert mine.data.startswith("# forewarn live monitoring: **retrain**")
        assert "| etl | 60 | 0 | 30 | 60 | 1 | 0.5 | 30 | 1 |" in mine.data

    def test_a_mistyped_store_fails_the_run(self, tmp_path: Path) -> None:
        state = monitor_flow(db_url=f"sqlite:///{tmp_path / 'missing.db'}", return_state=True)
        assert state.is_failed() and not (tmp_path / "missing.db").exists()
