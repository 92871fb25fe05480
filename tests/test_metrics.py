"""Warning metrics and the escape rate, checked exactly on tiny hand-made inputs."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from forewarn.learning._json import jsonable as _jsonable
from forewarn.learning.metrics import (
    average_precision_by_group,
    best_wr,
    escape_rate,
    operating_point,
    warning_metrics,
)


class TestWarningMetrics:
    """warning_metrics() follows the definitions in its module docstring."""

    def test_counts_and_ratios_are_exact(self) -> None:
        """WR, precision and false-alarm rate come from the four counts."""
        failed = [1, 1, 1, 0, 0, 0, 0, 0]
        warned = [1, 1, 0, 1, 0, 0, 0, 0]
        risk = [0.9, 0.8, 0.2, 0.7, 0.3, 0.1, 0.1, 0.0]
        m = warning_metrics(failed, warned, risk)
        assert (m["runs"], m["failures"], m["warnings"]) == (8, 3, 3)
        assert (m["true_warnings"], m["false_warnings"]) == (2, 1)
        assert m["WR"] == pytest.approx(2 / 3)
        assert m["precision"] == pytest.approx(2 / 3)
        assert m["false_alarm_rate"] == pytest.approx(1 / 5)
        assert m["base_rate"] == pytest.approx(3 / 8)

    def test_ranking_and_probability_scores(self) -> None:
        """PR-AUC, ROC-AUC and Brier score match their textbook values."""
        failed = [1, 0, 1, 0]
        risk = [0.9, 0.8, 0.4, 0.1]
        m = warning_metrics(failed, [1, 1, 0, 0], risk)
        # ranked: 1 (P=1/1), 0, 1 (P=2/3), 0 -> AP = (1 + 2/3) / 2
        assert m["pr_auc"] == pytest.approx((1 + 2 / 3) / 2)
        # positive beats negative in 3 of 4 pairs
        assert m["roc_auc"] == pytest.approx(0.75)
        assert m["brier"] == pytest.approx((0.01 + 0.64 + 0.36 + 0.01) / 4)

    def test_median_lead_time_over_warned_failures_only(self) -> None:
        """Lead times of misses and of false alarms do not count."""
        m = warning_metrics([1, 1, 1, 0], [1, 1, 0, 1], [0.9, 0.8, 0.1, 0.7], lead_seconds=[10.0, 30.0, 999.0, 500.0])
        assert m["median_lead_time_seconds"] == 20.0

    def test_no_failures_is_undefined_not_an_error(self) -> None:
        """Without failures, WR, PR-AUC and ROC-AUC are None; the rest still holds."""
        m = warning_metrics([0, 0, 0], [0, 1, 0], [0.1, 0.6, 0.2], lead_seconds=[1, 2, 3])
        assert m["WR"] is None and m["pr_auc"] is None and m["roc_auc"] is None
        assert m["precision"] == 0.0
        assert m["false_alarm_rate"] == pytest.approx(1 / 3)
        assert m["median_lead_time_seconds"] is None
        assert m["base_rate"] == 0.0

    def test_all_failures_and_no_warnings(self) -> None:
        """Only failures: false-alarm rate and ROC-AUC undefined; no warnings: precision undefined."""
        m = warning_metrics([1, 1], [0, 0], [0.2, 0.3])
        assert m["false_alarm_rate"] is None and m["roc_auc"] is None and m["precision"] is None
        assert m["WR"] == 0.0
        assert m["pr_auc"] == pytest.approx(1.0)

    def test_empty_input(self) -> None:
        """No runs at all gives zeros and Nones, never a crash."""
        m = warning_metrics([], [], [])
        assert m["runs"] == 0 and m["brier"] is None and m["base_rate"] is None

    @pytest.mark.parametrize(
        "failed",
        [[1, 0, 1], [True, False, True], np.array([1.0, 0.0, 1.0]), pd.Series([1, 0, 1], dtype="Int64")],
    )
    def test_accepts_equivalent_label_encodings(self, failed: object) -> None:
        """1/0, booleans, floats and nullable integers mean the same thing."""
        m = warning_metrics(failed, [1, 0, 0], [0.8, 0.2, 0.4])
        assert (m["failures"], m["true_warnings"]) == (2, 1)

    def test_length_mismatch_is_refused(self) -> None:
        """Arrays of different lengths are a caller error."""
        with pytest.raises(ValueError, match="differ in length"):
            warning_metrics([1, 0], [1], [0.5, 0.5])

    def test_result_is_json_serialisable(self) -> None:
        """Every value is a plain number or None."""
        json.dumps(warning_metrics([0, 0], [0, 0], [float("nan"), 0.1]), allow_nan=False)


class TestOperatingPoint:
    """best_wr() and operating_point(): where a threshold landed against its target and the best possible."""

    FAILED = [1, 0, 1, 1, 0, 0, 1, 0, 0, 0]
    RISK = [0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]

    @pytest.mark.parametrize(("target", "expected"), [(1.0, 0.25), (0.75, 0.75), (0.5, 1.0), (0.3, 1.0)])
    def test_best_wr_at_precision(self, target: float, expected: float) -> None:
        """The most failures any threshold warns with precision >= target, over all failures."""
        assert best_wr(self.FAILED, self.RISK, "precision", target_precision=target) == expected

    @pytest.mark.parametrize(("budget", "expected"), [(0.1, 0.25), (0.3, 0.5), (0.4, 0.75), (0.05, 0.0)])
    def test_best_wr_within_budget(self, budget: float, expected: float) -> None:
        """The most failures any threshold warns while warning at most the budget's share of runs."""
        assert best_wr(self.FAILED, self.RISK, "budget", alert_budget=budget) == expected

    def test_ties_are_warned_whole(self) -> None:
        """A threshold warns every run at its risk: a tied group cannot be split to reach the target."""
        assert best_wr([1, 0, 1, 0], [0.5, 0.5, 0.5, 0.5], "precision", target_precision=0.6) == 0.0

    def test_no_failures_has_no_best(self) -> None:
        """Without failures there is no WR to compare with: None."""
        assert best_wr([0, 0], [0.1, 0.2], "precision") is None
        assert operating_point([0, 0], [True, False], [0.1, 0.2], "precision")["on_target"] is None

    def test_precision_rule_on_target(self) -> None:
        """Precision within 0.1 of the target and WR at least 80 % of the best: on target."""
        warned = np.asarray(self.RISK) >= 0.7  # precision 3/4, WR 3/4; best at 0.75 is 3/4
        op = operating_point(self.FAILED, warned, self.RISK, "precision", target_precision=0.7)
        assert (op["precision"], op["alert_share"], op["WR"], op["best_WR"]) == (0.75, 0.4, 0.75, 0.75)
        assert op["WR_to_best"] == 1.0 and op["on_target"] is True

    @pytest.mark.parametrize(("cut", "target"), [(0.9, 0.5), (0.1, 0.6), (0.8, 0.5)])
    def test_precision_rule_off_target(self, cut: float, target: float) -> None:
        """Too high (WR under 80 % of the best) or too low (precision off by more than 0.1): off target."""
        warned = np.asarray(self.RISK) >= cut
        assert (
            operating_point(self.FAILED, warned, self.RISK, "precision", target_precision=target)["on_target"] is False
        )

    @pytest.mark.parametrize(("cut", "on_target"), [(0.6, True), (0.9, False), (0.4, False)])
    def test_budget_rule_within_thirty_percent(self, cut: float, on_target: bool) -> None:
        """With the budget rule, the warned share must lie within ±30 % of the budget (here 0.4)."""
        warned = np.asarray(self.RISK) >= cut
        op = operating_point(self.FAILED, warned, self.RISK, "budget", alert_budget=0.4)
        assert op["on_target"] is on_target


