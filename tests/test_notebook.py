"""The backtest report notebook runs top to bottom on a store filled like the demo's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "backtest_report.ipynb"


@pytest.mark.slow
def test_backtest_report_notebook_executes(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every cell runs without error and the report shows the model beside both baselines."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
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
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute(env=dict(os.environ))

    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]
    assert not [out for out in outputs if out.get("output_type") == "error"]
    text = "\n".join(str(out.get("data", {}).get("text/markdown", "")) + str(out.get("text", "")) for out in outputs)
    assert "| model |" in text and "| last_failed |" in text and "| smoothed_rate |" in text
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(images) >= 4  # PR curve, calibration, warnings over time, top features
