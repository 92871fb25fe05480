"""The failure-warning model: one calibrated scikit-learn Pipeline, a threshold, a manifest.

:class:`FailureWarningModel` follows scikit-learn's estimator contract. ``fit(X, y)`` takes the feature
frame from :func:`forewarn.learning.features.build_features` (rows in time order) and the labels from
:func:`forewarn.learning.features.failure_labels`, and learns

* ``pipeline_`` - one :class:`~sklearn.pipeline.Pipeline` from *raw* feature rows to a calibrated failure
  probability (column encoding, classifier and calibration all inside it; nothing is re-implemented at
  scoring time);
* ``threshold_`` - the risk at or above which a run is warned, chosen on the training data alone from
  out-of-fold risks (see :func:`choose_threshold` and ``fit``).

:func:`save_model` writes ``<dir>/<version>/model.joblib`` plus ``manifest.json`` and then points
``<dir>/latest.json`` at it; :func:`load_model` verifies the artifact's SHA-256 *before* unpickling it and
refuses a model trained on other features.

Example::

    >>> model = FailureWarningModel(family="hgb", threshold_rule="precision", target_precision=0.5)
    >>> model.get_params()["alert_budget"]
    0.05
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import platform
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import sklearn.calibration
from scipy.special import expit  # scipy: a dependency of scikit-learn's; expit is what it calibrates with
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import Pipeline
from sklearn.pipeline import make_pipeline as _sk_make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import ThreadpoolController

from forewarn.errors import (
    ChecksumMismatchError,
    ConfigurationError,
    FeatureSchemaError,
    InsufficientHistoryError,
    ModelError,
)
from forewarn.learning._json import jsonable
from forewarn.learning.features import NONE, FeatureSpec, feature_spec

FAMILIES: tuple[str, ...] = ("hgb", "logreg")
"""Classifier families :func:`make_pipeline` knows: HistGradientBoosting and logistic regression."""

DEFAULT_FAMILY = "hgb"
"""Chosen from the walk-forward comparison in ``docs/model.md``."""

THRESHOLD_RULES: tuple[str, ...] = ("precision", "budget")

MIN_CATEGORY_COUNT = 20
"""Categories seen fewer times than this in training are pooled as "infrequent"."""

MAX_HGB_CATEGORIES = 250
"""At most this many codes per categorical feature; the rarest categories beyond it are pooled."""

SMALL_BATCH = 64
"""Up to this many rows, :class:`FrameEncoder` takes its fast path for live scoring."""

MISSING_CATEGORY = NONE


MODEL_FILE = "model.joblib"
MANIFEST_FILE = "manifest.json"
LATEST_FILE = "latest.json"
MANIFEST_FORMAT = 1


# --------------------------------------------------------------------------------------------- pipeline


def _numeric_block(X: pd.DataFrame) -> np.ndarray:
    """Numeric feature columns as a float matrix; missing values (None, NA, NaN) become NaN."""
    return np.asarray(X.to_numpy(dtype=float, na_value=np.nan), dtype=float)


def _categorical_block(X: pd.DataFrame) -> np.ndarray:
    """Categorical feature columns as strings; missing values become the category ``"<none>"``."""
    values = X.to_numpy(dtype=object)
    out = values.astype(str).astype(object)
    out[pd.isna(values)] = MISSING_CATEGORY
    return out


def _column_positions(columns: pd.Index, names: Sequence[str]) -> np.ndarray:
    """``columns.get_indexer(names)`` (-1: absent) via a dict: a ~35-name lookup costs ~100 us in pandas."""
    if not columns.is_unique:  # get_indexer raises InvalidIndexError, as it always did here
        return np.asarray(columns.get_indexer(names))
    where = {name: i for i, name in enumerate(columns.tolist())}
    return np.fromiter((where.get(name, -1) for name in names), dtype=np.intp, count=len(names))


_OPENMP: Any = None


def _openmp_threads(n: int | None) -> Any:
    """A context manager limiting OpenMP (HistGradientBoosting's threads) to ``n``; ``None``: no limit.

    Uses one cached OpenMP-only controller, so entering it costs microseconds, not the milliseconds of a
    fresh ``threadpool_limits`` (which scans every loaded library). The limit is process-wide.
    """
    global _OPENMP
    if n is None:
        return contextlib.nullcontext()
    if _OPENMP is None:
        _OPENMP = ThreadpoolController().select(user_api="openmp")
    return _OPENMP.limit(limits=n)


class FrameEncoder(TransformerMixin, BaseEstimator):
    """Raw feature rows to the float matrix HistGradientBoosting reads: numbers, then category codes.

    Numeric columns become float64 (None/NA -> NaN, which HistGradientBoosting routes as "missing").
    Each categorical column's values seen at least ``min_frequency`` times in training (at most
    ``max_categories - 1`` of them, most frequent first) get codes ``0..k-1``; rarer training values
    share code ``k`` ("infrequent"); values never seen in training become NaN ("missing"). Missing input
    is the category ``"<none>"``, as :func:`forewarn.learning.features.build_features` writes it.

    This is :class:`~sklearn.compose.ColumnTransformer` plus
    :class:`~sklearn.preprocessing.OrdinalEncoder` specialised to one job, because scoring one row
    through those costs about 1.3 ms, more than the live scoring budget (see ``docs/model.md``).

    Example::

        >>> frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "flow": ["a", "b", "b"]})
        >>> enc = FrameEncoder(["x"], ["flow"], min_frequency=1).fit(frame)
        >>> enc.transform(pd.DataFrame({"x": [None], "flow": ["a"]})).tolist()
        [[nan, 1.0]]
    """

    def __init__(
        self,
        numeric: Sequence[str] = (),
        categorical: Sequence[str] = (),
        min_frequency: int = MIN_CATEGORY_COUNT,
        max_categories: int = MAX_HGB_CATEGORIES,
    ) -> None:
        self.numeric = numeric
        self.categorical = categorical
        self.min_frequency = min_frequency
        self.max_categories = max_categories

    def fit(self, X: pd.DataFrame, y: Any = None) -> FrameEncoder:
        """Learn each categorical column's codes from ``X``."""
        self.codes_: dict[str, dict[str, int]] = {}
        for name in self.categorical:
            counts = pd.Series(_categorical_block(X[[name]])[:, 0]).value_counts(sort=True)
            frequent = counts.index[counts.to_numpy() >= self.min_frequency][: self.max_categories - 1]
            codes = dict.fromkeys(counts.index, len(frequent))  # every training value: "infrequent"...
            codes.update({value: i for i, value in enumerate(frequent)})  # ...unless frequent
            self.codes_[name] = codes
        # A numeric column with no value in training (a feature_* column only recent runs carry) carries no
        # information, and HistGradientBoosting cannot bin an all-missing column: it becomes constant 0.
        numeric = _numeric_block(X[list(self.numeric)]) if self.numeric else np.empty((len(X), 0))
        self.empty_numeric_ = np.flatnonzero(np.isnan(numeric).all(axis=0)) if len(X) else np.arange(0)
        self.feature_names_in_ = np.asarray([*self.numeric, *self.categorical], dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        return self

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        """The float matrix: numeric columns first, then one code column per categorical feature."""
        check_is_fitted(self, "codes_")
        if len(X) <= SMALL_BATCH:
            try:
                return self._blank_empty(self._transform_small(X))
            except (TypeError, ValueError):  # e.g. pd.NA in an object column: take the general path
                pass
        k = len(self.numeric)
        out = np.empty((len(X), k + len(self.categorical)), dtype=float)
        if k:
            out[:, :k] = _numeric_block(X[list(self.numeric)])
        for j, name in enumerate(self.categorical, start=k):
            values = _categorical_block(X[[name]])[:, 0]
            out[:, j] = pd.Series(values, dtype=object).map(self.codes_[name]).to_numpy(dtype=float)
        return self._blank_empty(out)

    def _blank_empty(self, out: np.ndarray) -> np.ndarray:
        empty = getattr(self, "empty_numeric_", None)  # absent in models saved before it existed
        if empty is not None and len(empty):
            out[:, empty] = 0.0
        return out

    def _transform_small(self, X: pd.DataFrame) -> np.ndarray:
        """The same for a few rows (live scoring) without per-column pandas selections: ~10x faster."""
        names = [*self.numeric, *self.categorical]
        positions = _column_positions(X.columns, names)
        if (positions < 0).any():
            raise KeyError([n for n, i in zip(names, positions, strict=True) if i < 0])
        return self._encode_objects(X.to_numpy(dtype=object)[:, positions])

    def _encode_columns(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """What :meth:`transform` makes of ``pd.DataFrame(columns)`` (at most ``SMALL_BATCH`` rows), sans frame.

        :meth:`FailureWarningModel.explain` builds its batch as columns; building a DataFrame from them
        and taking it apart again cost more than scoring the batch. Raises ``TypeError``/``ValueError``
        where the small path does (the caller then takes the frame path).
        """
        names = [*self.numeric, *self.categorical]
        values = np.empty((len(columns[names[0]]) if names else 0, len(names)), dtype=object)
        for j, name in enumerate(names):
            values[:, j] = columns[name]
        return self._blank_empty(self._encode_objects(values))

    def _encode_objects(self, values: np.ndarray) -> np.ndarray:
        """Encode an object matrix whose columns are ``[*numeric, *categorical]``, row by row."""
        k = len(self.numeric)
        out = np.empty(values.shape, dtype=float)
        out[:, :k] = values[:, :k].astype(float)
        for j, name in enumerate(self.categorical, start=k):
            codes = self.codes_[name]
            out[:, j] = [codes.get(MISSING_CATEGORY if v is None or v != v else str(v), np.nan) for v in values[:, j]]
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Output column names: the numeric features, then the categorical ones."""
        return np.asarray([*self.numeric, *self.categorical], dtype=object)


def make_pipeline(
    spec: FeatureSpec,
    family: str = DEFAULT_FAMILY,
    *,
    random_state: int = 0,
    calibration: str = "sigmoid",
    calibration_cv: int = 3,
) -> Pipeline:
    """An unfitted Pipeline mapping raw feature rows (``spec.names``) to a calibrated failure probability.

    Steps: ``features`` (column encoding) then ``classifier``, a
    :class:`~sklearn.calibration.CalibratedClassifierCV` with ``ensemble=False``: the classifier's
    out-of-fold scores (``calibration_cv`` shuffled stratified folds) fit the calibrator, and one
    classifier trained on all rows does the scoring, so a prediction costs one model. The calibration
    folds are shuffled on purpose: contiguous time blocks would make the earliest block (runs with little
    history yet) be predicted by models that never saw such rows, and the calibrator learned from that
    squashed every risk toward the base rate (top-2 % of runs predicted 0.15 that failed 91 % of the time).

    * ``"hgb"``: :class:`FrameEncoder` (numeric columns as floats with NaN kept - HistGradientBoosting
      handles missing values natively, so missingness stays informative instead of being imputed away;
      categorical columns as frequency-ranked codes, rare ones pooled, unknown ones missing) and a
      HistGradientBoostingClassifier that splits on the codes as numbers. Declaring them categorical
      (native categorical splits) gained 0.006-0.008 PR-AUC on simulated history but made HGB re-encode
      them with its own internal ColumnTransformer + OrdinalEncoder on every call: +1.5 ms per scored row,
      more than the whole live-scoring budget.
    * ``"logreg"``: a ColumnTransformer - numeric columns median-imputed with missing-indicators and
      standardised, categorical columns one-hot encoded with ``handle_unknown="infrequent_if_exist"`` -
      and an L2 logistic regression.

    Example::

        >>> from forewarn.learning.features import FeatureSpec
        >>> make_pipeline(FeatureSpec(numeric=("age",), categorical=("flow_name",)), "logreg").steps[-1][0]
        'classifier'
    """
    numeric, categorical = tuple(spec.numeric), tuple(spec.categorical)
    features: Any
    clf: Any
    if family == "hgb":
        features = FrameEncoder(numeric, categorical)
        clf = HistGradientBoostingClassifier(
            learning_rate=0.2,
            max_iter=200,
            max_leaf_nodes=31,
            min_samples_leaf=40,
            l2_regularization=1.0,
            categorical_features=None,  # codes are split on as numbers: see the docstring
            early_stopping=True,
            random_state=random_state,
        )
    elif family == "logreg":
        to_float = FunctionTransformer(_numeric_block, feature_names_out="one-to-one")
        to_str = FunctionTransformer(_categorical_block, feature_names_out="one-to-one")
        transformers: list[tuple[str, Any, list[str]]] = []
        if numeric:
            num = _sk_make_pipeline(
                to_float,
                SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                StandardScaler(),
            )
            transformers.append(("numeric", num, list(numeric)))
        if categorical:
            encoder = OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=MIN_CATEGORY_COUNT)
            transformers.append(("categorical", _sk_make_pipeline(to_str, encoder), list(categorical)))
        features = ColumnTransformer(transformers, remainder="drop", sparse_threshold=1.0)
        clf = LogisticRegression(C=1.0, max_iter=2000, random_state=random_state)
    else:
        raise ConfigurationError("family", family, f"one of {', '.join(map(repr, FAMILIES))}")
    calibrated = CalibratedClassifierCV(
        clf,
        method=calibration,
        cv=StratifiedKFold(n_splits=calibration_cv, shuffle=True, random_state=random_state),
        ensemble=False,
    )
    return Pipeline([("features", features), ("classifier", calibrated)])


# ----------------------------------------------------------------------------------- fast small scoring


_SIGMOID_CALIBRATION = getattr(sklearn.calibration, "_SigmoidCalibration", None)
"""sklearn's private Platt calibrator class; ``None`` in a version without it (then ``.predict`` is called)."""


@dataclass(frozen=True)
class _HgbParts:
    """The fitted parts of an ``"hgb"`` pipeline that :func:`_calibrated_proba` scores without sklearn's checks."""

    encoder: FrameEncoder
    calibrated: Any  # a fitted CalibratedClassifierCV over binary HistGradientBoostingClassifiers


def _hgb_parts(pipeline: Any) -> _HgbParts | None:
    """The parts of ``pipeline`` if it is exactly what ``make_pipeline(spec, "hgb")`` fits, else ``None``.

    Scoring a few rows through the Pipeline costs ~2.5 ms, mostly sklearn re-validating the input and
    re-fitting a LabelEncoder inside every ``_CalibratedClassifier.predict_proba`` call; the trees
    themselves cost ~0.3 ms. Only the exact classes are accepted (no subclasses, no categorical
    preprocessing inside HGB, binary, sigmoid or isotonic calibration), so any other pipeline - the
    logreg family, a future sklearn without these attributes - keeps the plain ``predict_proba`` path.
    """
    steps = getattr(pipeline, "steps", None)
    if type(pipeline) is not Pipeline or not steps or len(steps) != 2:
        return None
    encoder, calibrated = steps[0][1], steps[1][1]
    if type(encoder) is not FrameEncoder or type(calibrated) is not CalibratedClassifierCV:
        return None
    members = getattr(calibrated, "calibrated_classifiers_", None)
    if not members or len(getattr(calibrated, "classes_", ())) != 2:
        return None
    for member in members:
        est = getattr(member, "estimator", None)
        if (
            type(est) is not HistGradientBoostingClassifier
            or getattr(est, "_preprocessor", None) is not None  # HGB would re-encode categorical columns
            or hasattr(est, "feature_names_in_")  # fitted on a frame: sklearn would check the names
            or getattr(est, "n_trees_per_iteration_", None) != 1
            or not all(hasattr(est, a) for a in ("_predict_iterations", "_predictors", "_baseline_prediction"))
            or getattr(member, "method", None) not in ("sigmoid", "isotonic")
            or len(getattr(member, "calibrators", ())) != 1
            or len(getattr(member, "classes", ())) != 2
        ):
            return None
    return _HgbParts(encoder, calibrated)


def _calibrated_proba(calibrated: Any, Xt: np.ndarray) -> np.ndarray | None:
    """``calibrated.predict_proba(Xt)`` for :func:`_hgb_parts`' calibrated HGB, to the last bit; ``None``: no.

    The steps of sklearn's ``CalibratedClassifierCV.predict_proba`` and ``_CalibratedClassifier.predict_proba``
    (binary case) on the already-encoded float matrix: each member's HGB decision function (its trees'
    sum, via HGB's own tree code) goes through its calibrator into column 1, column 0 is ``1 - p``, values
    just above 1 are clipped, and the members' probabilities are averaged in order. What is skipped is
    input validation, the pandas/array-API dispatch and a LabelEncoder fit per call, for a matrix our
    own :class:`FrameEncoder` produced (checked: float64, 2-D, the width HGB was fitted on).
    """
    members = calibrated.calibrated_classifiers_
    if not (isinstance(Xt, np.ndarray) and Xt.dtype == np.float64 and Xt.ndim == 2):
        return None  # e.g. set_output(transform="pandas") made the encoder return a DataFrame
    if any(Xt.shape[1] != m.estimator.n_features_in_ for m in members):
        return None
    mean = np.zeros((len(Xt), 2))
    for member in members:
        proba = np.zeros((len(Xt), 2))
        proba[:, 1] = _calibrate(member.calibrators[0], _hgb_decision(member.estimator, Xt))
        proba[:, 0] = 1.0 - proba[:, 1]
        proba[(proba > 1.0) & (proba <= 1.0 + 1e-5)] = 1.0
        mean += proba
    mean /= len(members)
    return mean


def _hgb_decision(est: Any, Xt: np.ndarray) -> np.ndarray:
    """``est.decision_function(Xt)`` of a binary HistGradientBoostingClassifier without re-validating ``Xt``.

    As ``_raw_predict`` does it: baseline plus each tree's prediction, tree by tree. One OpenMP thread:
    for a few rows a parallel region costs more than the rows (4x slower per row with 2 threads on a
    busy 2-core machine); the thread count does not change the result.
    """
    raw = np.zeros((len(Xt), 1), dtype=est._baseline_prediction.dtype, order="F")
    raw += est._baseline_prediction
    est._predict_iterations(Xt, est._predictors, raw, False, 1)
    return raw.ravel()


def _calibrate(calibrator: Any, decision: np.ndarray) -> np.ndarray:
    """``calibrator.predict(decision)``; the sigmoid's one line inline, sparing ~0.1 ms of 1-D validation."""
    if type(calibrator) is _SIGMOID_CALIBRATION:
        return np.asarray(expit(-(calibrator.a_ * decision + calibrator.b_)))  # _SigmoidCalibration.predict
    return np.asarray(calibrator.predict(decision))


# -------------------------------------------------------------------------------------------- threshold


def choose_threshold(
    y_true: Any,
    risk: Any,
    rule: str = "precision",
    *,
    target_precision: float = 0.5,
    alert_budget: float = 0.05,
) -> float:
    """The risk at or above which runs are warned, by a documented rule (a pure function).

    * ``"precision"``: the *lowest* threshold ``t`` (among the observed risks) at which the warned runs
      (``risk >= t``) have precision ``>= target_precision`` and include at least one failure. When no
      threshold reaches the target, it falls back to the ``"budget"`` rule.
    * ``"budget"``: the lowest threshold at which the share of runs warned (``risk >= t``) does not
      exceed ``alert_budget``: the top ``floor(alert_budget * n)`` risks, a group of tied risks only if it
      fits whole. If even the highest risk group is too large, the threshold lies just above the maximum
      risk and nothing is warned.

    NaN risks count as 0. An empty input gives ``inf`` (warn nothing).

    Example::

        >>> y = [1, 0, 1, 0, 0, 0, 0, 0, 0, 0]
        >>> r = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0]
        >>> choose_threshold(y, r, "precision", target_precision=0.6)
        0.7
        >>> choose_threshold(y, r, "budget", alert_budget=0.2)
        0.8
    """
    if rule not in THRESHOLD_RULES:
        raise ConfigurationError("threshold_rule", rule, f"one of {', '.join(map(repr, THRESHOLD_RULES))}")
    if not 0.0 < alert_budget <= 1.0:
        raise ConfigurationError("alert_budget", alert_budget, "a share of runs in (0, 1], e.g. 0.05")
    if not 0.0 < target_precision <= 1.0:
        raise ConfigurationError("target_precision", target_precision, "a precision in (0, 1], e.g. 0.5")
    y = np.asarray(y_true, dtype=float).astype(bool)
    r = np.nan_to_num(np.asarray(risk, dtype=float), nan=0.0)
    n = len(r)
    if n == 0:
        return math.inf
    order = np.argsort(-r, kind="stable")
    r_sorted, y_sorted = r[order], y[order]
    # the last index of each group of equal risks: warning at that risk warns everything up to it
    last = np.flatnonzero(np.r_[r_sorted[1:] != r_sorted[:-1], True])
    warned = last + 1
    if rule == "precision":
        tp = np.cumsum(y_sorted)[last]
        ok = (tp >= 1) & (tp >= target_precision * warned - 1e-12)
        if ok.any():
            return float(r_sorted[last[np.flatnonzero(ok)[-1]]])
    fits = warned <= alert_budget * n + 1e-9
    if not fits.any():
        return float(np.nextafter(r_sorted[0], math.inf))
    return float(r_sorted[last[np.flatnonzero(fits)[-1]]])


# -------------------------------------------------------------------------------------------- the model


@dataclass(frozen=True, slots=True)
class Reason:
    """One reason behind a risk: how much ``feature`` at ``value`` moves risk versus its usual value."""

    feature: str
    value: Any
    baseline: Any
    contribution: float
    text: str

    def __str__(self) -> str:
        return self.text


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "missing"
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (int, float, np.integer, np.floating)):
        v = float(value)
        if v.is_integer() and abs(v) < 1e15:
            return str(int(v))
        return f"{v:.3g}" if abs(v) >= 0.01 else f"{v:.2g}"
    return str(value)


def spec_types(spec: FeatureSpec) -> dict[str, str]:
    """``{feature name: "numeric" | "categorical"}`` in ``spec.names`` order."""
    kinds = {**{c: "numeric" for c in spec.numeric}, **{c: "categorical" for c in spec.categorical}}
    return {name: kinds[name] for name in spec.names}


class FailureWarningModel(ClassifierMixin, BaseEstimator):
    """Warns before a flow run fails: calibrated failure risk plus a threshold chosen on training data.

    Hyperparameters (stored untouched by ``__init__``, per the estimator contract):

    * ``family``: ``"hgb"`` (default) or ``"logreg"``, see :func:`make_pipeline`.
    * ``threshold_rule``: ``"precision"`` (lowest threshold reaching ``target_precision`` out of fold,
      falling back to the budget rule) or ``"budget"`` (warn the riskiest ``alert_budget`` share of runs).
    * ``min_failures`` / ``min_runs``: fewer labelled failures or runs than this raise
      :class:`~forewarn.errors.InsufficientHistoryError`.
    * ``threshold_holdout``: share of the (time-ordered) training rows, taken from the end, whose
      out-of-fold risks choose the threshold.
    * ``calibration``: ``"sigmoid"`` (Platt; keeps the ranking) or ``"isotonic"``.
    * ``n_threads``: OpenMP threads for fitting and scoring (``None``: all cores). The default is 1:
      on a machine whose cores are busy with other work, OpenMP's spin-waiting made a 200,000-row HGB
      fit take 37 s on two threads against 5.8 s on one; on an idle machine two threads gain little.

    Learned attributes: ``pipeline_``, ``threshold_``, ``threshold_source_``, ``feature_spec_``,
    ``feature_baseline_``, ``n_train_runs_``, ``n_train_failures_``, ``classes_``.

    Example::

        >>> from sklearn.base import clone
        >>> clone(FailureWarningModel(family="logreg")).family
        'logreg'
    """

    def __init__(
        self,
        family: str = DEFAULT_FAMILY,
        threshold_rule: str = "precision",
        target_precision: float = 0.5,
        alert_budget: float = 0.05,
        min_failures: int = 20,
        min_runs: int = 200,
        threshold_holdout: float = 0.25,
        calibration: str = "sigmoid",
        n_threads: int | None = 1,
        random_state: int = 0,
    ) -> None:
        self.family = family
        self.threshold_rule = threshold_rule
        self.target_precision = target_precision
        self.alert_budget = alert_budget
        self.min_failures = min_failures
        self.min_runs = min_runs
        self.threshold_holdout = threshold_holdout
        self.calibration = calibration
        self.n_threads = n_threads
        self.random_state = random_state

    # -- fitting

    def _check_params(self) -> None:
        if self.family not in FAMILIES:
            raise ConfigurationError("family", self.family, f"one of {', '.join(map(repr, FAMILIES))}")
        if self.threshold_rule not in THRESHOLD_RULES:
            raise ConfigurationError(
                "threshold_rule", self.threshold_rule, f"one of {', '.join(map(repr, THRESHOLD_RULES))}"
            )
        if self.calibration not in ("sigmoid", "isotonic"):
            raise ConfigurationError("calibration", self.calibration, "'sigmoid' or 'isotonic'")
        if not 0.0 < self.threshold_holdout < 1.0:
            raise ConfigurationError("threshold_holdout", self.threshold_holdout, "a share in (0, 1), e.g. 0.25")
        choose_threshold(
            [], [], self.threshold_rule, target_precision=self.target_precision, alert_budget=self.alert_budget
        )  # validates both values

    def _pipeline(self, spec: FeatureSpec, n_minority: int) -> Pipeline:
        return make_pipeline(
            spec,
            self.family,
            random_state=self.random_state,
            calibration=self.calibration,
            calibration_cv=max(2, min(3, n_minority)),
        )

    def fit(self, X: pd.DataFrame, y: Any) -> FailureWarningModel:
        """Learn from feature rows ``X`` (in time order) and labels ``y`` (1 failed, 0 succeeded, NaN skip).

        Rows with a NaN label are dropped. The threshold is chosen honestly on the training data alone:
        a copy of the pipeline is fitted on the earliest ``1 - threshold_holdout`` of the rows, risks are
        computed for the latest ``threshold_holdout`` (out of fold, later in time), and
        :func:`choose_threshold` applies ``threshold_rule`` to them (``threshold_source_ = "time_holdout"``).
        If the earliest part holds fewer than 3 failures, shuffled stratified 3-fold out-of-fold risks
        over all rows are used instead (``"kfold"``), and with fewer than 6 failures in all the final
        model's own in-sample risks (``"in_sample"``, optimistic). Then the pipeline is fitted on all rows.

        Raises :class:`~forewarn.errors.InsufficientHistoryError` with fewer than ``min_failures``
        failures, fewer than ``min_runs`` runs, or fewer than 2 runs of either outcome.
        """
        self._check_params()
        if not isinstance(X, pd.DataFrame):
            raise TypeError(f"X must be the pandas DataFrame from build_features, not {type(X).__name__}")
        if isinstance(y, pd.Series) and not y.index.equals(X.index):
            y = y.reindex(X.index)
        labels = np.asarray(y, dtype=float)
        if len(labels) != len(X):
            raise ValueError(f"X has {len(X)} rows but y has {len(labels)} labels")
        keep = ~np.isnan(labels)
        if not set(np.unique(labels[keep])) <= {0.0, 1.0}:
            raise ValueError("y must hold 1 (failed), 0 (succeeded) or NaN (unlabelled)")
        X, labels = X.loc[keep], labels[keep].astype(int)
        n_runs, n_failures = len(labels), int(labels.sum())
        need_failures = max(self.min_failures, 2)
        if n_failures < need_failures or n_runs < self.min_runs or n_runs - n_failures < 2:
            raise InsufficientHistoryError(
                f"too little history to train: {n_runs} labelled run(s) with {n_failures} failure(s); "
                f"training needs at least {self.min_runs} runs and {need_failures} failures (and 2 "
                "successful runs). Collect more history (forewarn records every run of a decorated flow, "
                "or `forewarn import` older history), or run `forewarn simulate` to try forewarn out on "
                "simulated history."
            )
        spec = feature_spec(X)
        X = X.loc[:, list(spec.names)]
        n_minority = min(n_failures, n_runs - n_failures)

        with _openmp_threads(self.n_threads):
            oof = self._out_of_fold(X, labels, spec)
            self.pipeline_ = self._pipeline(spec, n_minority).fit(X, labels)
            if oof is None:  # too few failures to hold any out: in-sample risks, optimistic
                oof = (labels, self.pipeline_.predict_proba(X)[:, 1], "in_sample")
        self.threshold_ = choose_threshold(
            oof[0],
            oof[1],
            self.threshold_rule,
            target_precision=self.target_precision,
            alert_budget=self.alert_budget,
        )
        self.threshold_source_ = oof[2]
        self.feature_spec_ = spec
        self.feature_baseline_ = {
            **{
                c: float(np.nanmedian(_numeric_block(X[[c]]))) if X[c].notna().any() else math.nan for c in spec.numeric
            },
            **{c: _mode(X[c]) for c in spec.categorical},
        }
        self.n_train_runs_ = n_runs
        self.n_train_failures_ = n_failures
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = len(spec.names)
        self.feature_names_in_ = np.asarray(spec.names, dtype=object)
        return self

    def _out_of_fold(
        self, X: pd.DataFrame, y: np.ndarray, spec: FeatureSpec
    ) -> tuple[np.ndarray, np.ndarray, str] | None:
        """Honest risks to choose the threshold on, with where they came from; ``None``: use in-sample."""
        n = len(y)
        n_hold = max(1, round(n * self.threshold_holdout))
        early_y = y[: n - n_hold]
        early_fail = int(early_y.sum())
        early_minority = min(early_fail, len(early_y) - early_fail)
        if early_minority >= 3:
            pipe = self._pipeline(spec, early_minority).fit(X.iloc[: n - n_hold], early_y)
            return y[n - n_hold :], pipe.predict_proba(X.iloc[n - n_hold :])[:, 1], "time_holdout"
        if min(int(y.sum()), n - int(y.sum())) >= 6:
            pipe = self._pipeline(spec, 3)
            folds = StratifiedKFold(3, shuffle=True, random_state=self.random_state)
            risk = cross_val_predict(pipe, X, y, cv=folds, method="predict_proba")[:, 1]
            return y, risk, "kfold"
        return None

    # -- scoring

    def _features(self, X: Any) -> pd.DataFrame:
        check_is_fitted(self, "pipeline_")
        if isinstance(X, pd.Series):
            X = X.to_frame().T
        elif isinstance(X, Mapping):
            X = pd.DataFrame([X])
        if not isinstance(X, pd.DataFrame):
            raise TypeError(f"X must be a pandas DataFrame of feature rows, not {type(X).__name__}")
        names = list(self.feature_spec_.names)
        missing = [c for c in names if c not in X.columns]
        if missing:
            raise FeatureSchemaError(
                f"the feature rows lack {len(missing)} feature(s) this model was trained on: "
                f"{', '.join(missing)}; build them with the same forewarn version, or retrain with "
                "`forewarn train`"
            )
        return X  # the pipeline selects its columns by name

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated probabilities, shape ``(n, 2)``: column 1 is the failure risk."""
        return self._proba(self._features(X))

    def _proba(self, rows: pd.DataFrame) -> np.ndarray:
        """``pipeline_.predict_proba(rows)``; up to ``SMALL_BATCH`` rows of an hgb model without its overhead.

        Live scoring scores one row at a time, where sklearn's per-call checks cost ~6x the model itself
        (see :func:`_hgb_parts`); the result is the pipeline's to the last bit, and anything unexpected
        takes the pipeline.
        """
        parts = _hgb_parts(self.pipeline_) if 0 < len(rows) <= SMALL_BATCH else None  # 0 rows: sklearn's error
        if parts is not None:
            proba = _calibrated_proba(parts.calibrated, parts.encoder.transform(rows))
            if proba is not None:
                return proba
        with _openmp_threads(self.n_threads):
            return self.pipeline_.predict_proba(rows)

    def risk(self, X: pd.DataFrame) -> np.ndarray:
        """The failure risk of each row, ``predict_proba(X)[:, 1]``."""
        return self.predict_proba(X)[:, 1]

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """1 where a warning is due (``risk >= threshold_``), else 0."""
        return (self.risk(X) >= self.threshold_).astype(int)

    def explain(self, X_row: pd.DataFrame | pd.Series | Mapping[str, Any], top: int = 3) -> list[Reason]:
        """The ``top`` features that move this run's risk most, model-agnostically, largest first.

        For each feature the row is copied with that feature set to its training baseline (median for
        numeric, most frequent for categorical features); ``contribution = risk(row) - risk(copy)``, so a
        positive contribution means the actual value raises risk. The row and all copies are scored as one
        batch (see :meth:`_variant_risks`). Features at their baseline value (contribution 0) are left out.

        Example::

            >>> reasons = model.explain(features.iloc[[-1]])  # doctest: +SKIP
            >>> print(reasons[0])  # doctest: +SKIP
            flow_failure_rate_smoothed = 0.42 (usual 0.05) raises risk by 0.18
        """
        row = self._features(X_row)
        if len(row) != 1:
            raise ValueError(f"explain() takes one feature row, got {len(row)}")
        names = list(self.feature_spec_.names)
        first = row.iloc[0]
        values = [first[name] for name in names]
        risks = self._variant_risks(self._variant_columns(values))
        contributions = risks[0] - risks[1:]
        order = np.argsort(-np.abs(contributions), kind="stable")
        reasons: list[Reason] = []
        for i in order[: max(0, top)]:
            c = float(contributions[i])
            if abs(c) < 1e-9:
                break
            name = names[i]
            value, base = values[i], self.feature_baseline_[name]
            verb = "raises" if c > 0 else "lowers"
            text = f"{name} = {_fmt(value)} (usual {_fmt(base)}) {verb} risk by {abs(c):.2g}"
            reasons.append(Reason(feature=name, value=value, baseline=base, contribution=c, text=text))
        return reasons

    def _variant_columns(self, values: Sequence[Any]) -> dict[str, np.ndarray]:
        """explain()'s batch, column by column: the row, then one copy per feature with it at its baseline.

        Numeric columns hold what ``pd.to_numeric(errors="coerce")`` makes of the values; for plain floats
        (every value build_features writes) that is the floats themselves, written directly because
        ~35 ``to_numeric`` calls cost ~1.5 ms.
        """
        k = len(values)
        numeric = set(self.feature_spec_.numeric)
        columns: dict[str, np.ndarray] = {}
        for i, (name, value) in enumerate(zip(self.feature_spec_.names, values, strict=True)):
            base = self.feature_baseline_[name]
            plain = name in numeric and isinstance(value, float) and isinstance(base, float)
            col = np.full(k + 1, value, dtype=float) if plain else np.empty(k + 1, dtype=object)
            if not plain:
                col[:] = [value]
            col[i + 1] = base
            if name in numeric and not plain:
                col = pd.to_numeric(pd.Series(col), errors="coerce").to_numpy(dtype=float)
            columns[name] = col
        return columns

    def _variant_risks(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        """The risk of each row of ``pd.DataFrame(columns)``, scored as one batch.

        An hgb model encodes the columns straight into its matrix (no DataFrame: building one and taking
        it apart again cost ~1 ms); otherwise, or where the encoder's small path refuses a value, the
        frame goes through :meth:`_proba`.
        """
        parts = _hgb_parts(self.pipeline_)
        n = len(next(iter(columns.values()), ()))
        if parts is not None and n <= SMALL_BATCH:  # transform() would take its small path too
            try:
                Xt = parts.encoder._encode_columns(columns)
            except (TypeError, ValueError, KeyError):  # as transform(): the frame path handles odd values
                Xt = None
            proba = _calibrated_proba(parts.calibrated, Xt) if Xt is not None else None
            if proba is not None:
                return proba[:, 1]
        return self._proba(pd.DataFrame(columns))[:, 1]


def _mode(s: pd.Series) -> Any:
    counts = s.dropna().value_counts()
    return counts.index[0] if len(counts) else None


# ------------------------------------------------------------------------------------------ persistence


@dataclass(frozen=True)
class ModelManifest:
    """What ``manifest.json`` says about one saved model; ``to_json()``/``from_json()`` round-trip.

    ``feature_types`` maps each feature name (in training order) to ``"numeric"`` or ``"categorical"``;
    ``sha256`` is the checksum of ``model.joblib`` that :func:`load_model` verifies before unpickling.

    Example::

        >>> m = ModelManifest.from_json(manifest.to_json())  # doctest: +SKIP
    """

    version: str
    created_at: datetime
    family: str
    feature_types: dict[str, str]
    training_window: tuple[datetime, datetime]
    n_train_runs: int
    n_train_failures: int
    threshold: float
    threshold_rule: str
    threshold_params: dict[str, Any]
    sha256: str
    library_versions: dict[str, str]
    backtest_metrics: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    artifact: str = MODEL_FILE
    format: int = MANIFEST_FORMAT

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Feature names in the order the model was trained on."""
        return tuple(self.feature_types)

    @property
    def feature_spec(self) -> FeatureSpec:
        """The :class:`~forewarn.learning.features.FeatureSpec` the model was trained on, rebuilt from the manifest."""
        kinds = self.feature_types.items()
        return FeatureSpec(
            numeric=tuple(n for n, t in kinds if t == "numeric"),
            categorical=tuple(n for n, t in kinds if t == "categorical"),
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (times as ISO 8601 text, NaN as ``None``)."""
        return jsonable(
            {
                "format": self.format,
                "version": self.version,
                "created_at": self.created_at,
                "artifact": self.artifact,
                "sha256": self.sha256,
                "family": self.family,
                "feature_names": list(self.feature_types),
                "feature_types": self.feature_types,
                "training_window": {"start": self.training_window[0], "end": self.training_window[1]},
                "n_train_runs": self.n_train_runs,
                "n_train_failures": self.n_train_failures,
                "threshold": self.threshold,
                "threshold_rule": self.threshold_rule,
                "threshold_params": self.threshold_params,
                "library_versions": self.library_versions,
                "backtest_metrics": self.backtest_metrics,
                "extra": self.extra,
            }
        )

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str | bytes) -> ModelManifest:
        """Parse what :meth:`to_json` produced (a dict, or its JSON text)."""
        if isinstance(data, (str, bytes)):
            data = json.loads(data)
        assert isinstance(data, Mapping)
        window = data["training_window"]
        return cls(
            version=data["version"],
            created_at=_parse_time(data["created_at"]),
            family=data["family"],
            feature_types=dict(data["feature_types"]),
            training_window=(_parse_time(window["start"]), _parse_time(window["end"])),
            n_train_runs=int(data["n_train_runs"]),
            n_train_failures=int(data["n_train_failures"]),
            threshold=float(data["threshold"]) if data["threshold"] is not None else math.inf,
            threshold_rule=data["threshold_rule"],
            threshold_params=dict(data.get("threshold_params") or {}),
            sha256=data["sha256"],
            library_versions=dict(data.get("library_versions") or {}),
            backtest_metrics=data.get("backtest_metrics"),
            extra=dict(data.get("extra") or {}),
            artifact=data.get("artifact", MODEL_FILE),
            format=int(data.get("format", MANIFEST_FORMAT)),
        )


def _parse_time(text: str) -> datetime:
    t = datetime.fromisoformat(text)
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _utc(t: Any) -> datetime:
    ts = pd.Timestamp(t)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.to_pydatetime()


def library_versions() -> dict[str, str]:
    """Versions of forewarn and the libraries a saved model depends on, plus Python's."""
    from importlib.metadata import PackageNotFoundError, version

    import sklearn

    try:
        fw = version("forewarn")
    except PackageNotFoundError:  # a source tree that was never installed
        fw = "0.0.0"
    return {
        "forewarn": fw,
        "scikit-learn": sklearn.__version__,
        "pandas": pd.__version__,
        "numpy": np.__version__,
        "joblib": joblib.__version__,
        "python": platform.python_version(),
    }


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then ``os.replace`` it into place."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_model(
    model: FailureWarningModel,
    directory: Path | str,
    *,
    training_window: tuple[datetime, datetime],
    backtest_metrics: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> ModelManifest:
    """Save a fitted model as ``<directory>/<version>/{model.joblib,manifest.json}``; point latest.json at it.

    The version directory is assembled under a temporary name and renamed into place, and
    ``latest.json`` is replaced atomically last, so a half-written model is never "latest".
    ``version`` is ``<UTC time>-<first 8 hex digits of the artifact's SHA-256>``,
    e.g. ``20261128T162300Z-ab12cd34``.

    Example::

        >>> manifest = save_model(model, Path("models"), training_window=(t0, t1))  # doctest: +SKIP
        >>> manifest.version  # doctest: +SKIP
        '20261128T162300Z-ab12cd34'
    """
    check_is_fitted(model, "pipeline_")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    joblib.dump(model, buffer, compress=3)
    blob = buffer.getvalue()
    digest = _sha256(blob)
    created = datetime.now(timezone.utc).replace(microsecond=0)
    base_version = f"{created:%Y%m%dT%H%M%SZ}-{digest[:8]}"
    version, n = base_version, 1
    while (directory / version).exists():
        n += 1
        version = f"{base_version}-{n}"
    manifest = ModelManifest(
        version=version,
        created_at=created,
        family=model.family,
        feature_types=spec_types(model.feature_spec_),
        training_window=(_utc(training_window[0]), _utc(training_window[1])),
        n_train_runs=int(model.n_train_runs_),
        n_train_failures=int(model.n_train_failures_),
        threshold=float(model.threshold_),
        threshold_rule=model.threshold_rule,
        threshold_params={
            "target_precision": model.target_precision,
            "alert_budget": model.alert_budget,
            "threshold_holdout": model.threshold_holdout,
            "source": model.threshold_source_,
        },
        sha256=digest,
        library_versions=library_versions(),
        backtest_metrics=jsonable(dict(backtest_metrics)) if backtest_metrics is not None else None,
        extra=jsonable(dict(extra or {})),
    )
    staging = directory / f".staging-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        (staging / MODEL_FILE).write_bytes(blob)
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
        for name in (MODEL_FILE, MANIFEST_FILE):
            with open(staging / name, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(staging, directory / version)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    pointer = {
        "version": version,
        "manifest": f"{version}/{MANIFEST_FILE}",
        "updated_at": created.isoformat(),
    }
    _write_atomic(directory / LATEST_FILE, (json.dumps(pointer, indent=2) + "\n").encode())
    return manifest


def _no_model(where: Path) -> ModelError:
    return ModelError(f"no model in {where}: run `forewarn train` first", path=where)


def _manifest_path(path: Path) -> Path:
    """The manifest.json that ``path`` (models dir, version dir, manifest or latest.json) designates."""
    if path.is_dir():
        if (path / MANIFEST_FILE).is_file():
            return path / MANIFEST_FILE
        if (path / LATEST_FILE).is_file():
            return _manifest_path(path / LATEST_FILE)
        raise _no_model(path)
    if not path.is_file():
        raise _no_model(path)
    if path.name != LATEST_FILE:
        return path
    try:
        pointer = json.loads(path.read_text())
        target = path.parent / pointer["manifest"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(
            f"{path} is not a valid pointer to a model ({exc}); retrain with `forewarn train`", path=path
        ) from exc
    if not target.is_file():
        raise ModelError(
            f"{path} points to {pointer['manifest']}, which is missing; retrain with `forewarn train`",
            path=target,
        )
    return target


def schema_differences(trained: Mapping[str, str], offered: Mapping[str, str]) -> dict[str, list[str]]:
    """Features ``missing`` from / ``extra`` in the offered schema and those whose type ``changed``."""
    return {
        "missing": [n for n in trained if n not in offered],
        "extra": [n for n in offered if n not in trained],
        "changed": [
            f"{n} ({trained[n]} -> {offered[n]})" for n in trained if n in offered and trained[n] != offered[n]
        ],
    }


def load_model(
    path_or_dir: Path | str,
    *,
    expected_spec: FeatureSpec | None = None,
) -> tuple[FailureWarningModel, ModelManifest]:
    """Load a saved model after verifying its checksum (and its feature schema, if ``expected_spec``).

    ``path_or_dir`` may be the models directory (``latest.json`` is followed), one version directory, or
    a ``manifest.json``. The artifact's bytes are read once and hashed; on a mismatch with the manifest
    :class:`~forewarn.errors.ChecksumMismatchError` is raised and nothing is unpickled. With
    ``expected_spec``, a model trained on other feature names or types is refused with
    :class:`~forewarn.errors.FeatureSchemaError` (also before unpickling).

    Example::

        >>> model, manifest = load_model(Path("models"))  # doctest: +SKIP
    """
    manifest_path = _manifest_path(Path(path_or_dir))
    try:
        manifest = ModelManifest.from_json(manifest_path.read_text())
    except (ValueError, KeyError, TypeError, AssertionError) as exc:
        raise ModelError(
            f"{manifest_path} is not a readable forewarn manifest ({exc}); retrain with `forewarn train`",
            path=manifest_path,
        ) from exc
    artifact = manifest_path.parent / manifest.artifact
    if not artifact.is_file():
        raise ModelError(f"{artifact} is missing; retrain with `forewarn train`", path=artifact)
    blob = artifact.read_bytes()
    actual = _sha256(blob)
    if actual != manifest.sha256:
        raise ChecksumMismatchError(
            f"{artifact}: SHA-256 {actual} differs from {manifest.sha256} in its manifest; the file was "
            "changed or damaged after it was saved and was NOT loaded. Restore it or retrain with "
            "`forewarn train`.",
            path=artifact,
        )
    if expected_spec is not None:
        diff = schema_differences(manifest.feature_types, spec_types(expected_spec))
        if any(diff.values()):
            parts = [f"{k}: {', '.join(v)}" for k, v in diff.items() if v]
            raise FeatureSchemaError(
                f"model {manifest.version} was trained on other features than these ({'; '.join(parts)}); "
                "retrain with `forewarn train`",
                path=artifact,
            )
    model = joblib.load(io.BytesIO(blob))
    if not isinstance(model, FailureWarningModel):
        raise ModelError(f"{artifact} holds a {type(model).__name__}, not a FailureWarningModel", path=artifact)
    return model, manifest


__all__ = [
    "DEFAULT_FAMILY",
    "FAMILIES",
    "THRESHOLD_RULES",
    "FailureWarningModel",
    "FrameEncoder",
    "ModelManifest",
    "Reason",
    "choose_threshold",
    "library_versions",
    "load_model",
    "make_pipeline",
    "save_model",
    "schema_differences",
    "spec_types",
]
