"""The failure-warning model: threshold rules, the estimator contract, explanations and persistence."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
import sklearn
from scipy.special import expit
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

import forewarn.learning.model._sklearn_fast as sklearn_fast
from forewarn.errors import (
    ChecksumMismatchError,
    ConfigurationError,
    FeatureSchemaError,
    InsufficientHistoryError,
    ModelError,
)
from forewarn.learning.features import feature_spec
from forewarn.learning.features.reasons import reason_text
from forewarn.learning.model import (
    FailureWarningModel,
    FrameEncoder,
    ModelManifest,
    Reason,
    StackedClassifier,
    choose_threshold,
    choose_threshold_over_slices,
    load_model,
    make_pipeline,
    save_model,
)
from forewarn.learning.model.encoder import bin_edges
from forewarn.learning.model.estimator import calibrated_risk
from forewarn.learning.model.pipeline import PrefitCalibratedClassifier, raw_score
from forewarn.learning.model.threshold import time_slices

MODEL_KEY = "test-model-key-" + "0" * 32  # signs and verifies the models saved here
WINDOW = (pd.Timestamp("2026-01-01", tz="UTC"), pd.Timestamp("2026-02-01", tz="UTC"))
Data = tuple[pd.DataFrame, pd.Series]


def synthetic_features(n: int, seed: int = 0) -> Data:
    """A small feature frame shaped like build_features' output, with failures driven by its columns."""
    rng = np.random.default_rng(seed)
    flow = rng.choice([f"flow-{i}" for i in range(8)], n)
    rate = rng.beta(1, 15, n)
    last = (rng.random(n) < np.clip(rate * 2, 0, 1)).astype(float)
    rows = rng.lognormal(10, 1, n)
    rows[rng.random(n) < 0.1] = np.nan
    logit = -4.0 + 12 * rate + 0.8 * last + 1.5 * (flow == "flow-3") + 1.2 * (np.nan_to_num(rows) > 60_000)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    index = pd.Index([f"run-{seed}-{i}" for i in range(n)], name="flow_run_id")
    X = pd.DataFrame(
        {
            "flow_failure_rate_smoothed": rate,
            "flow_last_ended_failed": last,
            "feature_input_rows": rows,
            "flow_name": pd.Series(flow, dtype=object).to_numpy(),
        },
        index=index,
    )
    return X, pd.Series(y, index=index)


@pytest.fixture(scope="module")
def data() -> Data:
    """4,000 training rows, about 9 % failures."""
    return synthetic_features(4_000)


@pytest.fixture(scope="module")
def fitted(data: Data) -> FailureWarningModel:
    """One HGB model fitted on the synthetic rows, shared by read-only tests."""
    X, y = data
    return FailureWarningModel(family="hgb").fit(X, y)


@pytest.fixture(scope="module")
def stacked(data: Data) -> FailureWarningModel:
    """One stacked model (hgb and logreg weighed by the calibrator), shared by read-only tests."""
    return FailureWarningModel(family="stack").fit(*data)


@pytest.fixture(scope="module")
def fitted_logreg(data: Data) -> FailureWarningModel:
    """One logistic-regression model (scored through the plain Pipeline), shared by read-only tests."""
    X, y = data
    return FailureWarningModel(family="logreg").fit(X, y)


class TestChooseThreshold:
    """choose_threshold() applies the documented rules to out-of-fold risks."""

    Y = (1, 0, 1, 0, 0, 0, 0, 0, 0, 0)
    R = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0)

    @pytest.mark.parametrize(("target", "expected"), [(1.0, 0.9), (0.6, 0.7), (0.5, 0.6), (0.2, 0.0)])
    def test_precision_rule_takes_lowest_threshold_reaching_target(self, target: float, expected: float) -> None:
        """The lowest observed risk whose warned set has precision >= target."""
        assert choose_threshold(self.Y, self.R, "precision", target_precision=target) == expected

    def test_unreachable_precision_falls_back_to_budget(self) -> None:
        """If no threshold reaches the target, the budget rule decides."""
        y = [0, 1, 0, 0, 1, 0, 0, 0, 0, 0]
        assert choose_threshold(y, self.R, "precision", target_precision=0.9, alert_budget=0.3) == 0.7

    @pytest.mark.parametrize(("budget", "expected"), [(0.1, 0.9), (0.2, 0.8), (0.25, 0.8), (1.0, 0.0)])
    def test_budget_rule_warns_that_share(self, budget: float, expected: float) -> None:
        """The share of runs at or above the threshold does not exceed alert_budget."""
        assert choose_threshold(self.Y, self.R, "budget", alert_budget=budget) == expected

    def test_budget_rule_keeps_ties_together(self) -> None:
        """A group of equal risks is warned whole or not at all."""
        r = [0.9, 0.5, 0.5, 0.5, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]
        assert choose_threshold(self.Y, r, "budget", alert_budget=0.3) == 0.9

    def test_budget_smaller_than_top_group_warns_nothing(self) -> None:
        """If even the riskiest group exceeds the budget, the threshold is above every risk."""
        t = choose_threshold([1, 0], [0.5, 0.5], "budget", alert_budget=0.1)
        assert t > 0.5

    def test_empty_input_warns_nothing(self) -> None:
        """No risks, no threshold to find: inf."""
        assert choose_threshold([], [], "budget") == float("inf")

    @pytest.mark.parametrize(
        ("kwargs", "setting"),
        [
            ({"rule": "recall"}, "threshold_rule"),
            ({"alert_budget": 0.0}, "alert_budget"),
            ({"target_precision": 1.5}, "target_precision"),
        ],
    )
    def test_bad_settings_are_refused(self, kwargs: dict[str, Any], setting: str) -> None:
        """Unknown rules and out-of-range shares raise ConfigurationError naming the setting."""
        with pytest.raises(ConfigurationError, match=setting):
            choose_threshold(self.Y, self.R, **kwargs)


