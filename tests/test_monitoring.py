"""Live monitoring: exact figures from hand-made stores, drift arithmetic, the retrain advice, the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from forewarn.cli import app
from forewarn.learning.drift import (
    RiskReference,
    population_stability,
    rate_difference_interval,
    risk_reference,
    wilson_interval,
)
from forewarn.learning.model import ModelManifest
from forewarn.learning.monitoring import MonitorReference, live_outcomes, monitor_report, over_time, retrain_advice
from forewarn.records import FlowRunRecord, PredictionRecord, RunState
from forewarn.scoring.monitor import installed_reference, monitor_store
from forewarn.store import TelemetryStore

T0 = datetime(2026, 3, 2, 9, tzinfo=timezone.utc)  # a Monday
NOW = T0 + timedelta(days=10)
runner = CliRunner()


def predict(store: TelemetryStore, run_id: str, flow: str, at: datetime, risk: float, **kw: object) -> None:
    kw.setdefault("model_version", "m1")
    kw.setdefault("scheduled_start", at)
    store.record_prediction(PredictionRecord(run_id, flow, at, risk, 0.5, **kw))  # type: ignore[arg-type]


def run(store: TelemetryStore, run_id: str, flow: str, start: datetime, state: RunState | None) -> None:
    store.record_flow_run_start(FlowRunRecord(run_id, flow, start_time=start, scheduled_start=start))
    if state is not None:
        store.record_flow_run_end(run_id, state, start + timedelta(minutes=30))


def fill(store: TelemetryStore) -> None:
    """Nine runs, each a case of the definitions (threshold 0.5; risk >= 0.5 is a warning).

    etl:     a warned by the forecast 2 h ahead (the hook at start did not), FAILED  -> true warning
             b warned by the hook, COMPLETED                                         -> false alarm
    billing: c not warned, FAILED (missed); d not warned, COMPLETED; e warned, CANCELLED (not labelled);
             f warned, still RUNNING (pending); g warned only after it ended (does not count);
             h warned by another model version (not this model's); i FAILED, never scored.
    Day 0: a, b; day 1: nothing; day 2: c..i.
    """
    day2 = T0 + timedelta(days=2)
    run(store, "a", "etl", T0, RunState.FAILED)
    predict(store, "a", "etl", T0 - timedelta(hours=2), 0.8, source="forecast", scheduled_start=T0)
    predict(store, "a", "etl", T0 + timedelta(seconds=1), 0.3, scheduled_start=T0)
    run(store, "b", "etl", T0 + timedelta(hours=1), RunState.COMPLETED)
    predict(store, "b", "etl", T0 + timedelta(hours=1), 0.6)
    for run_id, state, risk in [("c", RunState.FAILED, 0.2), ("d", RunState.COMPLETED, 0.1),
                                ("e", RunState.CANCELLED, 0.9), ("f", None, 0.7)]:
        run(store, run_id, "billing", day2, state)
        predict(store, run_id, "billing", day2, risk)
    run(store, "g", "billing", day2, RunState.COMPLETED)
    predict(store, "g", "billing", day2 + timedelta(hours=1), 0.9)
    run(store, "h", "billing", day2, RunState.FAILED)
    predict(store, "h", "billing", day2, 0.9, model_version="m0")
    run(store, "i", "billing", day2, RunState.FAILED)


REFERENCE = MonitorReference("m1", (T0 - timedelta(days=90), T0), train_runs=1000, train_failures=100)


class TestLiveOutcomes:
    def test_one_row_per_scored_run_with_its_verdict(self, sqlite_url: str) -> None:
        """A run is warned if any counting prediction warned; its risk is the last one's; late ones do not count."""
        store = TelemetryStore(sqlite_url)
        fill(store)
        out = live_outcomes(store.predictions(), store.runs(), model_version="m1").set_index("flow_run_id")
        assert sorted(out.index) == ["a", "b", "c", "d", "e", "f"]
        assert out.loc["a", ["predictions", "risk", "warned", "failed"]].tolist() == [2, 0.3, True, True]
        assert out.loc["a", "lead_seconds"] == 2 * 3600 + 30 * 60  # end - the forecast's warning
        assert out.loc["e", ["warned", "labelled", "pending"]].tolist() == [True, False, False]
        assert out.loc["f", ["state", "labelled", "pending"]].tolist() == ["RUNNING", False, True]

    def test_exact_figures_overall_and_per_flow(self, sqlite_url: str) -> None:
        """WR, precision and false alarms over labelled runs, exactly as the README defines them."""
        store = TelemetryStore(sqlite_url)
        fill(store)
        report = monitor_report(store.predictions(), store.runs(), REFERENCE, since=T0 - timedelta(days=1), until=NOW)
        assert report.overall == {
            "scored": 6, "pending": 1, "labelled": 4, "failures": 2, "warnings": 2, "true_warnings": 1,
            "false_alarms": 1, "WR": 0.5, "precision": 0.5, "false_alarm_rate": 0.5,
            "median_lead_time_seconds": 9000.0,
        }
        flows = report.per_flow
        assert list(flows.index) == ["billing", "etl"]
        etl = flows.loc["etl", ["labelled", "failures", "warnings", "WR", "precision", "false_alarm_rate"]]
        assert etl.tolist() == [2, 1, 2, 1.0, 0.5, 1.0]
        assert flows.loc["billing", ["scored", "pending", "failures", "warnings", "WR"]].tolist() == [4, 1, 1, 0, 0.0]
        assert flows.loc["billing", "precision"] is None

    def test_daily_buckets_show_a_day_without_runs_as_a_gap(self, sqlite_url: str) -> None:
        """Every day of the window is a row; a day with no scored run has zeros and undefined rates."""
        store = TelemetryStore(sqlite_url)
        fill(store)
        report = monitor_report(store.predictions(), store.runs(), REFERENCE, since=T0.replace(hour=0),
                                until=T0.replace(hour=0) + timedelta(days=3), freq="day")
        table = report.over_time
        assert [t.strftime("%m-%d") for t in table.index] == ["03-02", "03-03", "03-04"]
        assert table["scored"].tolist() == [2, 0, 4]
        assert table["WR"].tolist() == [1.0, None, 0.0]

    def test_weekly_buckets_start_on_monday(self) -> None:
        """Weeks run Monday to Sunday (UTC), labelled by their Monday."""
        sunday_night, monday = pd.Timestamp("2026-03-08 23:00", tz="UTC"), pd.Timestamp("2026-03-09", tz="UTC")
        outcomes = pd.DataFrame({"time": [sunday_night, monday], "labelled": [True, True], "failed": [True, False],
                                 "warned": [True, True], "pending": [False, False], "risk": [0.9, 0.9],
                                 "lead_seconds": [1.0, np.nan]})
        table = over_time(outcomes, freq="week")
        assert [f"{t:%Y-%m-%d}" for t in table.index] == ["2026-03-02", "2026-03-09"]
        assert table["precision"].tolist() == [1.0, 0.0]

    def test_without_a_version_every_model_counts(self, sqlite_url: str) -> None:
        """With no reference, predictions of every model version count (run h joins)."""
        store = TelemetryStore(sqlite_url)
        fill(store)
        out = live_outcomes(store.predictions(), store.runs())
        assert "h" in set(out["flow_run_id"])


class TestDrift:
    def test_psi_of_a_known_shift(self) -> None:
        """PSI = sum (live - ref) ln(live / ref): half/half moved to 3/4, 1/4 gives 0.2747."""
        reference = RiskReference((0.5,), (0.5, 0.5), runs=100)
        expected = 0.25 * np.log(1.5) + (-0.25) * np.log(0.5)
        assert population_stability(reference, [0.7, 0.8, 0.9, 0.2]) == pytest.approx(expected)
        assert population_stability(reference, [0.1, 0.9]) == pytest.approx(0.0)

    def test_an_empty_live_bin_is_floored_not_infinite(self) -> None:
        reference = RiskReference((0.5,), (0.5, 0.5), runs=100)
        psi = population_stability(reference, [0.9, 0.9])
        assert psi == pytest.approx((1 - 0.5) * np.log(1 / 0.5) + (1e-4 - 0.5) * np.log(1e-4 / 0.5))

    def test_reference_bins_hold_equal_shares(self) -> None:
        """Decile edges of 1000 distinct risks put a tenth of them in each bin."""
        reference = risk_reference(np.linspace(0, 1, 1000))
        assert len(reference.edges) == 9 and reference.fractions == pytest.approx((0.1,) * 10)
        assert RiskReference.from_json(reference.to_json()) == reference

    @pytest.mark.parametrize("bad", [{"edges": [0.5]}, {"edges": [0.5], "fractions": [1.0], "runs": 3},
                                     {"edges": [0.6, 0.5], "fractions": [0.2, 0.3, 0.5], "runs": 3}])
    def test_a_malformed_reference_is_refused(self, bad: dict[str, object]) -> None:
        with pytest.raises(ValueError, match=r"edges|fractions"):
            RiskReference.from_json(bad)

    def test_newcombe_interval_matches_the_paper(self) -> None:
        """Newcombe (1998), table II, method 10: 56/70 - 48/80 is 0.0524 to 0.3339; 9/10 - 3/10 is 0.1705 to 0.8090."""
        assert rate_difference_interval(56, 70, 48, 80) == pytest.approx((0.0524, 0.3339), abs=1e-4)
        assert rate_difference_interval(9, 10, 3, 10) == pytest.approx((0.1705, 0.8090), abs=1e-4)
        assert rate_difference_interval(1, 0, 1, 2) is None

    def test_wilson_interval(self) -> None:
        """Wilson 95% interval of 81/263 is 0.2553 to 0.3662 (Newcombe 1998, part I, table I)."""
        assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)


