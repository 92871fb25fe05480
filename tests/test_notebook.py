"""The backtest report notebook runs top to bottom on a store filled like the demo's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "backtest_report.ipynb"


def executed_outputs(path: Path, directory: Path) -> list[dict]:
    """Run every cell of the notebook at ``path`` in ``directory`` (a real kernel); its outputs, no error among them."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(directory)}}
    )
    client.execute(env=dict(os.environ))
    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]
    assert not [out for out in outputs if out.get("output_type") == "error"]
    return outputs


@pytest.mark.slow
def test_backtest_report_notebook_executes(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every cell runs without error and the report shows the model beside both baselines."""
    from forewarn.history.importer import import_attempts, import_runs
    from forewarn.history.simulate import simulated_attempts, write_simulated_history
    from forewarn.store import TelemetryStore

    history = write_simulated_history(tmp_path / "runs.csv", 6000, seed=5)
    import pandas as pd

    simulated_attempts(pd.read_csv(history), seed=5).to_csv(tmp_path / "attempts.csv", index=False)
    store = TelemetryStore(sqlite_url)
    import_runs(store, history)
    import_attempts(store, tmp_path / "attempts.csv")

    monkeypatch.setenv("FOREWARN_DB_URL", sqlite_url)
    monkeypatch.setenv("NOTEBOOK_BACKTEST_FOLDS", "2")
    outputs = executed_outputs(NOTEBOOK, tmp_path)
    text = "\n".join(str(out.get("data", {}).get("text/markdown", "")) + str(out.get("text", "")) for out in outputs)
    assert "| model |" in text and "| last_failed |" in text and "| smoothed_rate |" in text
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(images) >= 4  # PR curve, calibration, warnings over time, top features


TELEMETRY = NOTEBOOK.parent / "telemetry.ipynb"


def live_store(url: str, tmp_path: Path) -> Path:
    """A simulated store whose model trained on its first 80% of runs and scored the rest live; its model dir."""
    import pandas as pd

    from forewarn.history.importer import import_attempts, import_runs
    from forewarn.history.simulate import simulated_attempts, write_simulated_history
    from forewarn.learning.features import build_features
    from forewarn.learning.model import load_model
    from forewarn.learning.training import train_and_save
    from forewarn.records import AttemptOutcome, AttemptRecord, PredictionRecord
    from forewarn.scoring import configured_model_key, feature_config_of
    from forewarn.store import TelemetryStore

    history = write_simulated_history(tmp_path / "runs.csv", 6000, seed=5)
    simulated_attempts(pd.read_csv(history), seed=5).to_csv(tmp_path / "attempts.csv", index=False)
    store = TelemetryStore(url)
    import_runs(store, history)
    import_attempts(store, tmp_path / "attempts.csv")
    runs, attempts = store.history()
    runs = runs.sort_values("scheduled_start", kind="stable")
    cut = runs["scheduled_start"].iloc[int(len(runs) * 0.8)]
    early, late = runs[runs["scheduled_start"] < cut], runs[runs["scheduled_start"] >= cut]
    key = configured_model_key(create=True)
    trained = train_and_save(early, attempts, model_dir=tmp_path / "models", key=key, backtest=False)
    manifest = trained.manifest
    model, _ = load_model(trained.path, key=key)
    features = build_features(late, runs, attempts, config=feature_config_of(manifest))
    risks = model.risk(features[list(manifest.feature_names)])
    store.record_predictions(
        PredictionRecord(run.flow_run_id, run.flow_name, run.scheduled_start.to_pydatetime(), float(risk),
                         manifest.threshold, manifest.version, scheduled_start=run.scheduled_start.to_pydatetime())
        for run, risk in zip(late.itertuples(), risks, strict=True)
    )
    refused_at = late["scheduled_start"].iloc[0].to_pydatetime()  # one call refused by an open breaker
    store.record_attempt(AttemptRecord(late["flow_run_id"].iloc[0], "breaker-t", "charge", 1, refused_at, refused_at,
                                       AttemptOutcome.FAILURE, exception_type="CircuitOpenError"))
    store.close()
    return tmp_path / "models"


@pytest.mark.slow
def test_telemetry_notebook_executes(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every cell runs on a store with history, a model trained on its first 80%, and live predictions after."""
    model_dir = live_store(sqlite_url, tmp_path)
    monkeypatch.setenv("FOREWARN_DB_URL", sqlite_url)
    monkeypatch.setenv("FOREWARN_MODEL_DIR", str(model_dir))
    outputs = executed_outputs(TELEMETRY, tmp_path)
    data = [out.get("data", {}) for out in outputs]
    text = "\n".join(str(d.get("text/markdown", "")) + str(d.get("text/plain", "")) for d in data)
    text += "\n".join(str(out.get("text", "")) for out in outputs)
    assert "No call was refused" not in text and "No model installed" not in text
    assert "refusals" in text and "charge" in text  # the breaker table names the refused task
    assert "retraining needed" in text or "retrain:" in text  # the monitor's verdict
    assert "flow_failure_streak" in text  # the installed model's importances, by feature
    # failure rate per flow and per task, retries/fallbacks, exceptions, durations, breaker, live WR/precision,
    # calibration with counts, importances
    assert len([d for d in data if "image/png" in d]) >= 9