class TestMakePipeline:
    """make_pipeline() builds one calibrated Pipeline from raw feature rows to a probability."""

    @pytest.mark.slow  # fits a pipeline per family
    @pytest.mark.parametrize("family", ["hgb", "logreg", "mean", "stack"])
    def test_families_fit_and_score_raw_rows(self, family: str, data: Data) -> None:
        """Both families take the raw frame, including unseen categories and missing values."""
        X, y = data
        pipe = make_pipeline(feature_spec(X), family)
        assert isinstance(pipe, Pipeline)
        pipe.fit(X, y.to_numpy(dtype=int))
        odd = X.iloc[:2].copy()
        odd["flow_name"] = ["never-seen", None]
        odd["feature_input_rows"] = np.nan
        proba = pipe.predict_proba(odd)
        assert proba.shape == (2, 2)
        assert np.all((proba >= 0) & (proba <= 1))

    def test_calibration_scores_with_one_model(self, fitted: FailureWarningModel) -> None:
        """make_pipeline's CalibratedClassifierCV (the fallbacks') has ensemble=False; fit's pipeline is one
        classifier and one calibrator."""
        pipe = make_pipeline(fitted.feature_spec_, "hgb")
        assert pipe.named_steps["classifier"].ensemble is False
        calibrated = fitted.pipeline_.named_steps["classifier"]
        assert isinstance(calibrated, PrefitCalibratedClassifier)
        assert isinstance(calibrated.estimator, HistGradientBoostingClassifier)
        assert isinstance(calibrated.calibrator_, LogisticRegression)

    @pytest.mark.slow  # fits one pipeline per family
    @pytest.mark.parametrize("family", ["hgb", "logreg", "mean"])
    def test_scores_are_the_classifier_fitted_on_all_rows(self, family: str, data: Data) -> None:
        """The saved pipeline ranks runs as the uncalibrated classifier fitted on every row does (the
        calibrator is monotone), and its calibrator was fitted on out-of-time scores, not on these."""
        X, y = data
        model = FailureWarningModel(family=family).fit(X, y)
        plain = make_pipeline(feature_spec(X), family, calibration=None).fit(X, y.to_numpy(dtype=int))
        rows = X.iloc[:400]
        np.testing.assert_allclose(model.pipeline_.decision_function(rows), raw_score(plain, rows), rtol=0, atol=1e-12)
        order = np.argsort(raw_score(plain, rows), kind="stable")
        assert np.all(np.diff(model.risk(rows)[order]) >= 0)
        in_sample = LogisticRegression(C=np.inf).fit(raw_score(plain, X).reshape(-1, 1), y.to_numpy(dtype=int))
        assert model.pipeline_.named_steps["classifier"].calibrator_.coef_[0, 0] != in_sample.coef_[0, 0]

    def test_logreg_does_not_extrapolate_a_column_training_hardly_varied(self) -> None:
        """A value seen on 2 of 400 training rows lands ~14 deviations out; clipped at 5, its risk stays sane."""
        from forewarn.learning.features import FeatureSpec

        rng = np.random.default_rng(0)
        steady = np.ones(400)
        steady[:2] = 0.0  # e.g. "runs ended in the last hour": 1 for an hourly flow, 0 only on its first runs
        X = pd.DataFrame({"steady": steady, "signal": rng.normal(size=400)})
        y = np.r_[[1, 1], (rng.random(398) < 0.1).astype(int)]  # the two odd rows happened to fail
        pipe = make_pipeline(FeatureSpec(numeric=("steady", "signal"), categorical=()), "logreg", calibration=None)
        pipe.fit(X, y)
        inputs = pipe.named_steps["features"].transform(pd.DataFrame({"steady": [-3.0], "signal": [0.0]}))
        assert np.max(np.abs(inputs)) == 5.0
        risk = pipe.predict_proba(pd.DataFrame({"steady": [-3.0, 1.0], "signal": [0.0, 0.0]}))[:, 1]
        assert risk[0] < 0.99 and risk[1] < 0.2

    def test_unknown_family_is_refused(self, data: Data) -> None:
        """Only the documented families exist."""
        with pytest.raises(ConfigurationError, match="family"):
            make_pipeline(feature_spec(data[0]), "forest")


class TestFrameEncoder:
    """FrameEncoder turns raw feature rows into the matrix HGB reads, the same for one row or many."""

    FRAME = pd.DataFrame(
        {
            "x": [1.0, 2.0, None, 4.0, 5.0, 6.0],
            "flow": ["a", "a", "a", "b", "b", "rare"],
            "source": ["s", None, "s", "s", None, "s"],
        }
    )

    def _encoder(self) -> FrameEncoder:
        return FrameEncoder(("x",), ("flow", "source"), min_frequency=2).fit(self.FRAME)

    def test_codes_pool_rare_and_blank_unknown(self) -> None:
        """Frequent values get codes by frequency, rare ones share the next code, unseen ones are NaN."""
        new = pd.DataFrame({"x": [None, 3.0, 1.0], "flow": ["b", "rare", "never-seen"], "source": [None, "s", "s"]})
        out = self._encoder().transform(new)
        np.testing.assert_array_equal(out[:, 0], [np.nan, 3.0, 1.0])
        np.testing.assert_array_equal(out[:, 1], [1.0, 2.0, np.nan])  # a=0, b=1, infrequent=2
        np.testing.assert_array_equal(out[:, 2], [1.0, 0.0, 0.0])  # s=0, <none>=1

    def test_small_and_large_batches_agree(self) -> None:
        """The live-scoring fast path gives exactly the batch path's numbers."""
        enc = self._encoder()
        big = pd.concat([self.FRAME] * 20, ignore_index=True)
        batch = enc.transform(big)
        rows = np.vstack([enc.transform(big.iloc[[i]]) for i in range(len(big))])
        np.testing.assert_array_equal(rows, batch)

    def test_nullable_values_take_the_general_path(self) -> None:
        """pd.NA in an object column is read as missing."""
        row = pd.DataFrame(
            {"x": pd.array([pd.NA], dtype="Float64"), "flow": pd.array([pd.NA], dtype=object), "source": ["s"]}
        )
        np.testing.assert_array_equal(self._encoder().transform(row), [[np.nan, np.nan, 0.0]])

    def test_columns_encode_as_their_frame(self) -> None:
        """_encode_columns (explain's batch, no DataFrame) gives what transform() gives for the frame."""
        enc = self._encoder()
        columns = {name: self.FRAME[name].to_numpy() for name in ("source", "x", "flow")}
        np.testing.assert_array_equal(enc._encode_columns(columns), enc.transform(pd.DataFrame(columns)))

    def test_columns_are_found_by_name(self) -> None:
        """Extra and reordered columns do not matter."""
        enc = self._encoder()
        shuffled = self.FRAME[["source", "flow", "x"]].assign(extra=1)
        np.testing.assert_array_equal(enc.transform(shuffled), enc.transform(self.FRAME))


class TestFrameEncoderBins:
    """Many-valued numeric columns become the bin index HistGradientBoosting would find itself unweighted."""

    RNG = np.random.default_rng(7)
    FRAME = pd.DataFrame(
        {
            "wide": np.where(RNG.random(3000) < 0.1, np.nan, RNG.lognormal(size=3000)),  # ~2,700 distinct
            "narrow": RNG.integers(0, 40, 3000).astype(float),  # 40 distinct: passed through
            "flow": RNG.choice(["a", "b", "c"], 3000),
        }
    )

    def _encoder(self, **params: Any) -> FrameEncoder:
        return FrameEncoder(("wide", "narrow"), ("flow",), **params).fit(self.FRAME)

    def test_edges_are_scikit_learns_unweighted_thresholds(self) -> None:
        """bin_edges gives what HGB's own binning finds without sample weights, to the last bit."""
        from sklearn.ensemble._hist_gradient_boosting.binning import _find_binning_thresholds

        wide = self.FRAME["wide"].to_numpy()
        np.testing.assert_array_equal(bin_edges(wide), _find_binning_thresholds(wide, 255))
        assert bin_edges(self.FRAME["narrow"].to_numpy()) is None

    def test_wide_columns_become_bin_indexes_and_narrow_ones_stay(self) -> None:
        """The wide column holds 255 bin indexes (NaN kept, beyond the edges in the end bins); narrow is as given."""
        enc = self._encoder()
        out = enc.transform(self.FRAME)
        wide = out[:, 0]
        assert set(np.unique(wide[~np.isnan(wide)])) == set(range(255))
        np.testing.assert_array_equal(np.isnan(wide), self.FRAME["wide"].isna())
        np.testing.assert_array_equal(out[:, 1], self.FRAME["narrow"])
        far = pd.DataFrame({"wide": [-np.inf, -1e9, 1e9, np.inf, np.nan], "narrow": 1.0, "flow": "a"})
        np.testing.assert_array_equal(enc.transform(far)[:, 0], [0.0, 0.0, 254.0, 254.0, np.nan])

    def test_one_row_and_a_batch_bin_alike(self) -> None:
        """Live scoring's one-row comparison gives the batch path's searchsorted index for every value."""
        enc = self._encoder()
        rows = self.FRAME.iloc[:200]
        one_by_one = np.vstack([enc.transform(rows.iloc[[i]]) for i in range(200)])
        np.testing.assert_array_equal(one_by_one, enc.transform(rows))

    def test_binned_columns_grow_the_trees_raw_ones_do(self) -> None:
        """An unweighted HGB on the encoder's output predicts what one on the raw numbers predicts: binning in the
        encoder moves no split, it only spares scikit-learn's weighted search for the same bins."""
        y = (self.RNG.random(3000) < 1 / (1 + np.exp(-(np.nan_to_num(self.FRAME["wide"].to_numpy()) - 2)))).astype(int)
        enc = self._encoder()
        raw = enc.set_params(max_bins=None).fit(self.FRAME).transform(self.FRAME)
        binned = self._encoder().transform(self.FRAME)
        params = {"max_iter": 20, "early_stopping": False, "random_state": 0}
        on_raw = HistGradientBoostingClassifier(**params).fit(raw, y).predict_proba(raw)
        on_bins = HistGradientBoostingClassifier(**params).fit(binned, y).predict_proba(binned)
        np.testing.assert_allclose(on_bins, on_raw, rtol=0, atol=1e-12)

    @pytest.mark.parametrize("value", [1, 256, 2.5, "255", True])
    def test_bad_bin_count_is_refused(self, value: Any) -> None:
        """max_bins is a whole number from 2 to 255 (HistGradientBoosting's limit) or None."""
        with pytest.raises(ConfigurationError, match="max_bins"):
            self._encoder(max_bins=value)

    def test_an_encoder_pickled_before_bins_passes_numbers_through(self) -> None:
        """Unpickled without max_bins/binned_ (as saved before), transform leaves the numbers as they are."""
        enc = self._encoder(max_bins=None)
        state = {k: v for k, v in enc.__getstate__().items() if k not in ("max_bins", "binned_", "edges_")}
        old = FrameEncoder.__new__(FrameEncoder)
        old.__setstate__(state)
        assert old.get_params()["max_bins"] is None
        np.testing.assert_array_equal(old.transform(self.FRAME), enc.transform(self.FRAME))


