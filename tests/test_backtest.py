"""Walk-forward backtest on simulated history: honest folds, exact outputs, and a model that beats baselines."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from forewarn.errors import ConfigurationError, InsufficientHistoryError
from forewarn.history.simulate import (
    history_to_attempts_frame,
    history_to_runs_frame,
    simulate_history,
    simulated_attempts,
)
from forewarn.learning.backtest import (
    COMPARISON_COLUMNS,
    PREDICTION_COLUMNS,
    BacktestResult,
    compare_families,
    prepare_history,
    walk_forward_backtest,
)
from forewarn.learning.features import build_features, failure_labels
from forewarn.learning.metrics import operating_point, warning_metrics

N_RUNS = 24_000


@pytest.fixture(scope="module")
def history() -> tuple[pd.DataFrame, pd.DataFrame]:
    """About two months of simulated runs of 12 flows, with their task attempts."""
    raw = simulate_history(N_RUNS, seed=4)
    return history_to_runs_frame(raw), history_to_attempts_frame(simulated_attempts(raw, seed=4))


@pytest.fixture(scope="module")
def result(history: tuple[pd.DataFrame, pd.DataFrame]) -> BacktestResult:
    """One HGB backtest with three folds, shared by the read-only tests."""
    runs, attempts = history
    return walk_forward_backtest(runs, attempts, n_folds=3)


def _labelled(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["flow_run_id"].map(failure_labels(runs)).notna()]


@pytest.mark.slow  # a walk-forward backtest on simulated history: 10-20 s each here
class TestModelBeatsBaselines:
    """On held-out windows the model ranks failures better than both simple rules."""

    def test_pr_auc_beats_both_baselines_overall(self, result: BacktestResult) -> None:
        """Pooled over all test windows, PR-AUC is higher than last_failed's and smoothed_rate's."""
        model = result.overall["model"]["pr_auc"]
        assert model > result.overall["last_failed"]["pr_auc"] + 0.05
        assert model > result.overall["smoothed_rate"]["pr_auc"] + 0.05

    def test_pr_auc_beats_both_baselines_in_every_fold(self, result: BacktestResult) -> None:
        """Not only on average: each window on its own."""
        for fold in result.folds:
            assert fold["model_pr_auc"] > fold["last_failed_pr_auc"], fold
            assert fold["model_pr_auc"] > fold["smoothed_rate_pr_auc"], fold

    def test_metrics_are_complete(self, result: BacktestResult) -> None:
        """Every documented metric is reported for the model and the baselines."""
        keys = {
            "runs",
            "failures",
            "warnings",
            "WR",
            "precision",
            "false_alarm_rate",
            "pr_auc",
            "roc_auc",
            "brier",
            "median_lead_time_seconds",
            "base_rate",
        }
        for system in ("model", "last_failed", "smoothed_rate"):
            assert keys <= set(result.overall[system])
        assert result.overall["model"]["runs"] == len(result.predictions)
        assert result.overall["model"]["median_lead_time_seconds"] > 0


@pytest.mark.slow  # a walk-forward backtest on simulated history: 10-20 s each here
class TestFoldsAreHonest:
    """No fold learns from a run that had not ended when its window began."""

    def test_training_runs_ended_before_the_window(self, result: BacktestResult) -> None:
        """The last training run ended before the cutoff, which is the window's start with lead 0."""
        for fold in result.folds:
            assert fold["skipped"] is None
            assert fold["train_cutoff"] == fold["test_start"]
            assert fold["train_last_end"] < fold["train_cutoff"]

    def test_training_counts_match_runs_ended_before_the_window(
        self, result: BacktestResult, history: tuple[pd.DataFrame, pd.DataFrame]
    ) -> None:
        """Recounted from the raw runs: training = labelled runs with end_time < window start."""
        labelled = _labelled(history[0])
        straddling = 0
        for fold in result.folds:
            ended = labelled["end_time"] < fold["test_start"]
            assert fold["n_train_runs"] == int(ended.sum())
            straddling += int(((labelled["scheduled_start"] < fold["test_start"]) & ~ended).sum())
        assert straddling > 0  # some runs were scheduled before a window but still running: left out

    def test_windows_are_consecutive_after_the_training_share(self, result: BacktestResult) -> None:
        """Windows tile the runs after the first min_train_fraction, in equal numbers, without gaps or overlap."""
        starts = [f["test_start"] for f in result.folds]
        ends = [f["test_end"] for f in result.folds]
        assert starts[1:] == ends[:-1]
        labelled = result.params["labelled_runs"]
        tested = [f["n_test_runs"] for f in result.folds]
        assert sum(tested) == labelled - int(labelled * 0.4)
        assert max(tested) - min(tested) <= 1

    def test_predictions_fall_inside_their_window(self, result: BacktestResult) -> None:
        """Each scored run was scheduled inside its fold's window and scored once."""
        preds = result.predictions
        assert preds["run_id"].is_unique
        for fold in result.folds:
            rows = preds[preds["fold"] == fold["fold"]]
            assert len(rows) == fold["n_test_runs"]
            assert (rows["scheduled_start"] >= fold["test_start"]).all()
            assert (rows["scheduled_start"] <= fold["test_end"]).all()
            assert (rows["threshold"] == fold["threshold"]).all()

    def test_lead_moves_the_training_cutoff_back(self, history: tuple[pd.DataFrame, pd.DataFrame]) -> None:
        """With a lead, training stops at window start - lead, and lead times are at least the lead."""
        runs = history[0].iloc[:12_000]
        lead = timedelta(minutes=30)
        res = walk_forward_backtest(runs, n_folds=2, lead=lead, family="logreg")
        for fold in res.folds:
            assert fold["train_cutoff"] == fold["test_start"] - lead
            assert fold["train_last_end"] < fold["train_cutoff"]
        assert res.overall["model"]["median_lead_time_seconds"] >= lead.total_seconds()
        assert res.params["lead_seconds"] == 1800.0


