"""The model's command line end to end: simulate -> import-runs -> train -> backtest."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from forewarn.cli import app
from forewarn.learning.backtest import PREDICTION_COLUMNS
from forewarn.learning.model import load_model
from forewarn.scoring import configured_model_key

runner = CliRunner()


@pytest.fixture(scope="module")
def filled_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite store holding 8,000 simulated runs, imported through the CLI."""
    tmp = tmp_path_factory.mktemp("cli-model")
    url = f"sqlite:///{tmp / 'store.db'}"
    csv = tmp / "history.csv"
    assert runner.invoke(app, ["simulate", "--runs", "8000", "--out", str(csv), "--seed", "4"]).exit_code == 0
    result = runner.invoke(app, ["import-runs", str(csv), "--db", url])
    assert result.exit_code == 0, result.output
    return url


class TestTrainAndBacktest:
    @pytest.mark.slow  # trains on a simulated history
    def test_train_saves_a_verified_model_with_its_manifest(self, filled_store: str, tmp_path: Path) -> None:
        """forewarn train writes model.joblib + manifest.json with backtest figures and points latest at it."""
        result = runner.invoke(app, ["train", "--db", filled_store, "--model-dir", str(tmp_path), "--folds", "2"])
        assert result.exit_code == 0, result.output
        assert "saved model" in result.output and "last_failed" in result.output
        _, manifest = load_model(tmp_path, key=configured_model_key())
        assert manifest.n_train_runs > 7000 and manifest.n_train_failures >= 20
        assert set(manifest.backtest_metrics) >= {"model", "last_failed", "smoothed_rate"}
        assert 0 < manifest.threshold < 1
        assert json.loads((tmp_path / "latest.json").read_text())["version"] == manifest.version

    @pytest.mark.slow  # trains on a simulated history
    def test_backtest_writes_json_and_predictions(self, filled_store: str, tmp_path: Path) -> None:
        """--json holds the figures of the model and both baselines; --predictions-out every scored run."""
        out_json, out_csv = tmp_path / "bt.json", tmp_path / "scored.csv"
        result = runner.invoke(
            app,
            [
                "backtest",
                "--db",
                filled_store,
                "--folds",
                "3",
                "--json",
                str(out_json),
                "--predictions-out",
                str(out_csv),
            ],
        )
        assert result.exit_code == 0, result.output
        figures = json.loads(out_json.read_text())
        for system in ("model", "last_failed", "smoothed_rate"):
            assert {
                "WR",
                "precision",
                "pr_auc",
                "roc_auc",
                "brier",
                "false_alarm_rate",
                "median_lead_time_seconds",
            } <= set(figures["overall"][system])
        assert figures["overall"]["model"]["pr_auc"] > figures["overall"]["last_failed"]["pr_auc"]
        spread = figures["overall"]["operating_point"]
        assert spread["rule"] == "precision" and spread["folds"] == 3
        assert all({"precision", "alert_share", "WR", "best_WR"} <= set(f["operating_point"]) for f in figures["folds"])
        assert "operating point per fold" in result.output and "best WR" in result.output
        scored = pd.read_csv(out_csv)
        assert list(scored.columns) == list(PREDICTION_COLUMNS)  # their spelling is pinned in test_backtest.py
        assert scored["fold"].nunique() == 3
        assert (scored["warned"] == (scored["risk"] >= scored["threshold"])).all()

    def test_train_on_an_empty_store_is_a_clear_error(self, sqlite_url: str, tmp_path: Path) -> None:
        """With no history, train says what to do instead of fitting a useless model."""
        result = runner.invoke(app, ["train", "--db", sqlite_url, "--model-dir", str(tmp_path)])
        assert result.exit_code == 2
        assert "forewarn import-runs" in result.output or "simulate" in result.output


class TestTrainingManifest:
    @pytest.mark.slow  # trains on a simulated history
    def test_feature_windows_travel_with_the_model(self, tmp_path: Path) -> None:
        """train_and_save stores its FeatureConfig in the manifest; live scoring reads the same windows."""
        from datetime import timedelta

        from forewarn.history.simulate import history_to_runs_frame, simulate_history
        from forewarn.learning.features import FeatureConfig
        from forewarn.learning.training import train_and_save
        from forewarn.scoring.registry import feature_config_of

        runs = history_to_runs_frame(simulate_history(6000, seed=2))
        config = FeatureConfig(lookback=timedelta(days=10), recent_runs=5, global_window=timedelta(hours=3))
        result = train_and_save(
            runs, model_dir=tmp_path, backtest=False, feature_config=config, key=configured_model_key(create=True)
        )
        assert result.backtest is None and result.manifest.backtest_metrics is None
        assert feature_config_of(result.manifest) == config
        assert FeatureConfig.from_dict(None) == FeatureConfig()
