"""The pre-run hook of forewarn.flow, inside real Prefect runs: fail-open paths, warnings and policies."""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, cast
from uuid import UUID

import numpy as np
import pandas as pd
import pytest
from prefect.events.clients import AssertingEventsClient
from prefect.events.worker import EventsWorker

import forewarn
from forewarn import RetryPolicy
from forewarn.learning.features import build_features, failure_labels
from forewarn.learning.model import FailureWarningModel, save_model
from forewarn.orchestration.flows import WarningPolicy
from forewarn.orchestration.warning import ARTIFACT_KEY, EVENT_NAME, HARDEN_EXTRA_ATTEMPTS, PAUSE_KEY, warn_before_run
from forewarn.records import FlowRunRecord, parameters_hash
from forewarn.scoring import clear_model_cache, configured_model_key
from forewarn.settings import get_settings
from forewarn.store import TelemetryStore

pytestmark = pytest.mark.usefixtures("prefect_harness")

DOOMED, FINE = "doomed-flow", "fine-flow"
NOT_SCORED = "forewarn did not score this run"
THRESHOLD = 0.3


def fleet(end: datetime, hours: int = 960) -> pd.DataFrame:
    """Hourly runs of two flows over 40 days before ``end``: DOOMED fails 95 % of its runs, FINE 2 %."""
    rng = np.random.default_rng(7)
    rows = []
    for i in range(hours):
        for flow, offset, p_fail in ((DOOMED, 0, 0.95), (FINE, 30, 0.02)):
            scheduled = end - timedelta(hours=hours - i, minutes=-offset)
            rows.append(
                {
                    "flow_run_id": f"{flow}-{i}",
                    "flow_name": flow,
                    "parameters": {},
                    "parameters_hash": parameters_hash({}),  # as forewarn.flow records a run without parameters
                    "scheduled_start": scheduled,
                    "start_time": scheduled + timedelta(seconds=5),
                    "end_time": scheduled + timedelta(minutes=5),
                    "state": "FAILED" if rng.random() < p_fail else "COMPLETED",
                }
            )
    frame = pd.DataFrame(rows)
    for name in ("scheduled_start", "start_time", "end_time"):
        frame[name] = pd.to_datetime(frame[name], utc=True)
    return frame


def train_small_model(directory: Path) -> Path:
    """Save a small real model that knows DOOMED fails and FINE does not (threshold 0.3) in ``directory``."""
    end = datetime(2026, 6, 1, tzinfo=timezone.utc)
    runs = fleet(end)
    model = FailureWarningModel(family="logreg", min_runs=100, min_failures=10)
    model.fit(build_features(runs), failure_labels(runs))
    model.threshold_ = THRESHOLD
    for hours in range(0, 24, 4):  # the next run of each flow, half an hour after the history, at any hour
        later = end + timedelta(hours=hours)
        upcoming = pd.DataFrame(
            {
                "flow_run_id": ["d", "f"],
                "flow_name": [DOOMED, FINE],
                "scheduled_start": pd.to_datetime([later + timedelta(minutes=30)] * 2, utc=True),
                "parameters_hash": parameters_hash({}),
            }
        )
        risk = model.risk(build_features(upcoming, fleet(later)))
        # clear of the threshold both ways (FINE scores up to 0.11 at some hours with the sigmoid fitted on
        # the time holdout's rows; it stayed under 0.1 with the older 3-fold calibration)
        assert risk[0] > THRESHOLD + 0.2 and risk[1] < THRESHOLD - 0.15, risk
    save_model(
        model,
        directory,
        training_window=(runs["scheduled_start"].min(), runs["scheduled_start"].max()),
        key=configured_model_key(create=True),
    )
    return directory


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small model's directory."""
    return train_small_model(tmp_path_factory.mktemp("models"))


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> Iterator[EventsWorker]:
    """Prefect's events worker with a client that keeps what it is sent (as Prefect's own test fixture)."""
    worker = EventsWorker.instance(AssertingEventsClient)
    monkeypatch.setattr(EventsWorker, "instance", lambda *_: worker)
    try:
        yield worker
    finally:
        worker.drain()


@pytest.fixture
def with_history() -> TelemetryStore:
    """This test's store, holding the two flows' history up to half an hour ago."""
    store = TelemetryStore(get_settings().db_url)
    store.record_runs_frame(fleet(datetime.now(timezone.utc) - timedelta(minutes=30)), source="forewarn")
    return store