class TestFeaturesOnce:
    """Features are computed once for the whole history: a run's features do not depend on the fold."""

    @pytest.mark.parametrize("share", [0.45, 0.8])
    def test_a_rows_features_are_what_the_store_knew_at_any_later_time(self, share: float) -> None:
        """Recomputed from the history a store held at a later moment (later runs absent, runs not yet
        ended still running, attempts not yet ended absent), every earlier run's features are the same
        as in the whole history's table the folds slice."""
        raw = simulate_history(4_000, seed=6)
        runs, attempts = history_to_runs_frame(raw), history_to_attempts_frame(simulated_attempts(raw, seed=6))
        prep = prepare_history(runs, attempts)
        cut = pd.Timestamp(int(prep.sched[int(len(prep.sched) * share)]), tz="UTC")
        known = runs[runs["scheduled_start"] < cut].copy()
        going = ~(known["end_time"] < cut)
        known.loc[going, "end_time"] = pd.NaT
        known.loc[going, "state"] = "RUNNING"
        known.loc[known["start_time"] >= cut, "start_time"] = pd.NaT
        known_attempts = attempts[attempts["end_time"] < cut]
        targets = prep.runs.loc[prep.runs["_sched"] < cut].drop(columns=["_label", "_sched"])
        assert going.any() and len(targets) > 1_000
        then = build_features(targets, known, known_attempts)
        pd.testing.assert_frame_equal(then, prep.X.loc[then.index])


@pytest.mark.slow  # a walk-forward backtest on simulated history: 10-20 s each here
class TestOperatingPointPerFold:
    """Each fold reports where its threshold landed; the overall spread sums the folds up."""

    def test_fold_operating_point_matches_its_predictions(self, result: BacktestResult) -> None:
        """Recomputed from the fold's prediction rows, against the model's rule and target."""
        for fold in result.folds:
            rows = result.predictions[result.predictions["fold"] == fold["fold"]]
            expected = operating_point(rows["failed"], rows["warned"], rows["risk"], "precision", target_precision=0.5)
            assert fold["operating_point"] == expected
            assert np.median(fold["slice_thresholds"]) == fold["threshold"]

    def test_spread_is_the_folds_range(self, result: BacktestResult) -> None:
        """overall["operating_point"]: the rule, its target, [min, max] of each figure, folds on target."""
        spread = result.overall["operating_point"]
        points = [f["operating_point"] for f in result.folds]
        assert (spread["rule"], spread["target_precision"], spread["folds"]) == ("precision", 0.5, len(points))
        precisions = [p["precision"] for p in points]
        assert spread["precision"] == [min(precisions), max(precisions)]
        assert spread["folds_on_target"] == sum(p["on_target"] for p in points)
        assert json.loads(json.dumps(result.to_json()))["overall"]["operating_point"]["folds"] == len(points)