class TestEstimatorContract:
    """FailureWarningModel honours scikit-learn's estimator contract."""

    def test_init_stores_hyperparameters_only(self) -> None:
        """Nothing is validated or learned in __init__; get_params returns what was given."""
        model = FailureWarningModel(family="nonsense", alert_budget=0.1)
        assert model.get_params()["family"] == "nonsense"
        assert not [k for k in vars(model) if k.endswith("_")]

    @pytest.mark.slow  # fits its own model
    def test_fit_returns_self_and_learns_underscored_attributes(self, data: Data) -> None:
        """fit() returns the estimator, with pipeline_, threshold_, feature_spec_ and counts."""
        X, y = data
        model = FailureWarningModel(family="logreg")
        assert model.fit(X, y) is model
        assert isinstance(model.pipeline_, Pipeline)
        assert 0.0 <= model.threshold_ <= 1.0
        assert model.feature_spec_ == feature_spec(X)
        assert model.n_train_runs_ == len(X)
        assert model.n_train_failures_ == int(y.sum())
        assert list(model.classes_) == [0, 1]

    def test_clone_gives_an_unfitted_copy(self, fitted: FailureWarningModel) -> None:
        """sklearn.base.clone keeps hyperparameters and drops learned state."""
        copy = clone(fitted)
        assert copy.get_params() == fitted.get_params()
        assert not hasattr(copy, "pipeline_")

    @pytest.mark.parametrize("method", ["predict_proba", "predict", "explain"])
    def test_unfitted_model_refuses_to_score(self, method: str, data: Data) -> None:
        """Scoring before fit raises NotFittedError."""
        with pytest.raises(NotFittedError):
            getattr(FailureWarningModel(), method)(data[0].iloc[[0]])

    def test_predict_proba_and_predict(self, fitted: FailureWarningModel, data: Data) -> None:
        """predict_proba is (n, 2) summing to 1; predict is risk >= threshold_."""
        X = data[0].iloc[:200]
        proba = fitted.predict_proba(X)
        assert proba.shape == (200, 2)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0)
        np.testing.assert_array_equal(fitted.predict(X), (proba[:, 1] >= fitted.threshold_).astype(int))

    @pytest.mark.slow  # fits its own model
    @pytest.mark.parametrize("family", ["hgb", "logreg"])
    def test_columns_are_matched_by_name(self, family: str, data: Data) -> None:
        """Reordered columns and extra columns give the same risks."""
        X, y = data
        model = FailureWarningModel(family=family).fit(X, y)
        shuffled = X[X.columns[::-1]].assign(unrelated=1.0)
        np.testing.assert_array_equal(model.predict_proba(shuffled.iloc[:50]), model.predict_proba(X.iloc[:50]))

    def test_missing_feature_column_is_a_schema_error(self, fitted: FailureWarningModel, data: Data) -> None:
        """A frame without a trained feature is refused by name."""
        with pytest.raises(FeatureSchemaError, match="feature_input_rows"):
            fitted.predict_proba(data[0].drop(columns=["feature_input_rows"]))

    @pytest.mark.slow  # fits its own model
    def test_unlabelled_rows_are_dropped(self, data: Data) -> None:
        """NaN labels (unfinished or cancelled runs) are not training rows."""
        X, y = data
        y = y.copy()
        y.iloc[:100] = np.nan
        model = FailureWarningModel(family="logreg").fit(X, y)
        assert model.n_train_runs_ == len(X) - 100

    @pytest.mark.slow  # fits two models
    def test_labels_align_by_index(self, data: Data) -> None:
        """A label Series in another order is aligned on flow_run_id."""
        X, y = data
        a = FailureWarningModel(family="logreg").fit(X, y)
        b = FailureWarningModel(family="logreg").fit(X, y.iloc[::-1])
        np.testing.assert_allclose(a.predict_proba(X.iloc[:20]), b.predict_proba(X.iloc[:20]))

    @pytest.mark.slow  # fits two models
    def test_same_random_state_same_model(self, data: Data) -> None:
        """Randomness goes through random_state only."""
        X, y = data
        a = FailureWarningModel(random_state=3).fit(X, y)
        b = FailureWarningModel(random_state=3).fit(X, y)
        np.testing.assert_array_equal(a.predict_proba(X.iloc[:50]), b.predict_proba(X.iloc[:50]))
        assert a.threshold_ == b.threshold_

    def test_bad_hyperparameter_is_reported_at_fit(self, data: Data) -> None:
        """A wrong family or rule raises ConfigurationError when fitting."""
        with pytest.raises(ConfigurationError, match="threshold_rule"):
            FailureWarningModel(threshold_rule="recall").fit(*data)


def _dump_without(model: FailureWarningModel, names: tuple[str, ...]) -> Any:
    """A joblib file of ``model`` as an older forewarn pickled it: without the attributes ``names``."""
    import io

    state = {k: v for k, v in model.__dict__.items() if k not in names}
    older = FailureWarningModel.__new__(FailureWarningModel)
    older.__dict__.update(state)
    buffer = io.BytesIO()
    joblib.dump(older, buffer)
    buffer.seek(0)
    return buffer


class TestThresholdOverSlices:
    """choose_threshold_over_slices() takes the median of the rule over consecutive time slices."""

    def test_median_of_the_slices_thresholds(self) -> None:
        """Each slice gets the rule's threshold; the threshold is their median."""
        y = [1, 0, 0, 0] * 10 + [1, 1, 0, 0] * 10 + [1, 0, 0, 0] * 10
        r = [0.9, 0.5, 0.2, 0.1] * 30
        t, per_slice = choose_threshold_over_slices(y, r, n_slices=3, target_precision=0.6)
        assert per_slice == [0.9, 0.2, 0.9]
        assert t == 0.9

    def test_one_slice_tail_does_not_move_it(self) -> None:
        """A slice whose precision comes back above target deep in its tail leaves the median alone."""
        rng = np.random.default_rng(0)
        risk = rng.random(4_000)
        y = (rng.random(4_000) < risk**3).astype(float)
        before, _ = choose_threshold_over_slices(y, risk, n_slices=4, target_precision=0.5)
        y[-1000:][risk[-1000:] < 0.3] = 1.0  # the last slice's low-risk tail fails
        after, per_slice = choose_threshold_over_slices(y, risk, n_slices=4, target_precision=0.5)
        assert per_slice[-1] < 0.01 < 0.4 < before  # that slice alone would warn nearly everything
        assert abs(after - before) < 0.05

    @pytest.mark.parametrize(("failures", "expected"), [(40, 4), (25, 2), (9, 1), (0, 1)])
    def test_fewer_slices_when_failures_are_few(self, failures: int, expected: int) -> None:
        """Each slice keeps at least MIN_SLICE_FAILURES (10) failures; never fewer than one slice."""
        y = np.zeros(400)
        y[np.linspace(0, 399, failures).astype(int)] = 1
        slices = time_slices(y, 4)
        assert len(slices) == expected
        assert slices[0].start == 0 and slices[-1].stop == 400

    @pytest.mark.parametrize("n_slices", [0, -1, 2.5, True])
    def test_bad_slice_count_is_refused(self, n_slices: Any) -> None:
        """Anything but a whole number >= 1 raises ConfigurationError naming threshold_slices."""
        with pytest.raises(ConfigurationError, match="threshold_slices"):
            time_slices([1, 0], n_slices)


