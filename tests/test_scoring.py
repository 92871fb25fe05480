"""forewarn.scoring: the current model, the history window, and live scores equal to backtest scores."""

from __future__ import annotations

import dataclasses
import json
import logging
import pickle
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from forewarn.errors import ChecksumMismatchError, FeatureSchemaError, ModelError
from forewarn.history.simulate import (
    history_to_attempts_frame,
    history_to_runs_frame,
    simulate_history,
    simulated_attempts,
)
from forewarn.learning.features import AttemptIndex, FeatureConfig, RunIndex, build_features, failure_labels
from forewarn.learning.model import FailureWarningModel, ModelManifest, save_model
from forewarn.records import FlowRunRecord, RunState
from forewarn.scoring import (
    SCORE_COLUMNS,
    HistoryCache,
    clear_history_caches,
    clear_model_cache,
    configured_model_key,
    feature_config_dict,
    feature_config_of,
    history_cache,
    load_current_model,
    prediction_records,
    record_targets,
    score_runs,
)
from forewarn.scoring.snapshot import (
    ATTEMPT_BOOL,
    ATTEMPT_INT64,
    RUN_BOOL,
    RUN_INT64,
    SNAPSHOT_FORMAT,
    load_snapshot,
    snapshot_file,
    store_identity,
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
    save_model(
        model,
        directory,
        training_window=WINDOW,
        extra={"feature_config": feature_config_dict(FeatureConfig())},
        key=configured_model_key(create=True),
    )
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


NEVER = pd.Timestamp.max.tz_localize("UTC")


class LiveStore:
    """A store receiving a history as it happens: a run written at its start and again at its end (as
    forewarn.flow writes it), attempts as they end. ``targets`` are 60 consecutive runs to score meanwhile."""

    def __init__(self, store: TelemetryStore, history: tuple[pd.DataFrame, pd.DataFrame]) -> None:
        runs, self.attempts = history
        self.store = store
        self.runs = runs.sort_values("scheduled_start", kind="stable").reset_index(drop=True)
        self.targets = self.runs.iloc[3000:3060]
        self.started = self.runs["start_time"].fillna(self.runs["scheduled_start"])
        self.ended = self.runs["end_time"].fillna(NEVER)
        self.running = self.runs.assign(
            state="RUNNING", end_time=pd.Series(pd.NaT, index=self.runs.index, dtype=self.ended.dtype)
        )

    def arrive(self, since: pd.Timestamp, until: pd.Timestamp) -> None:
        """Write what started or ended in ``[since, until)``."""
        started, ended, attempts = self.started, self.ended, self.attempts
        self.store.record_runs_frame(self.running.loc[(started >= since) & (started < until) & (ended >= until)])
        self.store.record_runs_frame(self.runs.loc[(ended >= since) & (ended < until)])
        self.store.record_attempts_frame(attempts.loc[(attempts["end_time"] >= since) & (attempts["end_time"] < until)])

    def batch_risks(self, model: FailureWarningModel) -> np.ndarray:
        """The targets' risks as training and the backtest compute them, from the whole history written."""
        self.arrive(pd.Timestamp.min.tz_localize("UTC"), NEVER)  # what ended later changes nothing
        all_runs, all_attempts = self.store.runs(), self.store.attempts()
        in_store = all_runs.set_index("flow_run_id").loc[self.targets["flow_run_id"]].reset_index()
        return np.asarray(model.risk(build_features(in_store, all_runs, all_attempts)))


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
        new_manifest = save_model(old, directory, training_window=WINDOW, key=configured_model_key(create=True))
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


class TestModuleLayout:
    """The names forewarn.scoring.live had stay importable from it for one release, as the same objects."""

    def test_live_re_exports_what_moved(self) -> None:
        import forewarn.scoring
        import forewarn.scoring.live

        assert all(getattr(forewarn.scoring.live, n) is getattr(forewarn.scoring, n) for n in forewarn.scoring.__all__)


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
        store = TelemetryStore(sqlite_url)
        live_store = LiveStore(store, history)
        targets, arrive = live_store.targets, live_store.arrive

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
        np.testing.assert_allclose(live, live_store.batch_risks(model), rtol=0, atol=1e-12)

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

    def test_a_run_ending_again_while_the_count_is_unchanged_keeps_one_row(self, store: TelemetryStore) -> None:
        """A re-ended run whose departure from the cached range another arrival hides: still one row, its newest."""
        since, attempts_since, now = self.window(store)
        t = (now - pd.Timedelta(hours=1)).to_pydatetime()
        store.record_flow_run_start(FlowRunRecord("retried", "etl", t, RunState.FAILED, end_time=t, scheduled_start=t))
        cache = HistoryCache(store)
        cache.read(since, attempts_since, now=now)
        store.record_flow_run_start(FlowRunRecord("retried", "etl", t, RunState.RUNNING, scheduled_start=t))
        store.record_flow_run_end("retried", RunState.COMPLETED, now.to_pydatetime())
        old = (now - pd.Timedelta(days=2)).to_pydatetime()  # arrives in the cached range: the count is unchanged
        store.record_flow_run_start(FlowRunRecord("imported", "etl", old, RunState.COMPLETED, end_time=old))
        runs, _ = cache.read(since, attempts_since, now=now + pd.Timedelta(seconds=1))
        assert cache.reads["runs_full"] == 1
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


def cache_window(store: TelemetryStore) -> tuple[pd.Timestamp, pd.Timestamp, pd.Timestamp]:
    """``since``, ``attempts_since`` and ``now`` for reading a store an hour after its last run ended."""
    now = store.runs()["end_time"].max() + pd.Timedelta(hours=1)
    return now - pd.Timedelta(days=30, hours=6), now - pd.Timedelta(hours=6), now


def run_rows(runs: RunIndex) -> list[tuple[Any, ...]]:
    """A RunIndex row by row, codes spelled out: equal for equal history whatever the codes and id type."""
    names = [runs.vocab.flows.names, runs.vocab.versions.names, runs.vocab.params.names]
    codes = [runs.flow, runs.version, runs.params]
    spelled = [[vocab[c] for c in column.tolist()] for vocab, column in zip(names, codes, strict=True)]
    return list(
        zip(
            [str(i) for i in runs.ids.tolist()],
            *(getattr(runs, name).tolist() for name in ("known", "ref", "end", "fail", "succ", "has_dur", "dur_us")),
            *spelled,
            strict=True,
        )
    )


def attempt_rows(attempts: AttemptIndex) -> list[tuple[Any, ...]]:
    """An AttemptIndex's rows (in no particular order there) sorted, flows spelled out."""
    flows = [attempts.flows.names[c] for c in attempts.flow.tolist()]
    columns = [attempts.run.tolist(), attempts.end.tolist(), attempts.known.tolist(), attempts.failed.tolist()]
    families = [tuple(row) for row in attempts.families.tolist()]
    return sorted(zip(*columns, attempts.own_flow.tolist(), flows, families, strict=True))


def assert_same_history(got: tuple[RunIndex, AttemptIndex], expected: tuple[RunIndex, AttemptIndex]) -> None:
    assert run_rows(got[0]) == run_rows(expected[0])
    assert attempt_rows(got[1]) == attempt_rows(expected[1])


def rewrite(path: Path, changes: dict[str, Any], *, save: Callable[..., None] = np.savez) -> None:
    """Replace members of the snapshot in ``path`` (np.savez pickles an object array, as a forger could)."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    arrays.update(changes)
    with open(path, "wb") as fh:
        save(fh, **arrays)


class _Planted:
    """Pickled, it would create ``path`` when unpickled: proof that a snapshot never unpickles anything."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.path,))


def _meta(path: Path, key: str, position: int, value: int) -> dict[str, Any]:
    with np.load(path) as data:
        meta = data[key].copy()
    meta[position] = value
    return {key: meta}


def _rows_before_lo(path: Path) -> dict[str, Any]:
    with np.load(path) as data:
        meta = data["runs.meta"].copy()
    meta[0] = meta[1] - 1  # lo just before stable_hi: the rows lie before it
    return {"runs.meta": meta}


def _repeated_name(path: Path) -> dict[str, Any]:
    with np.load(path) as data:
        names = data["runs.vocab"].copy()
    names[1] = names[0]
    return {"runs.vocab": names}


def _header(path: Path, position: int, value: str) -> dict[str, Any]:
    with np.load(path) as data:
        header = data["header"].astype(object)
    header[position] = value
    return {"header": header.astype(str)}


def _int64(path: Path, row: int, value: int) -> dict[str, Any]:
    with np.load(path) as data:
        ints = data["runs.int64"].copy()
    ints[row, :] = value
    return {"runs.int64": ints}


SPOILED: dict[str, Callable[[Path, Path], None]] = {
    "another format": lambda p, _: rewrite(p, {"format": np.asarray(SNAPSHOT_FORMAT + 1)}),
    "another forewarn version": lambda p, _: rewrite(p, _header(p, 0, "0.0.0+other")),
    "another store": lambda p, _: rewrite(p, _header(p, 1, "0" * 64)),
    "other exception families": lambda p, _: rewrite(p, _header(p, 2, "fatigue")),
    "read in full too long ago": lambda p, _: rewrite(p, _meta(p, "runs.meta", 2, 0)),
    "an empty range": lambda p, _: rewrite(p, _meta(p, "runs.meta", 1, 1)),
    "rows outside their range": lambda p, _: rewrite(p, _rows_before_lo(p)),
    "a code outside its vocabulary": lambda p, _: rewrite(p, _int64(p, 3, 10**6)),
    "a wrong dtype": lambda p, _: rewrite(p, {"runs.bool": np.zeros((3, 2), dtype=np.int8)}),
    "a repeated vocabulary name": lambda p, _: rewrite(p, _repeated_name(p)),
    "compressed members": lambda p, _: rewrite(p, {}, save=np.savez_compressed),
    "truncated": lambda p, _: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "damaged bytes": lambda p, _: p.write_bytes(p.read_bytes()[:5000] + b"\xff" * 999 + p.read_bytes()[5999:]),
    "empty": lambda p, _: p.write_bytes(b""),
    "an .npy file": lambda p, _: np.save(open(p, "wb"), np.arange(3)),  # noqa: SIM115
    "a pickle": lambda p, marker: p.write_bytes(pickle.dumps(_Planted(marker))),
    "a pickled first member": lambda p, marker: rewrite(p, {"format": np.asarray([_Planted(marker)], dtype=object)}),
    "pickled run ids": lambda p, marker: rewrite(p, {"runs.ids": np.asarray([_Planted(marker)], dtype=object)}),
}


class TestHistorySnapshot:
    """A new HistoryCache starts from the snapshot another saved, and only from one it can trust."""

    def test_a_new_cache_starts_from_the_snapshot(self, store: TelemetryStore, tmp_path: Path) -> None:
        """The second cache adopts both tables, reads no window in full, and holds what a full read holds."""
        since, attempts_since, now = cache_window(store)
        path = tmp_path / "cache" / "history.npz"
        first = HistoryCache(store, snapshot=path)
        first.read(since, attempts_since, now=now)
        assert first.snapshots == {"adopted": 0, "saved": 1} and path.is_file()
        later = now + pd.Timedelta(seconds=5)
        second = HistoryCache(store, snapshot=path)
        got = second.read(since, attempts_since, now=later)
        assert second.reads == {"runs_full": 0, "runs_tail": 1, "attempts_full": 0, "attempts_tail": 1}
        assert second.snapshots == {"adopted": 2, "saved": 0}
        assert_same_history(got, HistoryCache(store).read(since, attempts_since, now=later))

    def test_scores_through_a_snapshot_equal_a_full_read(
        self, store: TelemetryStore, trained: Path, tmp_path: Path
    ) -> None:
        """score_runs with a cache started from a snapshot gives the risks of cache=False, to 1e-12."""
        model, manifest = loaded(trained)
        path = tmp_path / "history.npz"
        runs = store.runs()
        targets = runs.loc[runs["end_time"] >= runs["end_time"].max() - pd.Timedelta(days=1)].iloc[:20]
        now = (targets["scheduled_start"].max() + pd.Timedelta(seconds=2)).to_pydatetime()
        score_runs(store, targets.iloc[:1], model, manifest, now=now, cache=HistoryCache(store, snapshot=path))
        cache = HistoryCache(store, snapshot=path)
        live = score_runs(store, targets, model, manifest, now=now, cache=cache)["risk"].to_numpy()
        cold = score_runs(store, targets, model, manifest, now=now, cache=False)["risk"].to_numpy()
        assert cache.reads["runs_full"] == 0
        held = load_snapshot(path, store_identity(store))
        assert held is not None and held.runs.part.attrs.shape[1] == 3  # input_rows, source_system, triggered_by
        np.testing.assert_allclose(live, cold, rtol=0, atol=1e-12)

    @pytest.mark.parametrize("spoil", list(SPOILED.values()), ids=list(SPOILED))
    def test_a_snapshot_it_cannot_trust_is_ignored(
        self,
        store: TelemetryStore,
        tmp_path: Path,
        spoil: Callable[[Path, Path], None],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Foreign, stale, damaged or forged: the window is read in full, and nothing is unpickled."""
        since, attempts_since, now = cache_window(store)
        path, marker = tmp_path / "history.npz", tmp_path / "unpickled"
        HistoryCache(store, snapshot=path).read(since, attempts_since, now=now)
        spoil(path, marker)
        cache = HistoryCache(store, snapshot=path)
        with caplog.at_level(logging.DEBUG, logger="forewarn"):
            got = cache.read(since, attempts_since, now=now)
        assert cache.reads["runs_full"] == 1 and not marker.exists()
        assert any("history snapshot" in r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG)
        assert_same_history(got, HistoryCache(store).read(since, attempts_since, now=now))
        assert HistoryCache(store, snapshot=path).read(since, attempts_since, now=now) is not None  # saved anew

    def test_the_planted_pickle_would_run(self, tmp_path: Path) -> None:
        """The forged files above are real attacks: unpickled, their payload runs."""
        pickle.loads(pickle.dumps(_Planted(tmp_path / "unpickled")))
        assert (tmp_path / "unpickled").exists()

    def test_another_stores_snapshot_is_ignored(self, store: TelemetryStore, tmp_path: Path) -> None:
        """A store with another URL never adopts the file, even when it is handed it."""
        since, attempts_since, now = cache_window(store)
        path = tmp_path / "history.npz"
        HistoryCache(store, snapshot=path).read(since, attempts_since, now=now)
        with TelemetryStore(f"sqlite:///{tmp_path / 'other.db'}") as other:
            cache = HistoryCache(other, snapshot=path)
            runs, attempts = cache.read(since, attempts_since, now=now)
            assert cache.snapshots["adopted"] == 0 and cache.reads["runs_full"] == 1
            assert len(runs) == len(attempts) == 0

    def test_a_window_reaching_before_the_snapshot_reads_that_table_in_full(
        self, store: TelemetryStore, tmp_path: Path
    ) -> None:
        """The runs wanted start before the snapshot's: runs are read in full, attempts still adopted."""
        since, attempts_since, now = cache_window(store)
        path = tmp_path / "history.npz"
        HistoryCache(store, snapshot=path).read(since, attempts_since, now=now)
        cache = HistoryCache(store, snapshot=path)
        earlier = since - pd.Timedelta(days=1)
        got = cache.read(earlier, attempts_since, now=now)
        assert (cache.reads["runs_full"], cache.reads["attempts_full"], cache.snapshots["adopted"]) == (1, 0, 1)
        assert_same_history(got, HistoryCache(store).read(earlier, attempts_since, now=now))

    def test_a_snapshot_older_than_max_age_is_ignored(self, store: TelemetryStore, tmp_path: Path) -> None:
        """Its rows were read in full more than max_age ago: the new cache reads in full (and saves)."""
        since, attempts_since, now = cache_window(store)
        path = tmp_path / "history.npz"
        HistoryCache(store, snapshot=path).read(since, attempts_since, now=now)
        late = pd.Timedelta(hours=25)
        cache = HistoryCache(store, snapshot=path, max_age=timedelta(hours=24))
        cache.read(since + late, attempts_since + late, now=now + late)
        assert cache.snapshots == {"adopted": 0, "saved": 1} and cache.reads["runs_full"] == 1

    def test_history_written_behind_the_snapshot_is_caught(self, store: TelemetryStore, tmp_path: Path) -> None:
        """A run imported with an old end time changes the count of the snapshot's range: a full read."""
        since, attempts_since, now = cache_window(store)
        path = tmp_path / "history.npz"
        HistoryCache(store, snapshot=path).read(since, attempts_since, now=now)
        old = (now - pd.Timedelta(days=3)).to_pydatetime()
        store.record_flow_run_start(FlowRunRecord("imported-1", "etl", old, RunState.COMPLETED, end_time=old))
        cache = HistoryCache(store, snapshot=path)
        got = cache.read(since, attempts_since, now=now)
        assert cache.snapshots["adopted"] == 2 and cache.reads["runs_full"] == 1
        assert "imported-1" in set(got[0].ids.tolist())
        assert_same_history(got, HistoryCache(store).read(since, attempts_since, now=now))

    @pytest.mark.parametrize(("save_rows", "saved"), [(1, 1), (1_000, 0)])
    def test_saved_again_once_enough_rows_became_stable(
        self, store: TelemetryStore, tmp_path: Path, save_rows: int, saved: int
    ) -> None:
        """Not at every read: once save_rows rows have become stable since the snapshot was adopted."""
        since, attempts_since, now = cache_window(store)
        path = tmp_path / "history.npz"
        first = HistoryCache(store, snapshot=path)
        first.read(since, attempts_since, now=now)
        first.read(since, attempts_since, now=now + pd.Timedelta(seconds=5))
        assert first.snapshots["saved"] == 1  # nothing new became stable
        t = (now + pd.Timedelta(minutes=1)).to_pydatetime()
        store.record_flow_runs([FlowRunRecord(f"new-{i}", "etl", t, RunState.FAILED, end_time=t) for i in range(3)])
        cache = HistoryCache(store, snapshot=path, save_rows=save_rows)
        cache.read(since, attempts_since, now=now + pd.Timedelta(minutes=20))  # the new runs are older than grace
        assert cache.snapshots == {"adopted": 2, "saved": saved}
        snapshot = load_snapshot(path, store_identity(store))
        assert snapshot is not None
        assert ("new-0" in set(snapshot.runs.part.ids.tolist())) is bool(saved)

    def test_an_unwritable_directory_never_fails_scoring(
        self, store: TelemetryStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The save fails (the directory is a file): reads still answer, and the warning is logged once."""
        since, attempts_since, now = cache_window(store)
        blocker = tmp_path / "not-a-directory"
        blocker.write_text("")
        cache = HistoryCache(store, snapshot=blocker / "history.npz")
        with caplog.at_level(logging.WARNING, logger="forewarn"):
            got = cache.read(since, attempts_since, now=now)
            cache.read(since - pd.Timedelta(days=1), attempts_since, now=now)  # a full read: due again
        assert cache.snapshots["saved"] == 0 and cache.reads["runs_full"] == 2
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "FOREWARN_CACHE_DIR" in warnings[0]
        assert_same_history(got, HistoryCache(store).read(since, attempts_since, now=now))

    def test_a_failed_save_leaves_the_old_file(
        self, store: TelemetryStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A write that fails half-way (a full disk) keeps the previous snapshot and leaves no temporary file."""
        since, attempts_since, now = cache_window(store)
        path = tmp_path / "cache" / "history.npz"
        HistoryCache(store, snapshot=path).read(since, attempts_since, now=now)
        before = path.read_bytes()

        def full_disk(fh: Any, **arrays: Any) -> None:
            fh.write(b"PK\x03\x04 half")
            raise OSError(28, "No space left on device")

        monkeypatch.setattr("forewarn.scoring.snapshot.np.savez", full_disk)
        cache = HistoryCache(store, snapshot=path)
        cache.read(since - pd.Timedelta(days=1), attempts_since, now=now)
        assert cache.snapshots["saved"] == 0
        assert path.read_bytes() == before and [p.name for p in path.parent.iterdir()] == ["history.npz"]

    def test_the_file_holds_every_prepared_array(self) -> None:
        """A new RunIndex or AttemptIndex array must be saved (and SNAPSHOT_FORMAT bumped): this fails first."""
        run_arrays = {f.name for f in dataclasses.fields(RunIndex)} - {"vocab"}
        attempt_arrays = {f.name for f in dataclasses.fields(AttemptIndex)} - {"flows"}
        assert run_arrays == {"ids", "attrs", *RUN_INT64, *RUN_BOOL}  # attrs: runs.attrs, with its vocabularies
        assert attempt_arrays == {"run", "families", *ATTEMPT_INT64, *ATTEMPT_BOOL}

    def test_each_store_has_its_own_file(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """The file is named by the store: its URL without the password, a SQLite file by its absolute path."""
        from types import SimpleNamespace

        from sqlalchemy.engine import make_url

        def postgres(url: str) -> Any:
            return SimpleNamespace(engine=SimpleNamespace(url=make_url(url)))

        one = store_identity(postgres("postgresql+psycopg://u:first-secret@db:5432/telemetry"))
        assert one == store_identity(postgres("postgresql+psycopg://u:second-secret@db:5432/telemetry"))
        in_query = store_identity(postgres("postgresql+psycopg://u@db:5432/telemetry?password=third-secret"))
        assert in_query == store_identity(postgres("postgresql+psycopg://u@db:5432/telemetry?password=fourth"))
        assert one != store_identity(postgres("postgresql+psycopg://u:first-secret@db:5432/other"))
        for name in ("x", "y"):
            (tmp_path / name).mkdir()
        monkeypatch.chdir(tmp_path / "x")
        with (
            TelemetryStore("sqlite:///relative.db") as in_x,
            TelemetryStore(f"sqlite:///{tmp_path}/x/relative.db") as same,
        ):
            assert snapshot_file(tmp_path, in_x) == snapshot_file(tmp_path, same)
            monkeypatch.chdir(tmp_path / "y")
            with TelemetryStore("sqlite:///relative.db") as in_y:
                assert snapshot_file(tmp_path, in_y) != snapshot_file(tmp_path, same)
        with TelemetryStore("sqlite://") as memory:
            assert snapshot_file(tmp_path, memory) is None

    def test_the_process_cache_uses_the_configured_directory(
        self, store: TelemetryStore, trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """history_cache() saves under FOREWARN_CACHE_DIR; an empty value turns the snapshot off."""
        from forewarn.settings import get_settings

        model, manifest = loaded(trained)
        clear_history_caches()
        expected = snapshot_file(tmp_path / "cache", store)
        assert history_cache(store).snapshot == expected is not None
        target = store.runs().iloc[[3000]]
        now = target["scheduled_start"].iloc[0].to_pydatetime()
        score_runs(store, target, model, manifest, now=now)
        assert expected.is_file()
        monkeypatch.setenv("FOREWARN_CACHE_DIR", "")
        get_settings.cache_clear()
        clear_history_caches()
        assert history_cache(store).snapshot is None
        clear_history_caches()


class TestFreshProcessesEqualBatch:
    """Runs scored one by one, each by a new cache started from the snapshot the previous ones saved."""

    def test_fresh_caches_while_history_arrives_equal_batch(
        self, sqlite_url: str, history: tuple[pd.DataFrame, pd.DataFrame], trained: Path, tmp_path: Path
    ) -> None:
        """As a process-per-run worker scores: every score adopts, reads the tail, sometimes saves; batch risks.

        The history arrives as in test_warm_scores_while_history_arrives_equal_batch; each score is the
        only one of its cache, so what a score sees comes from the snapshot plus its own tail read.
        """
        model, manifest = loaded(trained)
        store = TelemetryStore(sqlite_url)
        live_store = LiveStore(store, history)
        targets, arrive = live_store.targets, live_store.arrive

        path = tmp_path / "cache" / "history.npz"
        previous = pd.Timestamp.min.tz_localize("UTC")
        live, full_reads, adopted, saved = [], 0, 0, 0
        for i in range(len(targets)):
            target = targets.iloc[[i]]
            now = target["scheduled_start"].iloc[0] + pd.Timedelta(seconds=2)
            arrive(previous, now)
            previous = now
            cache = HistoryCache(store, snapshot=path, save_rows=20)  # a new process
            live.append(
                score_runs(store, target, model, manifest, now=now.to_pydatetime(), cache=cache)["risk"].iloc[0]
            )
            full_reads += cache.reads["runs_full"] + cache.reads["attempts_full"]
            adopted += cache.snapshots["adopted"]
            saved += cache.snapshots["saved"]
        assert full_reads == 2 and adopted == 2 * (len(targets) - 1)  # the first score only; then from snapshots
        assert 2 <= saved < len(targets) // 2
        np.testing.assert_allclose(live, live_store.batch_risks(model), rtol=0, atol=1e-12)


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
            by_id, full = (f.sort_values("flow_run_id").reset_index(drop=True) for f in (lean, full))
            # the lean read leaves the features as their JSON text: RunIndex decodes only the text attributes
            decoded = [{} if text is None else json.loads(text) for text in by_id["features"]]
            assert decoded == full["features"].tolist() and any(decoded)
            pd.testing.assert_frame_equal(
                by_id.drop(columns="features"), full.drop(columns="features"), check_dtype=False
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