class TestAveragePrecisionByGroup:
    """average_precision_by_group() is scikit-learn's average precision within each group, all at once."""

    @pytest.mark.parametrize("decimals", [1, 2, 6])  # coarse risks make many ties inside a group
    def test_equals_sklearn_per_group(self, decimals: int) -> None:
        """Every group's value equals average_precision_score on its rows; NaN for a group without failures."""
        rng = np.random.default_rng(decimals)
        groups = rng.integers(0, 60, 3_000)
        failed = (rng.random(3_000) < 0.15).astype(float)
        failed[groups == 7] = 0.0
        risk = np.round(rng.random(3_000), decimals)
        risk[:5] = np.nan  # counts as 0, as in warning_metrics
        got = average_precision_by_group(groups, failed, risk)
        clean = np.nan_to_num(risk, nan=0.0)
        for g in range(60):
            rows = groups == g
            if failed[rows].sum() == 0:
                assert math.isnan(got[g])
            else:
                assert got[g] == pytest.approx(average_precision_score(failed[rows], clean[rows]), abs=1e-12)
        assert math.isnan(got[7])


class TestEscapeRate:
    """escape_rate() is the share of runs that met a failed attempt and still completed."""

    def _runs(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "flow_run_id": ["a", "b", "c", "d", "e"],
                "state": ["COMPLETED", "FAILED", "COMPLETED", "COMPLETED", "RUNNING"],
            }
        )

    def test_exact_ratio(self) -> None:
        """Failure and timeout attempts count; fallback rows and success do not; unfinished runs excluded."""
        attempts = pd.DataFrame(
            {
                "flow_run_id": ["a", "a", "b", "c", "d", "e"],
                "outcome": ["failure", "success", "timeout", "success", "fallback", "failure"],
            }
        )
        er = escape_rate(self._runs(), attempts)
        assert er == {"runs_with_attempts": 4, "runs_with_failed_attempt": 2, "escaped_runs": 1, "ER": 0.5}

    @pytest.mark.parametrize("attempts", [None, pd.DataFrame(columns=["flow_run_id", "outcome"])])
    def test_no_attempt_telemetry_is_none(self, attempts: pd.DataFrame | None) -> None:
        """Imported run-level history has no attempts: ER is None."""
        assert escape_rate(self._runs(), attempts)["ER"] is None

    def test_no_failed_attempts_is_none(self) -> None:
        """Telemetry without a single failed attempt leaves ER undefined."""
        attempts = pd.DataFrame({"flow_run_id": ["a"], "outcome": ["success"]})
        er = escape_rate(self._runs(), attempts)
        assert er["ER"] is None and er["runs_with_attempts"] == 1


class TestJsonable:
    """Results are turned into plain JSON values."""

    def test_nan_numpy_and_times(self) -> None:
        """NaN becomes None, numpy scalars Python numbers, timestamps ISO text."""
        value = {
            "a": np.float64("nan"),
            "b": np.int64(3),
            "c": pd.Timestamp("2026-01-01", tz="UTC"),
            "d": [np.bool_(True), math.inf],
            "e": pd.NaT,
        }
        assert _jsonable(value) == {"a": None, "b": 3, "c": "2026-01-01T00:00:00+00:00", "d": [True, None], "e": None}
