"""forewarn.scoring: the current model, the history window, and live scores equal to backtest scores."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from forewarn.errors import ChecksumMismatchError, FeatureSchemaError, ModelError
from forewarn.features import FeatureConfig, build_features, failure_labels
from forewarn.model import FailureWarningModel, ModelManifest, save_model
from forewarn.records import FlowRunRecord, RunState
from forewarn.scoring import (
    SCORE_COLUMNS,
    HistoryCache,
    clear_model_cache,
    feature_config_dict,
    feature_config_of,
    load_current_model,
    prediction_records,
    record_targets,
    score_runs,
)
from forewarn.simulate import (
    history_to_attempts_frame,
    history_to_runs_frame,
    simulate_history,
    simulated_attempts,
)
from forewarn.store import TelemetryStore

WINDOW = (pd.Timestamp("2026-01-01", tz="UTC"), pd.Timestamp("2026-02-01", tz="UTC"))


@pytest.fixture(scope="module")
def history() -> tuple[pd.DataFrame, pd.DataFrame]:
    """A simulated history of 4,000 runs (about ten days, 12 flows) and its task attempts."""
    raw = simulate_history(4_000, seed=11, include_cause=True)
    runs = history_to_runs_frame(raw.drop(columns="failure_cause"))
    attempts = history_to_attempts_frame(simulated_attempts(raw, seed=11))
    attempts["task_run_id"] = attempts["flow_run_id"] + ":" + attempts["task_name"]
    return runs, attempts


def fill(store: TelemetryStore, history: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    runs, attempts = history
    store.record_runs_frame(runs)
    store.record_attempts_frame(attempts)


@pytest.fixture(scope="module")
def trained(history: tuple[pd.DataFrame, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained as `forewarn train` does (features from the store's frames), saved; its directory."""
    directory = tmp_path_factory.mktemp("models")
    with TelemetryStore(f"sqlite:///{directory / 'train.db'}") as store:
        fill(store, history)
        runs, attempts = store.runs(), store.attempts()
    order = runs.sort_values("scheduled_start", kind="stable")
    X = build_features(order, runs, attempts)
    model = FailureWarningModel(family="logreg").fit(X, failure_labels(order))
    save_model(model, directory, training_window=WINDOW, extra={"feature_config": feature_config_dict(FeatureConfig())})
    return directory


@pytest.fixture
def store(sqlite_url: str, history: tuple[pd.DataFrame, pd.DataFrame]) -> TelemetryStore:
    """A fresh SQLite store holding the simulated history."""
    s = TelemetryStore(sqlite_url)
    fill(s, history)
    return s


@pytest.fixture(autouse=True)
def _fresh_model_cache() -> None:
    clear_model_cache()


def loaded(directory: Path | None) -> tuple[FailureWarningModel, ModelManifest]:
    result = load_current_model(directory)
    assert result is not None
    return result