class TestThreshold:
    """The threshold is chosen on the training data alone, out of fold and in time order."""

    def test_threshold_comes_from_the_latest_rows(self, fitted: FailureWarningModel, data: Data) -> None:
        """threshold_: the median over time slices of the rule applied to the latest ``threshold_holdout`` (30 %)
        of the rows, scored out of time by an uncalibrated classifier fitted on the earlier 70 % through the
        final model's calibrator, which was fitted on those very scores."""
        X, y = data
        assert fitted.threshold_holdout == 0.3
        n_hold = round(len(X) * 0.3)
        early = (
            FailureWarningModel(family="hgb")
            ._pipeline(feature_spec(X), 100, calibrated=False)
            .fit(X.iloc[:-n_hold], y.iloc[:-n_hold].to_numpy(dtype=int))
        )
        scores = early.decision_function(X.iloc[-n_hold:])
        platt = LogisticRegression(C=np.inf).fit(scores.reshape(-1, 1), y.iloc[-n_hold:].to_numpy(dtype=int))
        calibrator = fitted.pipeline_.named_steps["classifier"].calibrator_
        np.testing.assert_allclose(
            [calibrator.coef_[0, 0], calibrator.intercept_[0]], [platt.coef_[0, 0], platt.intercept_[0]]
        )
        risk = calibrated_risk(fitted.pipeline_, scores)
        expected, per_slice = choose_threshold_over_slices(y.iloc[-n_hold:], risk, n_slices=4, target_precision=0.5)
        assert fitted.threshold_source_ == "time_holdout"
        assert len(per_slice) > 1
        assert (fitted.threshold_, fitted.slice_thresholds_) == (expected, per_slice)

    def test_calibrated_risk_is_the_pipelines_own_mapping(self, fitted: FailureWarningModel, data: Data) -> None:
        """For the pipeline's own classifier's raw scores, calibrated_risk equals predict_proba."""
        X, _ = data
        pipe = fitted.pipeline_
        decision = pipe.named_steps["classifier"].estimator.decision_function(
            pipe.named_steps["features"].transform(X.iloc[:500])
        )
        np.testing.assert_allclose(calibrated_risk(pipe, decision), pipe.predict_proba(X.iloc[:500])[:, 1], atol=1e-12)
        old = make_pipeline(fitted.feature_spec_, "hgb").fit(X, data[1].to_numpy(dtype=int))  # as models saved before
        (member,) = old.named_steps["classifier"].calibrated_classifiers_
        decision = member.estimator.decision_function(old.named_steps["features"].transform(X.iloc[:500]))
        np.testing.assert_allclose(calibrated_risk(old, decision), old.predict_proba(X.iloc[:500])[:, 1], atol=1e-12)

    @pytest.mark.slow  # fits two models
    def test_fit_threads_do_not_change_the_model(self, fitted: FailureWarningModel, data: Data) -> None:
        """One fit thread or all cores: the same risks and threshold (the thread count is speed only)."""
        X, y = data
        one = FailureWarningModel(family="hgb", fit_threads=1).fit(X, y)
        assert one.threshold_ == fitted.threshold_
        np.testing.assert_array_equal(one.predict_proba(X.iloc[:300]), fitted.predict_proba(X.iloc[:300]))

    def test_model_pickled_before_slices_still_describes_itself(self, fitted: FailureWarningModel) -> None:
        """An older pickle without threshold_slices/fit_threads unpickles with what it was fitted with."""
        old = joblib.load(_dump_without(fitted, ("threshold_slices", "fit_threads", "slice_thresholds_")))
        assert old.get_params()["threshold_slices"] == 1 and old.slice_thresholds_ == [fitted.threshold_]
        assert "FailureWarningModel(" in repr(old)

    @pytest.mark.parametrize(("name", "value"), [("fit_threads", 0), ("n_threads", -2), ("fit_threads", "2")])
    def test_bad_thread_count_is_refused(self, data: Data, name: str, value: Any) -> None:
        """A thread count must be a whole number >= 1 or None."""
        with pytest.raises(ConfigurationError, match=name):
            FailureWarningModel(**{name: value}).fit(*data)

    def test_budget_rule_warns_about_that_share(self, data: Data) -> None:
        """With the budget rule, about alert_budget of new runs are warned."""
        X, y = data
        model = FailureWarningModel(family="logreg", threshold_rule="budget", alert_budget=0.1).fit(X, y)
        new_X, _ = synthetic_features(4_000, seed=7)
        assert 0.06 <= model.predict(new_X).mean() <= 0.14

    def test_precision_rule_roughly_holds_on_new_data(self, fitted: FailureWarningModel) -> None:
        """Warnings on fresh rows from the same process come true about half the time."""
        new_X, new_y = synthetic_features(8_000, seed=11)
        warned = fitted.predict(new_X).astype(bool)
        assert warned.sum() > 20
        assert 0.3 <= new_y[warned].mean() <= 0.8

    @pytest.mark.slow  # fits its own model
    @pytest.mark.parametrize(("late_failures", "source"), [(12, "kfold"), (5, "in_sample")])
    def test_fallbacks_when_failures_are_all_recent(self, data: Data, late_failures: int, source: str) -> None:
        """Too few failures before the holdout: shuffled out-of-fold risks, or in-sample ones as a last resort."""
        X, _ = data
        y = pd.Series(0.0, index=X.index)
        y.iloc[-late_failures:] = 1.0
        model = FailureWarningModel(family="logreg", min_failures=5).fit(X, y)
        assert model.threshold_source_ == source
        assert 0.0 <= model.threshold_ <= 1.0