def _drift(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {"live_risks": 500, "psi": 0.05, "live_runs": 500, "live_failures": 50,
                               "live_failure_rate": 0.1, "train_failure_rate": 0.1, "failure_rate_change": 0.0,
                               "failure_rate_change_ci": (-0.03, 0.03), "confidence": 0.95}
    return {**base, **overrides}


LIVE_OK = {"warnings": 40, "true_warnings": 24, "failures": 50}
WITH_BACKTEST = MonitorReference("m1", (None, None), 1000, 100, RiskReference((0.5,), (0.5, 0.5), 1000), 0.6, 0.5)


class TestRetrainAdvice:
    def test_stable_model_needs_no_retraining(self) -> None:
        advice = retrain_advice(WITH_BACKTEST, _drift(), LIVE_OK)
        assert (advice.retrain, advice.reasons, advice.notes) == (False, (), ())
        assert advice.headline == "no retraining needed"

    def test_risk_drift_recommends_retraining(self) -> None:
        advice = retrain_advice(WITH_BACKTEST, _drift(psi=0.31), LIVE_OK)
        assert advice.reasons == ("risk distribution shifted: PSI 0.31 >= 0.25",)

    def test_a_failure_rate_change_outside_the_interval(self) -> None:
        drift = _drift(live_failure_rate=0.16, failure_rate_change=0.06, failure_rate_change_ci=(0.03, 0.09))
        assert retrain_advice(WITH_BACKTEST, drift, LIVE_OK).reasons == (
            "failure rate 16.0% now vs 10.0% in training (+6.0 points, 95% CI +3.0 to +9.0)",
        )

    def test_a_significant_but_tiny_change_is_not_a_reason(self) -> None:
        """Many runs make 1 point significant; under MIN_RATE_CHANGE (2 points) it is not acted on."""
        drift = _drift(live_failure_rate=0.11, failure_rate_change=0.01, failure_rate_change_ci=(0.005, 0.015))
        assert not retrain_advice(WITH_BACKTEST, drift, LIVE_OK).retrain

    def test_live_precision_below_the_backtest(self) -> None:
        """4 of 20 warnings true: Wilson upper bound 41.6% < backtest 60%."""
        advice = retrain_advice(WITH_BACKTEST, _drift(), {"warnings": 20, "true_warnings": 4, "failures": 8})
        assert advice.reasons == (
            "live precision 20.0% (4 of 20 warnings; 95% CI 8.1% to 41.6%) is below the backtest's 60.0%",
        )
        assert advice.notes == ("live WR: 8 failures, 10 needed",)

    def test_too_few_runs_is_a_note_not_a_verdict(self) -> None:
        advice = retrain_advice(WITH_BACKTEST, _drift(live_risks=3, psi=2.0, live_runs=3), LIVE_OK)
        assert not advice.retrain
        assert advice.notes == ("risk drift: 3 live risks, 50 needed", "failure-rate drift: 3 ended runs, 50 needed")

    def test_without_a_model(self) -> None:
        assert retrain_advice(None, _drift(), LIVE_OK).headline.startswith("no retraining needed (no model installed")


def install_manifest(model_dir: Path, reference: RiskReference | None, failures: int = 100) -> None:
    """A manifest.json as training writes it (nothing else: monitoring reads only the manifest)."""
    manifest = ModelManifest(
        version="m1", created_at=T0, family="hgb", feature_types={"flow_name": "categorical"},
        training_window=(T0 - timedelta(days=90), T0), n_train_runs=1000, n_train_failures=failures,
        threshold=0.5, threshold_rule="precision", threshold_params={}, sha256="0" * 64, library_versions={},
        backtest_metrics={"model": {"precision": 0.6, "WR": 0.5}},
        extra={"risk_reference": reference.to_json()} if reference else {},
    )
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "manifest.json").write_text(json.dumps(manifest.to_json()))