class TestLoadCurrentModel:
    """load_current_model() finds, verifies and caches the installed model."""

    def test_no_model_is_none(self, tmp_path: Path) -> None:
        """An empty or missing model directory means no model, not an error."""
        assert load_current_model(tmp_path / "nothing-here") is None
        assert load_current_model(tmp_path) is None

    def test_default_directory_is_the_setting(self, trained: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without an argument it reads FOREWARN_MODEL_DIR."""
        from forewarn.settings import get_settings

        monkeypatch.setenv("FOREWARN_MODEL_DIR", str(trained))
        get_settings.cache_clear()
        _, manifest = loaded(None)
        assert manifest.version == json.loads((trained / "latest.json").read_text())["version"]

    def test_loaded_once_per_version(self, trained: Path) -> None:
        """A second call returns the cached model; the checksum is verified once per version."""
        first, _ = loaded(trained)
        second, _ = loaded(trained)
        assert first is second

    def test_a_newly_saved_model_is_picked_up(self, trained: Path, tmp_path: Path) -> None:
        """Saving a new version changes latest.json, and the next call loads the new model."""
        import shutil

        directory = tmp_path / "models"
        shutil.copytree(trained, directory)
        old, old_manifest = loaded(directory)
        new_manifest = save_model(old, directory, training_window=WINDOW)
        _, manifest = loaded(directory)
        assert manifest.version == new_manifest.version != old_manifest.version

    def test_tampered_artifact_is_refused(self, trained: Path, tmp_path: Path) -> None:
        """An artifact changed after saving fails its checksum and is not unpickled."""
        import shutil

        directory = tmp_path / "models"
        shutil.copytree(trained, directory)
        version = json.loads((directory / "latest.json").read_text())["version"]
        with open(directory / version / "model.joblib", "ab") as fh:
            fh.write(b"tampered")
        with pytest.raises(ChecksumMismatchError, match="forewarn train"):
            load_current_model(directory)

    def test_unknown_features_are_refused_before_unpickling(self, trained: Path, tmp_path: Path) -> None:
        """A model that needs a feature this forewarn does not build is a FeatureSchemaError."""
        import shutil

        directory = tmp_path / "models"
        shutil.copytree(trained, directory)
        version = json.loads((directory / "latest.json").read_text())["version"]
        manifest_path = directory / version / "manifest.json"
        manifest = json.loads(manifest_path.read_text())
        manifest["feature_types"]["retired_feature"] = "numeric"
        manifest_path.write_text(json.dumps(manifest))
        (directory / version / "model.joblib").write_bytes(b"not a pickle")  # never read
        manifest["sha256"] = __import__("hashlib").sha256(b"not a pickle").hexdigest()
        manifest_path.write_text(json.dumps(manifest))
        with pytest.raises(FeatureSchemaError, match="retired_feature"):
            load_current_model(directory)

    def test_broken_pointer_is_a_model_error(self, tmp_path: Path) -> None:
        """A latest.json that points nowhere is a ModelError that says to retrain."""
        (tmp_path / "latest.json").write_text('{"manifest": "gone/manifest.json"}')
        with pytest.raises(ModelError, match="forewarn train"):
            load_current_model(tmp_path)

    def test_feature_config_round_trips(self) -> None:
        """The feature configuration stored in a manifest comes back as the same FeatureConfig."""
        from types import SimpleNamespace

        config = FeatureConfig(lookback=timedelta(days=7), recent_runs=5, global_window=timedelta(hours=2))
        assert feature_config_of(SimpleNamespace(extra={"feature_config": feature_config_dict(config)})) == config  # type: ignore[arg-type]
        assert feature_config_of(SimpleNamespace(extra={})) == FeatureConfig()  # type: ignore[arg-type]


class TestLiveEqualsBacktest:
    """A run's live score equals its batch (training/backtest) score for the same history."""

    @pytest.mark.parametrize("cache", [False, True], ids=["cold", "warm"])
    def test_one_at_a_time_equals_batch(self, store: TelemetryStore, trained: Path, cache: bool) -> None:
        """Scoring sampled runs one by one against the store gives the batch risks to 1e-12."""
        model, manifest = loaded(trained)
        runs, attempts = store.runs(), store.attempts()
        batch = pd.Series(model.risk(build_features(runs, runs, attempts)), index=runs["flow_run_id"].to_numpy())
        rng = np.random.default_rng(3)
        picked = runs.iloc[np.sort(rng.choice(len(runs), 40, replace=False))]
        history_cache = HistoryCache(store) if cache else False
        live = {}
        for i in range(len(picked)):
            target = picked.iloc[[i]]
            now = target["scheduled_start"].iloc[0] + pd.Timedelta(seconds=2)  # the run starts a little late
            table = score_runs(store, target, model, manifest, now=now.to_pydatetime(), cache=history_cache)
            live[target["flow_run_id"].iloc[0]] = table["risk"].iloc[0]
        live_risk = pd.Series(live)
        assert np.abs(live_risk - batch.loc[live_risk.index]).max() <= 1e-12
        assert (batch.loc[live_risk.index] > 0).all()

    def test_warm_scores_while_history_arrives_equal_batch(
        self, sqlite_url: str, history: tuple[pd.DataFrame, pd.DataFrame], trained: Path
    ) -> None:
        """Runs scored one by one while the store receives what happens in between: the batch risks.

        This is how a long-lived worker scores: as forewarn.flow does, a run's row is written when it
        starts and again when it ends, and attempts when they end; the cache's index grows by what ended
        since its last read (the tail, then the rows that become final) and must give what the full
        history gives.
        """
        model, manifest = loaded(trained)
        runs, attempts = history
        runs = runs.sort_values("scheduled_start", kind="stable").reset_index(drop=True)
        targets = runs.iloc[3000:3060]
        never = pd.Timestamp.max.tz_localize("UTC")
        started = runs["start_time"].fillna(runs["scheduled_start"])
        ended = runs["end_time"].fillna(never)
        running = runs.assign(state="RUNNING", end_time=pd.Series(pd.NaT, index=runs.index, dtype=ended.dtype))
        store = TelemetryStore(sqlite_url)

        def arrive(since: pd.Timestamp, until: pd.Timestamp) -> None:
            store.record_runs_frame(running.loc[(started >= since) & (started < until) & (ended >= until)])
            store.record_runs_frame(runs.loc[(ended >= since) & (ended < until)])
            store.record_attempts_frame(attempts.loc[(attempts["end_time"] >= since) & (attempts["end_time"] < until)])

        previous = pd.Timestamp.min.tz_localize("UTC")
        cache, live = HistoryCache(store), []
        for i in range(len(targets)):
            target = targets.iloc[[i]]
            now = target["scheduled_start"].iloc[0] + pd.Timedelta(seconds=2)
            arrive(previous, now)
            previous = now
            live.append(
                score_runs(store, target, model, manifest, now=now.to_pydatetime(), cache=cache)["risk"].iloc[0]
            )
        assert cache.reads["runs_full"] == 1 and cache.reads["runs_tail"] == len(targets) - 1
        arrive(previous, never)  # the rest: what ended later changes nothing
        all_runs, all_attempts = store.runs(), store.attempts()
        in_store = all_runs.set_index("flow_run_id").loc[targets["flow_run_id"]].reset_index()
        expected = model.risk(build_features(in_store, all_runs, all_attempts))
        np.testing.assert_allclose(live, expected, rtol=0, atol=1e-12)

    def test_attempt_signals_take_part(self, store: TelemetryStore, trained: Path) -> None:
        """The sampled window has failed attempts, so the attempt features are exercised, not all zero."""
        runs, attempts = store.runs(), store.attempts()
        X = build_features(runs, runs, attempts)
        assert (X["attempts_failed_window"] > 0).mean() > 0.2

    def test_batch_of_targets_equals_one_at_a_time(self, store: TelemetryStore, trained: Path) -> None:
        """Scoring many runs in one call gives each the same risk as scoring it alone."""
        model, manifest = loaded(trained)
        runs = store.runs().iloc[2000:2030]
        now = runs["scheduled_start"].max().to_pydatetime()
        together = score_runs(store, runs, model, manifest, now=now, cache=False)
        alone = [
            score_runs(store, runs.iloc[[i]], model, manifest, now=now, cache=False)["risk"].iloc[0]
            for i in range(len(runs))
        ]
        np.testing.assert_allclose(together["risk"].to_numpy(), alone, rtol=0, atol=1e-12)


class TestWhatIsKnown:
    """Only history that ended before a run's cutoff min(scheduled_start, now) shapes its score."""

    def test_scored_ahead_sees_only_what_ended_before_now(self, store: TelemetryStore, trained: Path) -> None:
        """Scored two hours ahead, a run is described with lead = 2 h from the full history."""
        model, manifest = loaded(trained)
        runs, attempts = store.runs(), store.attempts()
        target = runs.iloc[[3000]]
        scheduled = target["scheduled_start"].iloc[0]
        now = scheduled - pd.Timedelta(hours=2)
        table = score_runs(store, target, model, manifest, now=now.to_pydatetime(), cache=False)
        expected = model.risk(build_features(target, runs, attempts, lead=timedelta(hours=2)))[0]
        assert table["lead_seconds"].iloc[0] == 7200.0
        assert table["risk"].iloc[0] == pytest.approx(expected, abs=1e-12)

    def test_a_failure_ending_after_the_scheduled_start_is_not_seen(self, store: TelemetryStore, trained: Path) -> None:
        """A run scored late does not see failures that ended between its scheduled start and now."""
        model, manifest = loaded(trained)
        runs = store.runs()
        target = runs.iloc[[3000]]
        scheduled = target["scheduled_start"].iloc[0].to_pydatetime()
        before = score_runs(store, target, model, manifest, now=scheduled, cache=False)["risk"].iloc[0]
        late = [
            FlowRunRecord(
                f"late-{i}",
                str(target["flow_name"].iloc[0]),
                scheduled + timedelta(seconds=1),
                RunState.FAILED,
                scheduled_start=scheduled,
                end_time=scheduled + timedelta(seconds=30),
            )
            for i in range(5)
        ]
        store.record_flow_runs(late)
        after = score_runs(store, target, model, manifest, now=scheduled + timedelta(minutes=5), cache=False)
        assert after["risk"].iloc[0] == before
        assert after["lead_seconds"].iloc[0] == -300.0


class TestScoreTable:
    """score_runs() returns one documented row per target."""

    def test_columns_and_reasons(self, store: TelemetryStore, trained: Path) -> None:
        """SCORE_COLUMNS; warned is risk >= threshold; a warned run has 1-3 reasons, the others none."""
        model, manifest = loaded(trained)
        runs = store.runs().iloc[1000:1010]
        table = score_runs(store, runs, model, manifest, now=runs["scheduled_start"].max().to_pydatetime())
        assert tuple(table.columns) == SCORE_COLUMNS
        assert table["flow_run_id"].tolist() == runs["flow_run_id"].tolist()
        assert all(isinstance(r, list) and all(isinstance(s, str) for s in r) for r in table["reasons"])
        assert (table["warned"] == (table["risk"] >= table["threshold"])).all()
        for warned, reasons in zip(table["warned"], table["reasons"], strict=True):
            assert (1 <= len(reasons) <= 3) if warned else reasons == []

    def test_only_warned_runs_are_explained(
        self, store: TelemetryStore, trained: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """explain is called once per warned run and never for a run below the threshold."""
        model, manifest = loaded(trained)
        runs = store.runs().iloc[1000:1040]
        now = runs["scheduled_start"].max().to_pydatetime()
        risk = score_runs(store, runs, model, manifest, now=now)["risk"].to_numpy()
        # a threshold between the risks: some runs are warned, some are not
        monkeypatch.setattr(model, "threshold_", float(np.median(risk)))
        explained: list[int] = []
        explain = model.explain

        def counting(X: pd.DataFrame, **kw: Any) -> Any:
            explained.append(len(X))
            return explain(X, **kw)

        monkeypatch.setattr(model, "explain", counting)
        table = score_runs(store, runs, model, manifest, now=now)
        assert 0 < table["warned"].sum() < len(table)
        assert sum(explained) == table["warned"].sum()
        assert all(len(r) >= 1 for r in table.loc[table["warned"], "reasons"])
        assert all(r == [] for r in table.loc[~table["warned"], "reasons"])
        assert (table["model_version"] == manifest.version).all()

    def test_a_live_record_without_attributes_is_scored_with_them_missing(
        self, store: TelemetryStore, trained: Path
    ) -> None:
        """A forewarn flow run carries no feature_* attributes; the model scores them as missing."""
        model, manifest = loaded(trained)
        assert any(n.startswith("feature_") for n in manifest.feature_types)
        runs = store.runs()
        last = runs.loc[runs["end_time"].idxmax()]
        start = last["end_time"].to_pydatetime() + timedelta(minutes=1)
        record = FlowRunRecord(
            "live-1",
            str(last["flow_name"]),
            start,
            scheduled_start=start,
            deployment=last["deployment"],
            flow_version=last["flow_version"],
        )
        table = score_runs(store, record_targets([record]), model, manifest, now=start)
        assert 0.0 <= table["risk"].iloc[0] <= 1.0

    def test_repeated_targets_are_refused(self, store: TelemetryStore, trained: Path) -> None:
        """Each run is scored once per call."""
        model, manifest = loaded(trained)
        runs = store.runs().iloc[[5, 5]]
        with pytest.raises(ValueError, match="repeat"):
            score_runs(store, runs, model, manifest, now=datetime(2026, 3, 1, tzinfo=timezone.utc))

    def test_prediction_records(self, store: TelemetryStore, trained: Path) -> None:
        """Each scored row becomes a PredictionRecord with the run's lead time."""
        model, manifest = loaded(trained)
        runs = store.runs().iloc[[100]]
        now = (runs["scheduled_start"].iloc[0] - pd.Timedelta(minutes=30)).to_pydatetime()
        table = score_runs(store, runs, model, manifest, now=now)
        (rec,) = prediction_records(table, source="forecast", predicted_at=now)
        assert (rec.flow_run_id, rec.source, rec.lead_seconds) == (runs["flow_run_id"].iloc[0], "forecast", 1800.0)
        assert rec.reasons == tuple(table["reasons"].iloc[0])
        store.record_predictions([rec])
        assert store.predictions()["lead_seconds"].tolist() == [1800.0]


class TestHistoryCache:
    """HistoryCache reads the window once, then only what ended since."""

    def window(self, store: TelemetryStore) -> tuple[pd.Timestamp, pd.Timestamp, pd.Timestamp]:
        runs = store.runs()
        now = runs["end_time"].max() + pd.Timedelta(hours=1)
        return now - pd.Timedelta(days=30, hours=6), now - pd.Timedelta(hours=6), now

    def test_warm_reads_only_the_tail(self, store: TelemetryStore) -> None:
        """After one full read, each read is a tail read, and new rows appear in it."""
        since, attempts_since, now = self.window(store)
        cache = HistoryCache(store)
        runs, _ = cache.read(since, attempts_since, now=now)
        assert len(runs) == len(store.ended_runs(since.to_pydatetime()))
        t = now.to_pydatetime()
        store.record_flow_run_start(FlowRunRecord("new-1", "etl", t, RunState.FAILED, end_time=t))
        runs2, _ = cache.read(since, attempts_since, now=now + pd.Timedelta(seconds=5))
        assert "new-1" in set(runs2.ids) and len(runs2) == len(runs) + 1
        assert cache.reads == {"runs_full": 1, "runs_tail": 1, "attempts_full": 1, "attempts_tail": 1}

    def test_history_imported_behind_it_triggers_a_full_read(self, store: TelemetryStore) -> None:
        """Rows written with old end times change the count of the cached range: the window is re-read."""
        since, attempts_since, now = self.window(store)
        cache = HistoryCache(store)
        cache.read(since, attempts_since, now=now)
        old = (now - pd.Timedelta(days=3)).to_pydatetime()
        store.record_flow_run_start(FlowRunRecord("imported-1", "etl", old, RunState.COMPLETED, end_time=old))
        runs2, _ = cache.read(since, attempts_since, now=now)
        assert "imported-1" in set(runs2.ids)
        assert cache.reads["runs_full"] == 2

    def test_a_run_that_ends_again_replaces_its_old_row(self, store: TelemetryStore) -> None:
        """A retried flow run re-ends later: one row, its newest, is in the window."""
        since, attempts_since, now = self.window(store)
        t = (now - pd.Timedelta(hours=1)).to_pydatetime()
        store.record_flow_run_start(FlowRunRecord("retried", "etl", t, RunState.FAILED, end_time=t))
        cache = HistoryCache(store)
        cache.read(since, attempts_since, now=now)
        store.record_flow_run_start(FlowRunRecord("retried", "etl", t, RunState.RUNNING))
        store.record_flow_run_end("retried", RunState.COMPLETED, now.to_pydatetime())
        runs, _ = cache.read(since, attempts_since, now=now + pd.Timedelta(seconds=1))
        assert runs.succ[runs.ids == "retried"].tolist() == [True]

    def test_the_window_moving_on_drops_old_rows(self, store: TelemetryStore) -> None:
        """Rows older than the window (less an hour of slack) leave the cache."""
        _, attempts_since, now = self.window(store)
        since = now - pd.Timedelta(days=5)  # the simulated history spans ten days
        cache = HistoryCache(store)
        first, _ = cache.read(since, attempts_since, now=now)
        later = pd.Timedelta(days=2)
        moved, _ = cache.read(since + later, attempts_since + later, now=now + later)
        assert moved.end.min() >= (since + later - pd.Timedelta(hours=1)).value
        assert len(moved) < len(first)


class TestLeanStoreReads:
    """TelemetryStore.ended_runs/ended_attempts return what runs()/attempts() do, for fewer columns."""

    def test_same_rows_as_the_full_readers(self, store_url: str, history: tuple[pd.DataFrame, pd.DataFrame]) -> None:
        """For an end_time window, the lean frames equal the matching columns of runs() and attempts()."""
        with TelemetryStore(store_url) as s:
            fill(s, history)
            runs, attempts = s.runs(), s.attempts()
            since = runs["end_time"].quantile(0.4)
            until = runs["end_time"].quantile(0.6)
            lean = s.ended_runs(since.to_pydatetime(), until.to_pydatetime())
            full = runs.loc[(runs["end_time"] >= since) & (runs["end_time"] < until), list(s.ENDED_RUN_COLUMNS)]
            pd.testing.assert_frame_equal(
                lean.sort_values("flow_run_id").reset_index(drop=True),
                full.sort_values("flow_run_id").reset_index(drop=True),
                check_dtype=False,
            )
            assert str(lean["end_time"].dtype) == "datetime64[ns, UTC]"
            lean_att = s.ended_attempts(since.to_pydatetime(), until.to_pydatetime())
            in_window = attempts.loc[(attempts["end_time"] >= since) & (attempts["end_time"] < until)]
            assert len(lean_att) == len(in_window)
            assert set(lean_att["flow_run_id"]) == set(in_window["flow_run_id"])
            assert lean_att["run_scheduled_start"].notna().all()
            columns = s.ended_rows("flow_runs", since.to_pydatetime(), until.to_pydatetime())
            assert list(columns) == list(s.ENDED_RUN_COLUMNS)
            assert columns["flow_run_id"].tolist() == lean["flow_run_id"].tolist()
            for name in ("scheduled_start", "start_time", "end_time"):  # naive UTC datetime64, NaT kept
                np.testing.assert_array_equal(columns[name], lean[name].dt.tz_localize(None).to_numpy())
            att_columns = s.ended_rows("task_attempts", since.to_pydatetime(), until.to_pydatetime())
            assert att_columns["flow_run_id"].tolist() == lean_att["flow_run_id"].tolist()
            assert s.count_ended("flow_runs", since.to_pydatetime(), until.to_pydatetime()) == len(lean)
            assert s.count_ended("task_attempts", since.to_pydatetime(), until.to_pydatetime()) == len(lean_att)

    def test_count_ended_names_its_tables(self, sqlite_url: str) -> None:
        """Only flow_runs and task_attempts can be counted or read."""
        t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
        with TelemetryStore(sqlite_url) as s:
            with pytest.raises(ValueError, match="flow_runs"):
                s.count_ended("predictions", t0, t0)
            with pytest.raises(ValueError, match="task_attempts"):
                s.ended_rows("predictions", t0)