class TestLargeTrainingSets:
    """Above max_fit_rows, each classifier fits on every failure and a weighted sample of the successes."""

    def test_majority_is_sampled_and_up_weighted(self, data: Data) -> None:
        """All failures stay; successes are sampled down to the cap, each weighing what it stands for."""
        y = data[1].to_numpy(dtype=int)
        rows, weight = FailureWarningModel(max_fit_rows=1_000)._fit_rows(y)
        assert rows is not None and weight is not None
        failures, successes = int(y.sum()), int((y == 0).sum())
        assert len(rows) == 1_000 and np.all(np.diff(rows) > 0)  # time order kept
        assert set(np.flatnonzero(y == 1)) <= set(rows.tolist())
        assert np.all(weight[y[rows] == 1] == 1.0)
        np.testing.assert_allclose(weight[y[rows] == 0], successes / (1_000 - failures))
        assert weight.sum() == pytest.approx(len(y))
        assert FailureWarningModel(max_fit_rows=None)._fit_rows(y) == (None, None)
        assert FailureWarningModel(max_fit_rows=len(y))._fit_rows(y) == (None, None)
        again, _ = FailureWarningModel(max_fit_rows=1_000)._fit_rows(y)
        np.testing.assert_array_equal(rows, again)  # seeded by random_state

    def test_never_fewer_successes_than_failures(self) -> None:
        """A cap below twice the failures keeps as many successes as failures."""
        y = np.r_[np.ones(300), np.zeros(3_000)].astype(int)
        rows, weight = FailureWarningModel(max_fit_rows=400)._fit_rows(y)
        assert rows is not None and weight is not None
        assert len(rows) == 600 and int(y[rows].sum()) == 300
        np.testing.assert_allclose(weight[y[rows] == 0], 10.0)

    @pytest.mark.slow  # fits two models
    def test_sampled_fit_ranks_about_as_well(self, fitted: FailureWarningModel, data: Data) -> None:
        """On fresh rows, a model fitted on half the successes ranks about as well and stays calibrated."""
        from sklearn.metrics import average_precision_score

        X, y = data
        sampled = FailureWarningModel(max_fit_rows=2_000).fit(X, y)
        new_X, new_y = synthetic_features(8_000, seed=11)
        full_ap = average_precision_score(new_y, fitted.risk(new_X))
        assert average_precision_score(new_y, sampled.risk(new_X)) > full_ap - 0.03
        assert sampled.risk(new_X).mean() == pytest.approx(new_y.mean(), abs=0.03)
        assert sampled.threshold_source_ == "time_holdout" and sampled.n_train_runs_ == len(X)

    @pytest.mark.parametrize("value", [0, "100", 2.5])
    def test_bad_cap_is_refused(self, data: Data, value: Any) -> None:
        """max_fit_rows is a whole number >= 1 or None."""
        with pytest.raises(ConfigurationError, match="max_fit_rows"):
            FailureWarningModel(max_fit_rows=value).fit(*data)

    def test_model_pickled_before_the_cap_fitted_on_every_row(self, fitted: FailureWarningModel) -> None:
        """An older pickle without max_fit_rows says it fitted on every row."""
        assert joblib.load(_dump_without(fitted, ("max_fit_rows",))).get_params()["max_fit_rows"] is None


class TestStackedFamily:
    """family="stack": hgb and logreg fitted on the same rows, their out-of-time scores weighed by the calibrator."""

    @pytest.mark.slow  # fits four classifiers and two more to compare with
    def test_members_are_fitted_on_all_rows_and_weighed_out_of_time(
        self, stacked: FailureWarningModel, data: Data
    ) -> None:
        """The saved members score as hgb and logreg fitted on every row; the calibrator has a weight for each,
        fitted on the holdout's out-of-time scores, and the threshold comes from that holdout."""
        X, y = data
        rows = X.iloc[:300]
        calibrated = stacked.pipeline_.named_steps["classifier"]
        assert isinstance(calibrated, PrefitCalibratedClassifier)
        assert isinstance(calibrated.estimator, StackedClassifier)
        assert calibrated.calibrator_.coef_.shape == (1, 2)
        scores = stacked.pipeline_.decision_function(rows)
        for column, family in enumerate(("hgb", "logreg")):
            alone = make_pipeline(feature_spec(X), family, calibration=None).fit(X, y.to_numpy(dtype=int))
            np.testing.assert_allclose(scores[:, column], raw_score(alone, rows), rtol=0, atol=1e-9)
        in_sample = LogisticRegression(C=np.inf).fit(stacked.pipeline_.decision_function(X), y.to_numpy(dtype=int))
        assert not np.allclose(calibrated.calibrator_.coef_, in_sample.coef_)
        assert stacked.threshold_source_ == "time_holdout"
        expected = expit(scores @ calibrated.calibrator_.coef_[0] + calibrated.calibrator_.intercept_[0])
        np.testing.assert_allclose(stacked.risk(rows), expected, rtol=0, atol=1e-12)

    @pytest.mark.slow  # fits four classifiers
    def test_saved_stack_loads_scores_and_explains_alike(
        self, stacked: FailureWarningModel, data: Data, tmp_path: Path
    ) -> None:
        """Save, load: the same risks, and explain() gives the saved model's reasons."""
        save_model(stacked, tmp_path, training_window=WINDOW, key=MODEL_KEY)
        model, manifest = load_model(tmp_path, key=MODEL_KEY)
        rows = data[0].iloc[:200]
        np.testing.assert_array_equal(model.predict_proba(rows), stacked.predict_proba(rows))
        assert manifest.threshold == stacked.threshold_
        row = data[0].iloc[[0]]
        reasons = model.explain(row)
        assert reasons and [r.text for r in reasons] == [r.text for r in stacked.explain(row)]

    @pytest.mark.slow  # fits four classifiers on a sample
    def test_a_sampled_stack_passes_its_weights_to_both_members(self, data: Data) -> None:
        """Above max_fit_rows each member fits on the weighted sample; the risk stays calibrated on fresh rows."""
        X, y = data
        model = FailureWarningModel(family="stack", max_fit_rows=2_000).fit(X, y)
        new_X, new_y = synthetic_features(8_000, seed=11)
        assert model.risk(new_X).mean() == pytest.approx(new_y.mean(), abs=0.03)

    def test_isotonic_calibration_is_refused(self, data: Data) -> None:
        """Isotonic regression maps one score; a stack has two, so only 'sigmoid' is accepted."""
        with pytest.raises(ConfigurationError, match="calibration"):
            FailureWarningModel(family="stack", calibration="isotonic").fit(*data)


class TestFitsSideBySide:
    """The threshold's copy and the final classifier fit at once, sharing the fit threads."""

    @staticmethod
    def _openmp_threads_seen() -> int:
        from threadpoolctl import threadpool_info

        return min(int(lib["num_threads"]) for lib in threadpool_info() if lib["user_api"] == "openmp")

    def test_jobs_share_the_threads_and_keep_their_order(self) -> None:
        """Two threads: each job on one, side by side (both running at once); one thread: in turn, on it."""
        import threading

        from forewarn.learning.model.estimator import _side_by_side

        both_running = threading.Barrier(2, timeout=30)

        def job(name: str) -> tuple[str, int]:
            both_running.wait()  # deadlocks (BrokenBarrierError) unless the other job runs at the same time
            return name, self._openmp_threads_seen()

        assert _side_by_side([lambda: job("early"), lambda: job("final")], 2) == [("early", 1), ("final", 1)]
        assert _side_by_side([lambda: "early", lambda: "final"], 1) == ["early", "final"]

    def test_a_failing_job_raises_its_error(self) -> None:
        """What a fit raises in its thread reaches the caller."""
        from forewarn.learning.model.estimator import _side_by_side

        def broken() -> None:
            raise ValueError("the classifier refused")

        with pytest.raises(ValueError, match="the classifier refused"):
            _side_by_side([lambda: 1, broken], 2)


class TestInsufficientHistory:
    """Too little history is refused with a message that says what to do."""

    def test_too_few_failures(self, data: Data) -> None:
        """Counts, the requirement and the way out are all in the message."""
        X, y = data
        y = y.copy()
        y[y == 1] = 0
        y.iloc[:5] = 1
        with pytest.raises(InsufficientHistoryError) as info:
            FailureWarningModel().fit(X, y)
        text = str(info.value)
        assert "5 failure(s)" in text and "at least 200 runs and 20 failures" in text
        assert "forewarn simulate" in text
        assert isinstance(info.value, ValueError)

    def test_too_few_runs(self, data: Data) -> None:
        """min_runs is enforced as well."""
        X, y = data
        with pytest.raises(InsufficientHistoryError, match="1000 runs"):
            FailureWarningModel(min_runs=1_000).fit(X.iloc[:500], y.iloc[:500])