def drifted_store(url: str) -> TelemetryStore:
    """60 runs in the last week: risks all above 0.5 (training: half below), 30 of them FAILED (training 10%)."""
    store = TelemetryStore(url)
    for i in range(60):
        start = NOW - timedelta(days=6) + timedelta(hours=2 * i)
        run(store, f"r{i}", "etl", start, RunState.FAILED if i % 2 else RunState.COMPLETED)
        predict(store, f"r{i}", "etl", start, 0.7)
    return store


class TestMonitorStore:
    def test_drift_and_advice_from_the_store_and_the_manifest(self, sqlite_url: str, tmp_path: Path) -> None:
        """The installed model's manifest is the reference: PSI and the failure-rate change both fire."""
        install_manifest(tmp_path / "models", RiskReference((0.5,), (0.5, 0.5), 1000))
        report = monitor_store(drifted_store(sqlite_url), model_dir=tmp_path / "models", now=NOW)
        drift = report.drift
        assert (drift["live_risks"], drift["live_runs"], drift["live_failures"]) == (60, 60, 30)
        assert drift["psi"] == pytest.approx((1e-4 - 0.5) * np.log(1e-4 / 0.5) + 0.5 * np.log(2))
        assert drift["failure_rate_change"] == pytest.approx(0.4)
        assert report.advice.retrain
        assert [r.split(":")[0].split(" ")[0] for r in report.advice.reasons] == ["risk", "failure"]
        assert report.overall["precision"] == 0.5  # every run warned, half failed

    def test_a_model_without_a_risk_reference_skips_the_psi_with_a_note(self, sqlite_url: str, tmp_path: Path) -> None:
        install_manifest(tmp_path / "models", None)
        report = monitor_store(drifted_store(sqlite_url), model_dir=tmp_path / "models", now=NOW)
        assert report.drift["psi"] is None
        assert "records no training risk distribution" in report.advice.notes[0]

    def test_a_broken_manifest_is_named(self, tmp_path: Path) -> None:
        from forewarn.errors import ModelError

        (tmp_path / "manifest.json").write_text("{not json")
        with pytest.raises(ModelError, match=r"manifest\.json"):
            installed_reference(tmp_path)