@pytest.fixture
def installed(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """FOREWARN_MODEL_DIR points at the small model."""
    monkeypatch.setenv("FOREWARN_MODEL_DIR", str(model_dir))
    get_settings.cache_clear()
    clear_model_cache()
    return model_dir


@pytest.fixture(scope="module")
def _prefect_logging_configured(prefect_harness: None) -> None:
    """Run one plain flow first: Prefect's first run in a process reconfigures logging (and drops caplog)."""
    import prefect

    prefect.flow(name="warm-up")(lambda: None)()


@pytest.fixture
def lines(caplog: pytest.LogCaptureFixture, _prefect_logging_configured: None) -> Iterator[Any]:
    """The forewarn lines logged on flow run loggers, as (level, message) pairs."""
    caplog.set_level(logging.INFO, logger="prefect.flow_runs")

    def forewarn_lines() -> list[tuple[str, str]]:
        return [
            (r.levelname, r.getMessage())
            for r in caplog.records
            if r.name.startswith("prefect.flow_runs") and r.getMessage().startswith("forewarn")
        ]

    yield forewarn_lines


def copy_model(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target / json.loads((target / "latest.json").read_text())["version"]


def use_model_dir(directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOREWARN_MODEL_DIR", str(directory))
    get_settings.cache_clear()
    clear_model_cache()


def run(flow_name: str, **options: Any) -> Any:
    """Run a one-line forewarn flow named ``flow_name``; return its final state."""

    @forewarn.flow(name=flow_name, **options)
    def body() -> str:
        return "done"

    return body(return_state=True)


class TestFailOpen:
    """Without a usable model or store, the run goes on and one line says why and what to do."""

    def test_no_model(self, lines: Any) -> None:
        """No model installed: one INFO line pointing at `forewarn train`."""
        state = run(FINE)
        assert state.is_completed()
        (line,) = lines()
        assert line[0] == "INFO" and NOT_SCORED in line[1] and "forewarn train" in line[1]

    def test_tampered_artifact(
        self, lines: Any, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A model file changed after saving is not loaded: one WARNING line about its checksum."""
        version = copy_model(model_dir, tmp_path / "tampered")
        with open(version / "model.joblib", "ab") as fh:
            fh.write(b"\x00")
        use_model_dir(tmp_path / "tampered", monkeypatch)
        state = run(DOOMED)
        assert state.is_completed()
        (line,) = lines()
        assert line[0] == "WARNING" and NOT_SCORED in line[1] and "checksum" in line[1]

    def test_schema_mismatch(
        self, lines: Any, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A model trained on features this forewarn does not build: one WARNING line, retrain advised."""
        version = copy_model(model_dir, tmp_path / "old-schema")
        manifest = json.loads((version / "manifest.json").read_text())
        manifest["feature_types"]["retired_feature"] = "numeric"
        (version / "manifest.json").write_text(json.dumps(manifest))
        use_model_dir(tmp_path / "old-schema", monkeypatch)
        state = run(DOOMED)
        assert state.is_completed()
        (line,) = lines()
        assert NOT_SCORED in line[1] and "other features" in line[1] and "retired_feature" in line[1]

    def test_store_unreachable(self, lines: Any, installed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """With the database down, the run completes and one line names the store problem (no password)."""
        monkeypatch.setenv("FOREWARN_DB_URL", "postgresql+psycopg://u:s3cret@127.0.0.1:1/none")
        get_settings.cache_clear()
        state = run(DOOMED)
        assert state.is_completed()
        (line,) = lines()
        assert line[0] == "WARNING" and "telemetry store could not be read" in line[1]
        assert "FOREWARN_DB_URL" in line[1] and "s3cret" not in line[1]

    def test_any_other_error(self, lines: Any, installed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """An unexpected error inside scoring is one line too, never a failed run."""

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("boom")

        monkeypatch.setattr("forewarn.scoring.live.score_runs", broken)
        state = run(DOOMED)
        assert state.is_completed()
        (line,) = lines()
        assert "scoring failed unexpectedly" in line[1] and "boom" in line[1]

    def test_no_model_imports_nothing_heavy(self, tmp_path: Path) -> None:
        """With no model installed the hook returns at once without loading scoring (pandas, scikit-learn)."""
        import subprocess
        import sys

        code = (
            "import sys; from datetime import datetime, timezone\n"
            "from forewarn.records import FlowRunRecord\n"
            "from forewarn.orchestration.warning import warn_before_run\n"
            "rec = FlowRunRecord('r', 'etl', start_time=datetime.now(timezone.utc))\n"
            f"assert warn_before_run(rec, model_dir={str(tmp_path)!r}, policy='warn') is None\n"
            "print(sorted(m for m in ('pandas', 'sklearn', 'forewarn.scoring') if m in sys.modules))\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "[]"


class TestWarning:
    """A run scored at or above the threshold warns in the log, as an artifact and as an event."""

    def test_high_risk_run(
        self, lines: Any, installed: Path, with_history: TelemetryStore, events: EventsWorker
    ) -> None:
        """DOOMED: WARNING with risk and reasons, a predictions row, a markdown artifact, an event."""
        state = run(DOOMED)
        assert state.is_completed()
        run_id = str(state.state_details.flow_run_id)

        (line,) = lines()
        assert line[0] == "WARNING" and "at risk of failing" in line[1] and "top reasons:" in line[1]

        (row,) = with_history.predictions(flow_run_id=run_id).to_dict("records")
        assert row["source"] == "hook" and row["warned"] and row["risk"] >= row["threshold"] == THRESHOLD
        assert row["model_version"] == json.loads((installed / "latest.json").read_text())["version"]
        assert 1 <= len(row["reasons"]) <= 3 and row["reasons"][0] in line[1]
        assert row["lead_seconds"] <= 0  # scored as it started, just after its scheduled start

        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

        with get_client(sync_client=True) as client:
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
                )
            )
        (artifact,) = [a for a in artifacts if a.key == ARTIFACT_KEY]
        assert artifact.type == "markdown" and f"failure risk {row['risk']:.2f}" in str(artifact.data)

        events.drain()
        client_events = events._client
        assert isinstance(client_events, AssertingEventsClient)
        (event,) = [e for e in client_events.events if e.event == EVENT_NAME]
        assert event.resource.id == f"prefect.flow-run.{run_id}"
        assert event.payload["flow_name"] == DOOMED and event.payload["model_version"] == row["model_version"]
        assert event.payload["risk"] == pytest.approx(row["risk"], abs=1e-6)
        assert event.payload["threshold"] == THRESHOLD and event.payload["reasons"] == row["reasons"]

    def test_low_risk_run_is_recorded_quietly(
        self, lines: Any, installed: Path, with_history: TelemetryStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """FINE: a predictions row with warned False and no reasons, and no warning, artifact or event."""
        emitted: list[Any] = []
        monkeypatch.setattr("prefect.events.emit_event", lambda **kw: emitted.append(kw))
        state = run(FINE)
        assert state.is_completed()
        (row,) = with_history.predictions(flow_run_id=str(state.state_details.flow_run_id)).to_dict("records")
        assert not row["warned"] and row["risk"] < THRESHOLD
        assert list(row["reasons"]) == []  # only a warned run is explained
        assert lines() == [] and emitted == []

    def test_score_false_skips_scoring(self, installed: Path, with_history: TelemetryStore) -> None:
        """forewarn.flow(score=False) records the run but does not score it."""
        state = run(DOOMED, score=False)
        assert state.is_completed()
        assert with_history.predictions().empty


class TestPolicies:
    """What else a warned run does, per flow: warn, harden or pause."""

    def flaky_flow(self, name: str, policy: WarningPolicy) -> Any:
        calls = {"n": 0}

        @forewarn.task(retry=RetryPolicy(attempts=1), sleep=lambda s: None)
        def extract() -> str:
            calls["n"] += 1
            if calls["n"] <= HARDEN_EXTRA_ATTEMPTS:
                raise ConnectionError("source reset the connection")
            return "rows"

        @forewarn.flow(name=name, warning_policy=policy)
        def load() -> str:
            return extract()

        return load

    def test_harden_gives_a_warned_run_more_attempts(
        self, lines: Any, installed: Path, with_history: TelemetryStore
    ) -> None:
        """A task that needs two more attempts succeeds in a hardened DOOMED run."""
        state = self.flaky_flow(DOOMED, "harden")(return_state=True)
        assert state.is_completed() and state.result() == "rows"
        outcomes = with_history.attempts(flow_run_id=str(state.state_details.flow_run_id))["outcome"].tolist()
        assert outcomes == ["failure", "failure", "success"]
        assert any("hardening is on" in message for _, message in lines())

    def test_harden_leaves_a_run_that_is_not_at_risk_alone(self, installed: Path, with_history: TelemetryStore) -> None:
        """The same task fails in a FINE run under the same policy: no extra attempts without a warning."""
        state = self.flaky_flow(FINE, "harden")(return_state=True)
        assert state.is_failed()

    def test_hardening_ends_with_the_body(self, installed: Path, with_history: TelemetryStore) -> None:
        """The context the hook returns is exited after the body: nothing stays hardened."""
        from forewarn.resilience.attempts import current_hardening

        seen: list[Any] = []

        @forewarn.flow(name=DOOMED, warning_policy="harden")
        def body() -> None:
            seen.append(current_hardening())

        body()
        assert seen[0] is not None and seen[0].extra_attempts == HARDEN_EXTRA_ATTEMPTS
        assert current_hardening() is None

    def test_pause_asks_prefect_to_pause_the_run(
        self, installed: Path, with_history: TelemetryStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A warned run with policy pause calls pause_flow_run with the timeout and a key."""
        calls: list[dict[str, Any]] = []
        monkeypatch.setattr("prefect.flow_runs.pause_flow_run", lambda **kw: calls.append(kw))
        state = run(DOOMED, warning_policy="pause")
        assert state.is_completed()
        assert calls == [{"timeout": 3600, "key": PAUSE_KEY, "_sync": True}]

    def test_pause_pauses_a_real_run_until_it_is_resumed(self, installed: Path, with_history: TelemetryStore) -> None:
        """On the real test API: a warned run with policy pause sits Paused, and a resume lets it complete."""
        from prefect.client.orchestration import get_client
        from prefect.flow_runs import resume_flow_run

        ended: dict[str, Any] = {}
        runner = threading.Thread(target=lambda: ended.setdefault("state", run(DOOMED, warning_policy="pause")))
        runner.start()
        try:
            run_id = _poll(lambda: next(iter(with_history.predictions()["flow_run_id"]), None), "the run's score")
            with get_client(sync_client=True) as client:
                _poll(lambda: client.read_flow_run(UUID(run_id)).state_name == "Paused" or None, "a Paused run")
                assert runner.is_alive()  # the body waits for the resume
                cast(Any, resume_flow_run)(UUID(run_id), _sync=True)
            runner.join(120)
        finally:
            if runner.is_alive():  # never leave the run waiting for its hour
                cast(Any, resume_flow_run)(UUID(run_id), _sync=True)
                runner.join(120)
        assert ended["state"].is_completed()
        assert bool(with_history.predictions()["warned"].iloc[0])

    def test_default_policy_comes_from_the_setting(
        self, installed: Path, with_history: TelemetryStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """FOREWARN_WARNING_POLICY=pause applies to flows that set no policy."""
        calls: list[dict[str, Any]] = []
        monkeypatch.setattr("prefect.flow_runs.pause_flow_run", lambda **kw: calls.append(kw))
        monkeypatch.setenv("FOREWARN_WARNING_POLICY", "pause")
        get_settings.cache_clear()
        assert run(DOOMED).is_completed()
        assert len(calls) == 1


class TestOutsideAFlow:
    """warn_before_run() can be called directly, with injected time, model and store."""

    def test_direct_call(self, model_dir: Path, sqlite_url: str, caplog: pytest.LogCaptureFixture) -> None:
        """Outside a flow run it logs on forewarn.orchestration.warning and records the prediction."""
        now = datetime.now(timezone.utc)
        store = TelemetryStore(sqlite_url)
        store.record_runs_frame(fleet(now - timedelta(minutes=30)))
        record = FlowRunRecord(
            "direct-1", FINE, start_time=now, scheduled_start=now, parameters_hash=parameters_hash({})
        )
        with caplog.at_level(logging.INFO, logger="forewarn.warning"):
            assert warn_before_run(record, model_dir=model_dir, store=store, now=now) is None
        (row,) = store.predictions().to_dict("records")
        assert row["flow_run_id"] == "direct-1" and row["lead_seconds"] == 0.0 and not row["warned"]


def _poll(value: Any, what: str, seconds: float = 120.0) -> Any:
    """``value()`` once it is truthy; the real API answers in its own time, so poll it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = value()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {seconds:g} s")