class TestExplain:
    """explain() gives the top reasons in words, model-agnostically."""

    def _riskiest(self, fitted: FailureWarningModel, X: pd.DataFrame) -> pd.DataFrame:
        return X.iloc[[int(np.argmax(fitted.predict_proba(X)[:, 1]))]]

    def test_reasons_are_sorted_and_worded(self, fitted: FailureWarningModel, data: Data) -> None:
        """Largest effect first; text names value, usual value and direction."""
        row = self._riskiest(fitted, data[0])
        reasons = fitted.explain(row, top=3)
        assert 1 <= len(reasons) <= 3
        assert all(isinstance(r, Reason) for r in reasons)
        sizes = [abs(r.contribution) for r in reasons]
        assert sizes == sorted(sizes, reverse=True)
        top = reasons[0]
        size = f"risk by {abs(top.contribution):.2g}"
        assert top.text.endswith((f"raises {size}", f"lowers {size}"))
        assert top.feature not in top.text or top.feature.startswith("feature_")  # words, not column names
        assert str(top) == top.text

    def test_raising_only_keeps_what_raises_risk(self, fitted: FailureWarningModel, data: Data) -> None:
        """A warning's reasons: only features whose value raises this run's risk."""
        risk = fitted.predict_proba(data[0])[:, 1]
        row = data[0].iloc[[int(np.argsort(risk)[len(risk) // 2])]]  # a middling run: pushed both ways
        both = fitted.explain(row, top=50)
        raising = fitted.explain(row, top=50, raising_only=True)
        assert raising == [r for r in both if r.contribution > 0]
        assert any(r.contribution < 0 for r in both)  # there was something to leave out

    def test_no_history_and_absent_attributes_are_no_reasons(self, fitted: FailureWarningModel, data: Data) -> None:
        """A flow that never ran reads "no history for this flow yet"; a missing attribute is not a reason."""
        row = data[0].iloc[[0]].copy()
        row["flow_name"] = "never-ran-before"
        for name in ("flow_runs_seen", "version_runs_seen", "parameters_runs_seen"):
            row[name] = 0.0
        for name in [n for n in fitted.feature_spec_.numeric if n.startswith("feature_")]:
            row[name] = np.nan
        texts = [r.text for r in fitted.explain(row, top=len(fitted.feature_spec_.names))]
        assert not any("failed" in t and "% of its" in t for t in texts if "this flow " in t)
        assert not any(" = missing" in t or "nan" in t for t in texts)
        rate = [r for r in fitted.explain(row, top=50) if r.feature == "flow_failure_rate_smoothed"]
        assert all(r.text.startswith("no history for this flow yet") for r in rate)

    def test_contribution_is_the_risk_change(self, fitted: FailureWarningModel, data: Data) -> None:
        """contribution = risk(row) - risk(row with that feature at its training baseline)."""
        row = self._riskiest(fitted, data[0])
        reason = fitted.explain(row, top=1)[0]
        swapped = row.copy()
        swapped[reason.feature] = fitted.feature_baseline_[reason.feature]
        expected = fitted.predict_proba(row)[0, 1] - fitted.predict_proba(swapped)[0, 1]
        assert reason.contribution == pytest.approx(expected, abs=1e-9)

    @pytest.mark.parametrize("family", ["hgb", "logreg"])
    def test_scores_all_variants_in_one_call(
        self,
        family: str,
        fitted: FailureWarningModel,
        fitted_logreg: FailureWarningModel,
        data: Data,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """The row and every one-feature variant are scored as one batch (hgb: encoded, logreg: Pipeline)."""
        model = fitted if family == "hgb" else fitted_logreg
        calls: list[int] = []
        if family == "hgb":
            real_proba = sklearn_fast.calibrated_proba

            def counting(calibrated: Any, Xt: np.ndarray) -> np.ndarray | None:
                calls.append(len(Xt))
                return real_proba(calibrated, Xt)

            monkeypatch.setattr(sklearn_fast, "calibrated_proba", counting)
        else:
            real = type(model.pipeline_).predict_proba

            def counting_pipeline(self: Pipeline, X: pd.DataFrame, **kw: Any) -> np.ndarray:
                calls.append(len(X))
                return real(self, X, **kw)

            monkeypatch.setattr(type(model.pipeline_), "predict_proba", counting_pipeline)
        model.explain(data[0].iloc[[0]])
        assert calls == [len(model.feature_spec_.names) + 1]

    def test_features_at_their_usual_value_are_not_reasons(self, fitted: FailureWarningModel, data: Data) -> None:
        """A row equal to the baseline has no reasons."""
        row = data[0].iloc[[0]].copy()
        for name, value in fitted.feature_baseline_.items():
            row[name] = value
        assert fitted.explain(row) == []

    def test_one_row_only(self, fitted: FailureWarningModel, data: Data) -> None:
        """explain() is for one run at a time."""
        with pytest.raises(ValueError, match="one feature row"):
            fitted.explain(data[0].iloc[:2])


def _odd_rows(X: pd.DataFrame) -> list[pd.DataFrame]:
    """Rows with values live scoring may meet: missing, unseen or NA categories, NaN/inf/int/nullable numbers."""
    base = X.iloc[[7]]
    return [
        base.assign(flow_name=None),
        base.assign(flow_name=np.nan),
        base.assign(flow_name="never-seen"),
        base.assign(flow_name=pd.array([pd.NA], dtype=object)),
        base.astype({"flow_name": "category"}),
        base.assign(feature_input_rows=np.nan, flow_failure_rate_smoothed=np.inf),
        base.assign(feature_input_rows=pd.array([None], dtype="Float64")),
        base.assign(feature_input_rows=np.array([70_000], dtype=np.int64)),
        base.assign(flow_last_ended_failed=np.array([None], dtype=object)),
        base[base.columns[::-1]].assign(unrelated="x"),
    ]


def _reference_explain(model: FailureWarningModel, row: pd.DataFrame) -> list[tuple[str, float]]:
    """explain()'s definition, spelled out: one plain Pipeline call per feature swapped to its baseline."""
    risk = model.pipeline_.predict_proba(row)[0, 1]
    contributions = []
    for name in model.feature_spec_.names:
        swapped = row.copy()
        swapped[name] = model.feature_baseline_[name]
        contributions.append(risk - model.pipeline_.predict_proba(swapped)[0, 1])
    c = np.asarray(contributions)
    order = [i for i in np.argsort(-np.abs(c), kind="stable") if abs(c[i]) >= 1e-9]
    # a value that states no fact (missing, no history) is no reason, and one fact is said once
    said, kept = set(), []
    values = row.iloc[0].to_dict()
    for i in order:
        name = model.feature_spec_.names[i]
        text = reason_text(name, values[name], model.feature_baseline_[name], values)
        if text is not None and text not in said:
            said.add(text)
            kept.append((name, float(c[i])))
    return kept


def _assert_reasons(model: FailureWarningModel, row: pd.DataFrame) -> None:
    """explain(row) gives the reference's features in its order, with its contributions and the row's values."""
    reasons = model.explain(row, top=len(model.feature_spec_.names))
    expected = _reference_explain(model, row)
    assert [r.feature for r in reasons] == [name for name, _ in expected]
    for reason, (name, c) in zip(reasons, expected, strict=True):
        assert reason.contribution == pytest.approx(c, abs=1e-12)
        value = row.iloc[0][name]
        assert (pd.isna(value) and pd.isna(reason.value)) or reason.value == value


class TestFastScoring:
    """Small batches of an hgb or stack model skip the Pipeline's per-call overhead, with its exact results."""

    def test_hgb_takes_the_fast_path_and_logreg_does_not(
        self, fitted: FailureWarningModel, fitted_logreg: FailureWarningModel
    ) -> None:
        """Otherwise the equality tests below would compare the Pipeline with itself."""
        assert sklearn_fast.hgb_parts(fitted.pipeline_) is not None
        assert sklearn_fast.hgb_parts(fitted_logreg.pipeline_) is None
        assert sklearn_fast.hgb_parts(Pipeline([("classifier", CalibratedClassifierCV())])) is None

    def test_stack_takes_its_fast_path(self, stacked: FailureWarningModel, fitted: FailureWarningModel) -> None:
        """A stacked model is read off as hgb's parts plus the logistic regression's; nothing else is."""
        parts = sklearn_fast.stack_parts(stacked.pipeline_)
        assert parts is not None and parts.logreg.categorical == ("flow_name",)
        assert sklearn_fast.stack_parts(stacked.pipeline_) is parts  # read once per fitted pipeline
        assert sklearn_fast.stack_parts(fitted.pipeline_) is None
        assert sklearn_fast.logreg_parts(fitted.pipeline_) is None

    @pytest.mark.slow  # fits four classifiers
    def test_stack_with_rare_and_unseen_categories_scores_as_the_pipeline(self, data: Data) -> None:
        """Values pooled as infrequent, never seen, missing or NaN: the fast path gives the Pipeline's risk."""
        X, y = data
        X = X.assign(flow_name=np.where(np.arange(len(X)) < 15, "rare-flow", X["flow_name"].to_numpy(dtype=object)))
        model = FailureWarningModel(family="stack").fit(X, y)
        assert sklearn_fast.stack_parts(model.pipeline_).logreg.other_coef[0] != 0.0  # an infrequent column
        rows = X.iloc[:8].copy()
        rows["flow_name"] = ["rare-flow", "never-seen", None, np.nan, *X["flow_name"].iloc[4:8]]
        numeric = [c for c in model.feature_spec_.numeric if c != "flow_failure_rate_smoothed"][:3]
        rows.loc[rows.index[4], numeric] = np.nan
        for row in [rows.iloc[[i]] for i in range(len(rows))] + [rows]:
            np.testing.assert_allclose(model.predict_proba(row), model.pipeline_.predict_proba(row), rtol=0, atol=1e-12)

    @pytest.mark.parametrize(
        ("version", "tested"),
        [("1.4.2", False), (sklearn_fast.TESTED_SKLEARN_VERSIONS[0], True), ("1.10.0", False), ("2.0.dev0", False)],
    )
    def test_only_tested_sklearn_releases_take_it(self, version: str, tested: bool) -> None:
        """The fast path is declared for a range of scikit-learn releases, the installed one among them."""
        assert sklearn_fast.in_tested_range(version) is tested
        assert sklearn_fast.ENABLED is sklearn_fast.in_tested_range(sklearn.__version__)

    def test_outside_the_tested_range_the_pipeline_scores(
        self, fitted: FailureWarningModel, data: Data, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With another scikit-learn release, one row and explain() go through Pipeline.predict_proba."""
        monkeypatch.setattr(sklearn_fast, "ENABLED", sklearn_fast.in_tested_range("1.10.0"))
        calls: list[int] = []
        real = Pipeline.predict_proba

        def counting(self: Pipeline, X: pd.DataFrame, **kw: Any) -> np.ndarray:
            calls.append(len(X))
            return real(self, X, **kw)

        monkeypatch.setattr(Pipeline, "predict_proba", counting)
        row = data[0].iloc[[3]]
        assert sklearn_fast.hgb_parts(fitted.pipeline_) is None
        fitted.risk(row)
        fitted.explain(row)
        assert calls == [1, len(fitted.feature_spec_.names) + 1]

    @pytest.mark.parametrize("family", ["hgb", "stack"])
    def test_one_row_does_not_call_the_pipeline(
        self,
        family: str,
        fitted: FailureWarningModel,
        stacked: FailureWarningModel,
        data: Data,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """risk() and explain() of one row never reach Pipeline.predict_proba."""
        model = fitted if family == "hgb" else stacked

        def forbidden(*args: Any, **kwargs: Any) -> None:
            raise AssertionError("Pipeline.predict_proba called for one row")

        monkeypatch.setattr(Pipeline, "predict_proba", forbidden)
        row = data[0].iloc[[3]]
        model.risk(row)
        model.explain(row)

    @pytest.mark.slow  # 20 batches through both scoring paths, for each of 10 cases
    @pytest.mark.parametrize("family", ["hgb", "logreg", "stack"])
    @pytest.mark.parametrize("n_rows", [1, 2, 37, 128, 129])
    def test_risk_equals_the_pipeline(
        self,
        family: str,
        n_rows: int,
        fitted: FailureWarningModel,
        fitted_logreg: FailureWarningModel,
        stacked: FailureWarningModel,
        data: Data,
    ) -> None:
        """Single rows and small batches score exactly as pipeline_.predict_proba does."""
        model = {"hgb": fitted, "logreg": fitted_logreg, "stack": stacked}[family]
        X = data[0]
        batches = [X.iloc[i : i + n_rows] for i in range(0, min(40 * n_rows, len(X) - n_rows), 2 * n_rows)][:20]
        for rows in batches:
            np.testing.assert_allclose(
                model.predict_proba(rows), model.pipeline_.predict_proba(rows), rtol=0, atol=1e-12
            )

    @pytest.mark.parametrize("family", ["hgb", "stack"])
    def test_odd_values_score_as_in_the_pipeline(
        self, family: str, fitted: FailureWarningModel, stacked: FailureWarningModel, data: Data
    ) -> None:
        """Missing, unseen and nullable values give the Pipeline's risk, one row at a time and as a batch."""
        model = fitted if family == "hgb" else stacked
        rows = _odd_rows(data[0])
        for row in rows:
            try:
                expected = model.pipeline_.predict_proba(row)[:, 1]
            except ValueError:  # the stack's logistic regression refuses infinity: so does its fast path
                assert family == "stack"
                with pytest.raises(ValueError, match="infinity"):
                    model.risk(row)
                continue
            np.testing.assert_allclose(model.risk(row), expected, rtol=0, atol=1e-12)

    @pytest.mark.slow  # fits a model per calibration
    @pytest.mark.parametrize("kind", ["isotonic", "cv", "ensemble"])
    def test_other_calibrations_score_as_in_the_pipeline(self, kind: str, data: Data) -> None:
        """Isotonic calibrators, make_pipeline's CalibratedClassifierCV (models saved before, the fallbacks)
        and several calibrated members (ensemble=True) score as sklearn does."""
        X, y = data
        model = FailureWarningModel(family="hgb", calibration="isotonic" if kind == "isotonic" else "sigmoid").fit(X, y)
        if kind != "isotonic":
            pipe = make_pipeline(feature_spec(X), "hgb")
            pipe.set_params(classifier__ensemble=kind == "ensemble")
            model.pipeline_ = pipe.fit(X, y.to_numpy(dtype=int))
            assert len(model.pipeline_.named_steps["classifier"].calibrated_classifiers_) == (
                3 if kind == "ensemble" else 1
            )
        assert sklearn_fast.hgb_parts(model.pipeline_) is not None
        for rows in [X.iloc[[i]] for i in range(0, 400, 20)] + [X.iloc[:50]]:
            np.testing.assert_allclose(
                model.predict_proba(rows), model.pipeline_.predict_proba(rows), rtol=0, atol=1e-12
            )
        _assert_reasons(model, X.iloc[[5]])

    @pytest.mark.slow  # a brute-force reference, one feature at a time
    @pytest.mark.parametrize("family", ["hgb", "logreg", "stack"])
    def test_explain_matches_the_per_feature_reference(
        self,
        family: str,
        fitted: FailureWarningModel,
        fitted_logreg: FailureWarningModel,
        stacked: FailureWarningModel,
        data: Data,
    ) -> None:
        """Same reasons, same order, same contributions as swapping each feature and re-scoring alone."""
        model = {"hgb": fitted, "logreg": fitted_logreg, "stack": stacked}[family]
        X = data[0]
        riskiest = np.argsort(-model.risk(X))[:10].tolist()
        rows = [X.iloc[[i]] for i in [*riskiest, 0, 1, 2]] + _odd_rows(X)[:4]
        for row in rows:
            _assert_reasons(model, row)


class TestPersistence:
    """save_model()/load_model() keep the model, verify it and refuse what does not fit."""

    def test_roundtrip_gives_identical_probabilities(
        self, fitted: FailureWarningModel, data: Data, tmp_path: Path
    ) -> None:
        """The loaded model scores exactly like the saved one; the manifest describes it."""
        manifest = save_model(
            fitted, tmp_path, training_window=WINDOW, backtest_metrics={"pr_auc": np.nan}, key=MODEL_KEY
        )
        model, loaded = load_model(tmp_path, key=MODEL_KEY)
        X = data[0].iloc[:300]
        np.testing.assert_array_equal(model.predict_proba(X), fitted.predict_proba(X))
        assert type(model.pipeline_.named_steps["classifier"]) is PrefitCalibratedClassifier
        assert loaded == manifest
        assert loaded.feature_names == tuple(fitted.feature_spec_.names)
        assert loaded.feature_spec == fitted.feature_spec_
        assert loaded.feature_types["flow_name"] == "categorical"
        assert loaded.threshold == fitted.threshold_ and loaded.threshold_rule == "precision"
        assert loaded.n_train_failures == fitted.n_train_failures_
        assert loaded.training_window == (WINDOW[0].to_pydatetime(), WINDOW[1].to_pydatetime())
        assert loaded.backtest_metrics == {"pr_auc": None}
        assert {"forewarn", "scikit-learn", "pandas", "numpy", "joblib", "python"} <= set(loaded.library_versions)
        assert (tmp_path / manifest.version / "model.joblib").is_file()

    def test_model_calibrated_by_cross_validation_still_loads(
        self, fitted: FailureWarningModel, data: Data, tmp_path: Path
    ) -> None:
        """A model whose pipeline holds a CalibratedClassifierCV (saved before, or a fallback) loads and scores."""
        X, y = data
        older = clone(fitted)
        older.__dict__.update({k: v for k, v in fitted.__dict__.items() if k.endswith("_")})
        older.pipeline_ = make_pipeline(fitted.feature_spec_, "hgb").fit(X, y.to_numpy(dtype=int))
        save_model(older, tmp_path, training_window=WINDOW, key=MODEL_KEY)
        model, _ = load_model(tmp_path, key=MODEL_KEY)
        assert type(model.pipeline_.named_steps["classifier"]) is CalibratedClassifierCV
        np.testing.assert_array_equal(model.predict_proba(X.iloc[:300]), older.predict_proba(X.iloc[:300]))
        np.testing.assert_array_equal(model.predict_proba(X.iloc[[7]]), older.pipeline_.predict_proba(X.iloc[[7]]))

    def test_version_names_time_and_checksum(self, fitted: FailureWarningModel, tmp_path: Path) -> None:
        """version is <UTC time>-<sha256 prefix> and manifest.json is plain JSON."""
        manifest = save_model(fitted, tmp_path, training_window=WINDOW, key=MODEL_KEY)
        stamp, digest = manifest.version.split("-")[:2]
        assert len(stamp) == 16 and stamp.endswith("Z") and manifest.sha256.startswith(digest)
        raw = json.loads((tmp_path / manifest.version / "manifest.json").read_text())
        assert ModelManifest.from_json(raw) == manifest
        assert not list(tmp_path.glob(".*"))  # no staging or temp files left behind

    @pytest.mark.parametrize("target", ["models", "version", "manifest"])
    def test_load_accepts_dir_version_or_manifest(
        self, fitted: FailureWarningModel, tmp_path: Path, target: str
    ) -> None:
        """The models directory, a version directory and a manifest path all load."""
        manifest = save_model(fitted, tmp_path, training_window=WINDOW, key=MODEL_KEY)
        path = {
            "models": tmp_path,
            "version": tmp_path / manifest.version,
            "manifest": tmp_path / manifest.version / "manifest.json",
        }[target]
        assert load_model(path, key=MODEL_KEY)[1].version == manifest.version

    def test_latest_points_to_newest(self, fitted: FailureWarningModel, tmp_path: Path) -> None:
        """Each save moves latest.json to the version just written."""
        first = save_model(fitted, tmp_path, training_window=WINDOW, key=MODEL_KEY)
        second = save_model(fitted, tmp_path, training_window=WINDOW, extra={"note": "second"}, key=MODEL_KEY)
        assert first.version != second.version
        assert json.loads((tmp_path / "latest.json").read_text())["version"] == second.version
        assert load_model(tmp_path, key=MODEL_KEY)[1].extra == {"note": "second"}

    def test_tampered_artifact_is_never_unpickled(
        self, fitted: FailureWarningModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Flipping one byte makes load refuse with ChecksumMismatchError before joblib.load runs."""
        manifest = save_model(fitted, tmp_path, training_window=WINDOW, key=MODEL_KEY)
        artifact = tmp_path / manifest.version / "model.joblib"
        blob = bytearray(artifact.read_bytes())
        blob[len(blob) // 2] ^= 0x01
        artifact.write_bytes(bytes(blob))

        def forbidden(*args: Any, **kwargs: Any) -> None:
            raise AssertionError("joblib.load called on unverified bytes")

        monkeypatch.setattr(joblib, "load", forbidden)
        with pytest.raises(ChecksumMismatchError, match="was NOT loaded") as info:
            load_model(tmp_path, key=MODEL_KEY)
        assert info.value.path == artifact

    def test_feature_schema_mismatch_is_refused(self, fitted: FailureWarningModel, data: Data, tmp_path: Path) -> None:
        """Missing, extra and retyped features are listed, with the way out."""
        save_model(fitted, tmp_path, training_window=WINDOW, key=MODEL_KEY)
        offered = data[0].drop(columns=["feature_input_rows"]).assign(new_feature=1.0)
        offered["flow_last_ended_failed"] = offered["flow_last_ended_failed"].map({0.0: "no", 1.0: "yes"})
        with pytest.raises(FeatureSchemaError) as info:
            load_model(tmp_path, expected_spec=feature_spec(offered), key=MODEL_KEY)
        text = str(info.value)
        assert "missing: feature_input_rows" in text and "extra: new_feature" in text
        assert "flow_last_ended_failed (numeric -> categorical)" in text
        assert "retrain with `forewarn train`" in text

    def test_matching_schema_loads(self, fitted: FailureWarningModel, data: Data, tmp_path: Path) -> None:
        """The spec the model was trained on is accepted."""
        save_model(fitted, tmp_path, training_window=WINDOW, key=MODEL_KEY)
        load_model(tmp_path, expected_spec=feature_spec(data[0]), key=MODEL_KEY)

    @pytest.mark.parametrize("make", ["absent", "empty"])
    def test_no_model_says_train_first(self, tmp_path: Path, make: str) -> None:
        """A missing or empty models directory names the command to run."""
        where = tmp_path / "models"
        if make == "empty":
            where.mkdir()
        with pytest.raises(ModelError, match=r"no model in .*: run `forewarn train` first"):
            load_model(where, key=MODEL_KEY)

    def test_unfitted_model_cannot_be_saved(self, tmp_path: Path) -> None:
        """Only a fitted model has anything to save."""
        with pytest.raises(NotFittedError):
            save_model(FailureWarningModel(), tmp_path, training_window=WINDOW, key=MODEL_KEY)


class TestEmptyFeatureColumns:
    def test_all_missing_numeric_column_is_ignored_not_fatal(self) -> None:
        """A feature_* column with no value in the training rows trains (as a constant) and scores."""
        from forewarn.learning.model import FrameEncoder

        frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "only_new_runs": [np.nan] * 3, "flow": ["a", "b", "b"]})
        encoder = FrameEncoder(["x", "only_new_runs"], ["flow"], min_frequency=1).fit(frame)
        assert encoder.transform(frame)[:, 1].tolist() == [0.0, 0.0, 0.0]
        late = pd.DataFrame({"x": [1.0], "only_new_runs": [7.0], "flow": ["a"]})
        assert encoder.transform(late)[0, 1] == 0.0  # unseen in training: carries no learned meaning