class TestMonitorCommand:
    def test_tables_and_advice_at_80_columns(
        self, sqlite_url: str, tmp_path: Path, terminal_columns: Callable[[int], None], normalize: Callable[[str], str]
    ) -> None:
        """Every line fits 80 columns, figures and names stay whole, and the advice says why."""
        terminal_columns(80)
        install_manifest(tmp_path / "models", RiskReference((0.5,), (0.5, 0.5), 1000))
        store = drifted_store(sqlite_url)
        long_name = "a-flow-name-long-enough-to-fold-in-a-narrow-terminal"
        run(store, "x", long_name, NOW - timedelta(days=1), RunState.FAILED)
        predict(store, "x", long_name, NOW - timedelta(days=1), 0.9)
        out = tmp_path / "monitor.json"
        result = runner.invoke(app, ["monitor", "--db", sqlite_url, "--model-dir", str(tmp_path / "models"),
                                     "--until", NOW.isoformat(), "--bucket", "day", "--json", str(out)])
        assert result.exit_code == 0, result.output
        lines = [line for line in result.output.splitlines() if "figures written to" not in line]  # a tmp path
        assert max(len(line) for line in lines) <= 80
        text = normalize(result.output)
        assert "etl 60 0 30 60 100% 50% 30 100%" in text  # runs pend fail warn WR prec FA FAR
        lines = result.output.splitlines()
        first = next(i for i, line in enumerate(lines) if "a-flow" in line)
        last = next(i for i, line in enumerate(lines) if line.split()[:1] == ["etl"])
        name = "".join(line.split()[0] for line in lines[first:last])  # the name, folded in its own column
        assert name == long_name
        assert "retrain: risk distribution shifted: PSI" in text
        figures = json.loads(out.read_text())
        assert figures["retrain"] is True and figures["overall"]["scored"] == 61

    def test_a_bad_bucket_is_refused(self, sqlite_url: str) -> None:
        result = runner.invoke(app, ["monitor", "--db", sqlite_url, "--bucket", "month"])
        assert result.exit_code == 2 and "--bucket" in result.output


class TestTrainingRecordsTheReference:
    @pytest.mark.slow  # trains on a simulated history
    def test_the_manifest_holds_the_training_risk_distribution(self, tmp_path: Path) -> None:
        """Training saves the final model's risk deciles over its training runs; monitoring reads them back."""
        from forewarn.history.simulate import history_to_runs_frame, simulate_history
        from forewarn.learning.training import train_and_save
        from forewarn.scoring import configured_model_key

        runs = history_to_runs_frame(simulate_history(6000, seed=2))
        result = train_and_save(runs, model_dir=tmp_path, backtest=False, key=configured_model_key(create=True))
        reference = installed_reference(tmp_path).risk_reference  # type: ignore[union-attr]
        assert reference is not None and reference.runs == result.manifest.n_train_runs
        assert sum(reference.fractions) == pytest.approx(1.0)
        assert 5 <= len(reference.fractions) <= 10  # deciles, ties merged
        assert max(reference.fractions) < 0.35  # quantile bins: no bin holds most of the runs