@pytest.mark.slow  # a walk-forward backtest on simulated history: 10-20 s each here
class TestOutputs:
    """The result has exactly the documented shape and serialises to JSON."""

    def test_prediction_columns_are_exact(self, result: BacktestResult) -> None:
        """run_id, flow_name, scheduled_start, fold, risk, threshold, warned, failed, then the baselines."""
        assert tuple(result.predictions.columns) == PREDICTION_COLUMNS
        assert PREDICTION_COLUMNS[:8] == (
            "run_id",
            "flow_name",
            "scheduled_start",
            "fold",
            "risk",
            "threshold",
            "warned",
            "failed",
        )
        preds = result.predictions
        np.testing.assert_array_equal(preds["warned"], preds["risk"] >= preds["threshold"])
        assert set(preds["failed"].unique()) <= {0, 1}
        assert str(preds["scheduled_start"].dtype) == "datetime64[ns, UTC]"

    def test_to_json_is_serialisable(self, result: BacktestResult) -> None:
        """to_json() is plain JSON: no NaN, no numpy types, times as ISO text."""
        text = json.dumps(result.to_json(include_predictions=True), allow_nan=False)
        back = json.loads(text)
        assert back["overall"]["model"]["pr_auc"] == pytest.approx(result.overall["model"]["pr_auc"])
        assert back["folds"][0]["test_start"].startswith(str(result.folds[0]["test_start"].year))
        assert len(back["predictions"]) == len(result.predictions)

    def test_per_flow_figures_are_warning_metrics_per_flow(self, result: BacktestResult) -> None:
        """Each flow's PR-AUC, WR, precision and warnings are warning_metrics() on that flow's rows."""
        for flow, rows in result.predictions.groupby("flow_name"):
            for system, (risk, warned) in {
                "model": ("risk", "warned"),
                "last_failed": ("last_failed_risk", "last_failed_warned"),
            }.items():
                m = warning_metrics(rows["failed"], rows[warned], rows[risk])
                got = result.per_flow.loc[flow]
                for key in ("pr_auc", "WR", "precision"):
                    expected = np.nan if m[key] is None else m[key]
                    assert got[f"{system}_{key}"] == pytest.approx(expected, abs=1e-12, nan_ok=True)
                assert got[f"{system}_warnings"] == m["warnings"]

    def test_per_flow_rows(self, result: BacktestResult) -> None:
        """One row per flow, counts adding up to the whole."""
        per_flow = result.per_flow
        assert per_flow["runs"].sum() == len(result.predictions)
        assert set(per_flow.index) == set(result.predictions["flow_name"])
        assert {"model_pr_auc", "last_failed_pr_auc", "smoothed_rate_pr_auc", "model_WR"} <= set(per_flow)

    def test_escape_rate_with_attempts(self, result: BacktestResult) -> None:
        """With attempt telemetry, ER is the share of test runs that met a failed attempt and completed."""
        escape = result.overall["escape"]
        assert escape["runs_with_failed_attempt"] > 0
        assert 0.0 < escape["ER"] < 1.0

    def test_run_level_history_has_no_escape_rate(self, history: tuple[pd.DataFrame, pd.DataFrame]) -> None:
        """Imported history without attempts backtests fine; ER is None."""
        res = walk_forward_backtest(history[0].iloc[:10_000], None, n_folds=2, family="logreg")
        assert res.overall["escape"]["ER"] is None
        assert res.overall["model"]["pr_auc"] is not None

    def test_progress_reports_each_fold(self, history: tuple[pd.DataFrame, pd.DataFrame]) -> None:
        """progress(done, total) is called before the first fold and after each one."""
        calls: list[tuple[int, int]] = []
        walk_forward_backtest(history[0].iloc[:10_000], n_folds=2, family="logreg", progress=lambda *a: calls.append(a))
        assert calls == [(0, 2), (1, 2), (2, 2)]


@pytest.mark.slow  # a walk-forward backtest on simulated history: 10-20 s each here
class TestCompareFamilies:
    """compare_families() puts families and baselines side by side on the same folds."""

    def test_rows_and_columns(self, history: tuple[pd.DataFrame, pd.DataFrame]) -> None:
        """One row per family and per baseline, the documented columns."""
        table = compare_families(history[0].iloc[:10_000], families=("logreg",), n_folds=2)
        assert list(table.index) == ["logreg", "last_failed", "smoothed_rate"]
        assert tuple(table.columns) == COMPARISON_COLUMNS

    def test_unknown_keyword_is_refused(self, history: tuple[pd.DataFrame, pd.DataFrame]) -> None:
        """A misspelt option is an error, not silently ignored."""
        with pytest.raises(TypeError, match="n_fold"):
            compare_families(history[0], n_fold=3)


class TestRefusals:
    """Bad options and too little history are refused with clear errors."""

    def test_too_little_history(self, history: tuple[pd.DataFrame, pd.DataFrame]) -> None:
        """When no fold has enough history to train, InsufficientHistoryError says why."""
        with pytest.raises(InsufficientHistoryError, match="no backtest fold could be trained") as caught:
            walk_forward_backtest(history[0].iloc[:300], n_folds=2)
        message = str(caught.value)
        assert "training runs / failures per fold 0: " in message and ", 1: " in message
        assert message.count("Collect more history") == 1  # the advice once, not once per fold

    @pytest.mark.parametrize(
        ("kwargs", "setting"), [({"n_folds": 0}, "n_folds"), ({"min_train_fraction": 1.0}, "min_train_fraction")]
    )
    def test_bad_options(self, history: tuple[pd.DataFrame, pd.DataFrame], kwargs: dict, setting: str) -> None:
        """Out-of-range fold settings raise ConfigurationError naming them."""
        with pytest.raises(ConfigurationError, match=setting):
            walk_forward_backtest(history[0].iloc[:2_000], **kwargs)
