"""The scikit-learn Pipeline of each model family, from raw feature rows to a calibrated failure probability.

Example::

    >>> from forewarn.learning.features import FeatureSpec
    >>> make_pipeline(FeatureSpec(numeric=("age",), categorical=("flow_name",)), "hgb").named_steps["features"]
    FrameEncoder(categorical=('flow_name',), numeric=('age',))
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import expit  # scipy: a dependency of scikit-learn's, whose sigmoid calibration uses it
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, VotingClassifier
from sklearn.impute import SimpleImputer
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.pipeline import make_pipeline as _sk_make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from sklearn.utils.validation import check_is_fitted

from forewarn.errors import ConfigurationError
from forewarn.learning.features import FeatureSpec
from forewarn.learning.model.encoder import (
    MIN_CATEGORY_COUNT,
    PICKLED_MODULE,
    FrameEncoder,
    categorical_block,
    clip_standardized,
    numeric_block,
)

FAMILIES: tuple[str, ...] = ("hgb", "logreg", "mean", "stack")
"""Classifier families :func:`make_pipeline` knows: HistGradientBoosting, logistic regression, the mean of the
two's probabilities, and the two stacked (their raw scores weighed by the calibrator, :class:`StackedClassifier`)."""

DEFAULT_FAMILY = "stack"
"""Chosen from the walk-forward comparison in ``docs/model.md``."""


def make_pipeline(
    spec: FeatureSpec,
    family: str = DEFAULT_FAMILY,
    *,
    random_state: int = 0,
    calibration: str | None = "sigmoid",
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
      standardised, then clipped to ±5 standard deviations (a linear model must not extrapolate);
      categorical columns one-hot encoded with ``handle_unknown="infrequent_if_exist"``; and an L2
      logistic regression.
    * ``"mean"``: a soft-voting ``VotingClassifier`` of the two whole pipelines (``"passthrough"`` features).
    * ``"stack"``: a :class:`StackedClassifier` of the two whole pipelines; uncalibrated, its score is their
      mean raw score; :class:`~forewarn.learning.model.FailureWarningModel` calibrates it on both raw scores.

    ``calibration=None`` leaves the classifier uncalibrated (its ``decision_function`` is the raw score the
    calibrator of a calibrated pipeline maps to a probability): the model's threshold search uses it.

    Example::

        >>> from forewarn.learning.features import FeatureSpec
        >>> make_pipeline(FeatureSpec(numeric=("age",), categorical=("flow_name",)), "logreg").steps[-1][0]
        'classifier'
    """
    features, clf = _family(family, tuple(spec.numeric), tuple(spec.categorical), random_state)
    if calibration is None:
        return Pipeline([("features", features), ("classifier", clf)])
    calibrated = CalibratedClassifierCV(
        clf,
        method=calibration,
        cv=StratifiedKFold(n_splits=calibration_cv, shuffle=True, random_state=random_state),
        ensemble=False,
    )
    return Pipeline([("features", features), ("classifier", calibrated)])


def _family(family: str, numeric: tuple[str, ...], categorical: tuple[str, ...], random_state: int) -> tuple[Any, Any]:
    """The unfitted column encoding and classifier of ``family`` (see :func:`make_pipeline`)."""
    features: Any
    clf: Any
    if family == "hgb":
        features = FrameEncoder(numeric, categorical)
        clf = HistGradientBoostingClassifier(
            # slower learning, smaller and better-filled leaves: better on all three real traces and the
            # simulator (docs/model.md, "Real job traces"); early stopping keeps the rounds to what helps
            learning_rate=0.05,
            max_iter=600,
            max_leaf_nodes=15,
            min_samples_leaf=100,
            l2_regularization=1.0,
            categorical_features=None,  # codes are split on as numbers: see the docstring
            early_stopping=True,
            random_state=random_state,
        )
    elif family == "logreg":
        to_float = FunctionTransformer(numeric_block, feature_names_out="one-to-one")
        to_str = FunctionTransformer(categorical_block, feature_names_out="one-to-one")
        transformers: list[tuple[str, Any, list[str]]] = []
        if numeric:
            num = _sk_make_pipeline(
                to_float,
                SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                StandardScaler(),
                FunctionTransformer(clip_standardized, feature_names_out="one-to-one"),  # no extrapolation
            )
            transformers.append(("numeric", num, list(numeric)))
        if categorical:
            encoder = OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=MIN_CATEGORY_COUNT)
            transformers.append(("categorical", _sk_make_pipeline(to_str, encoder), list(categorical)))
        features = ColumnTransformer(transformers, remainder="drop", sparse_threshold=1.0)
        clf = LogisticRegression(C=1.0, max_iter=2000, random_state=random_state)
    elif family in ("mean", "stack"):
        members = [
            (
                name,
                Pipeline(
                    list(
                        zip(("features", "classifier"), _family(name, numeric, categorical, random_state), strict=True)
                    )
                ),
            )
            for name in ("hgb", "logreg")
        ]
        features = "passthrough"
        clf = VotingClassifier(members, voting="soft") if family == "mean" else StackedClassifier(members)
    else:
        raise ConfigurationError("family", family, f"one of {', '.join(map(repr, FAMILIES))}")
    return features, clf


def raw_score(classifier: Any, Xt: Any) -> np.ndarray:
    """The classifier's raw score of each row: ``decision_function``, or the log-odds of its probability.

    A :class:`StackedClassifier` (or a Pipeline ending in one) gives one column per member
    (``member_scores``), which the calibrator weighs.
    """
    stacked = classifier.steps[-1][1] if isinstance(classifier, Pipeline) else classifier
    if isinstance(stacked, StackedClassifier):
        Xs = classifier[:-1].transform(Xt) if isinstance(classifier, Pipeline) else Xt
        return stacked.member_scores(Xs)
    if hasattr(classifier, "decision_function"):
        return np.asarray(classifier.decision_function(Xt), dtype=float)
    p = np.clip(np.asarray(classifier.predict_proba(Xt), dtype=float)[:, 1], 1e-12, 1 - 1e-12)
    return np.log(p) - np.log1p(-p)


class StackedClassifier(ClassifierMixin, BaseEstimator):
    """Member pipelines fitted on the same rows, whose raw scores a calibrator weighs into one probability.

    ``fit`` fits a clone of each ``(name, pipeline)`` member (``sample_weight`` goes to each member's
    classifier); :meth:`member_scores` gives one raw-score column per member (:func:`raw_score`).
    :class:`PrefitCalibratedClassifier` over it fits a two-input Platt calibrator on the members' out-of-time
    scores (see :class:`~forewarn.learning.model.FailureWarningModel`), so the weights say what each family's
    score was worth on runs after its training. Alone, ``decision_function`` is the members' mean raw score
    and ``predict_proba`` its logistic (what a cross-validated calibration of the fallbacks sees).

    Example::

        >>> import numpy as np
        >>> from sklearn.linear_model import LogisticRegression
        >>> X, y = np.arange(20.0).reshape(-1, 1), np.r_[np.zeros(10), np.ones(10)]
        >>> stack = StackedClassifier([("a", LogisticRegression()), ("b", LogisticRegression(C=0.01))]).fit(X, y)
        >>> stack.member_scores(X[:1]).shape
        (1, 2)
    """

    def __init__(self, members: Any = ()) -> None:
        self.members = members

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> StackedClassifier:
        """Fit a clone of every member on ``X, y`` (and ``sample_weight``, given to each member's classifier)."""
        self.members_ = []
        for _, member in self.members:
            fitted = clone(member)
            if sample_weight is None:
                fitted.fit(X, y)
            elif isinstance(fitted, Pipeline):
                fitted.fit(X, y, **{f"{fitted.steps[-1][0]}__sample_weight": sample_weight})
            else:
                fitted.fit(X, y, sample_weight=sample_weight)
            self.members_.append(fitted)
        self.classes_ = np.asarray(self.members_[0].classes_)
        return self

    def member_scores(self, X: Any) -> np.ndarray:
        """One column per member: its raw score of each row (:func:`raw_score`)."""
        check_is_fitted(self, "members_")
        return np.column_stack([raw_score(member, X) for member in self.members_])

    def decision_function(self, X: Any) -> np.ndarray:
        """The members' mean raw score: an uncalibrated combined score."""
        return np.asarray(self.member_scores(X).mean(axis=1), dtype=float)

    def predict_proba(self, X: Any) -> np.ndarray:
        """The logistic of :meth:`decision_function`, uncalibrated."""
        p = expit(self.decision_function(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: Any) -> np.ndarray:
        """The more probable class of each row."""
        return self.classes_[(self.predict_proba(X)[:, 1] >= 0.5).astype(int)]


class PrefitCalibratedClassifier(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """A fitted binary classifier whose raw scores a calibrator, fitted on scores given to it, maps to probabilities.

    ``estimator`` is used as fitted and never refitted (like :class:`~sklearn.frozen.FrozenEstimator`). ``fit(X,
    y, scores=...)`` fits only the calibrator - ``"sigmoid"`` (Platt: a logistic regression on the score) or
    ``"isotonic"`` - on ``scores`` and ``y``; without ``scores``, on the estimator's own scores of ``X``.
    :class:`~forewarn.learning.model.FailureWarningModel` passes the out-of-time scores a copy of the classifier
    fitted on the earlier training rows gave the latest ones (see its ``fit``): the calibration then says how
    often a score came true on runs *after* the ones the classifier learned from, as in real use, and costs no
    classifier fit beyond the copy the threshold needs anyway. ``predict_proba`` is the calibrator applied to
    ``estimator``'s raw score (:func:`raw_score`), clipped to [0, 1].

    Example::

        >>> import numpy as np
        >>> from sklearn.linear_model import LogisticRegression
        >>> X, y = np.arange(20.0).reshape(-1, 1), np.r_[np.zeros(10), np.ones(10)]
        >>> clf = PrefitCalibratedClassifier(LogisticRegression().fit(X, y)).fit(X, y)
        >>> clf.predict_proba(np.array([[0.0], [19.0]])).round(2).tolist()
        [[1.0, 0.0], [0.0, 1.0]]
    """

    def __init__(self, estimator: Any = None, method: str = "sigmoid") -> None:
        self.estimator = estimator
        self.method = method

    def fit(self, X: Any, y: Any, *, scores: Any = None) -> PrefitCalibratedClassifier:
        """Fit the calibrator on ``scores`` (or the estimator's raw scores of ``X``) and labels ``y``."""
        check_is_fitted(self.estimator)
        if self.method not in ("sigmoid", "isotonic"):
            raise ConfigurationError("calibration", self.method, "'sigmoid' or 'isotonic'")
        s = raw_score(self.estimator, X) if scores is None else np.asarray(scores, dtype=float)
        labels = np.asarray(y, dtype=int)
        if s.ndim == 2 and self.method != "sigmoid":
            raise ConfigurationError("calibration", self.method, "'sigmoid' for a stacked classifier's scores")
        if self.method == "sigmoid":
            # no penalty: Platt's fit is the maximum-likelihood logistic curve of the score (or the scores)
            self.calibrator_: Any = LogisticRegression(C=np.inf).fit(s.reshape(len(s), -1), labels)
        else:
            self.calibrator_ = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(s, labels)
        self.classes_ = np.asarray(self.estimator.classes_)
        return self

    def calibrate(self, scores: Any) -> np.ndarray:
        """The failure probability of each raw score (the calibrator's mapping, clipped to [0, 1])."""
        check_is_fitted(self, "calibrator_")
        s = np.asarray(scores, dtype=float)
        if self.method == "sigmoid" and s.ndim == 2:  # a stacked classifier's member scores: their weighed sum
            p = expit(s @ self.calibrator_.coef_[0] + self.calibrator_.intercept_[0])
        elif self.method == "sigmoid":
            p = expit(self.calibrator_.coef_[0, 0] * s + self.calibrator_.intercept_[0])
        else:
            p = self.calibrator_.predict(s)
        return np.clip(np.asarray(p, dtype=float), 0.0, 1.0)

    def decision_function(self, X: Any) -> np.ndarray:
        """The estimator's raw score of each row (see :func:`raw_score`)."""
        return raw_score(self.estimator, X)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Column 1: the calibrated probability of class 1; column 0: its complement."""
        p = self.calibrate(self.decision_function(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: Any) -> np.ndarray:
        """The more probable class of each row."""
        return self.classes_[(self.predict_proba(X)[:, 1] >= 0.5).astype(int)]


def calibrated_pipeline(fitted: Pipeline, method: str, scores: Any, y: Any) -> Pipeline:
    """The fitted uncalibrated ``fitted`` (``make_pipeline(..., calibration=None)``), calibrated on ``scores``.

    Returns a new Pipeline with the same fitted ``features`` step and a :class:`PrefitCalibratedClassifier`
    over the fitted classifier whose calibrator is fitted on ``scores`` and labels ``y``: raw rows in, a
    calibrated probability out, as from :func:`make_pipeline`.
    """
    calibrated = PrefitCalibratedClassifier(fitted.named_steps["classifier"], method).fit(None, y, scores=scores)
    return Pipeline([("features", fitted.named_steps["features"]), ("classifier", calibrated)])


# Saved models pickle these classes by their module: the package, as for the encoder (see the package docstring).
PrefitCalibratedClassifier.__module__ = StackedClassifier.__module__ = PICKLED_MODULE

__all__ = [
    "DEFAULT_FAMILY",
    "FAMILIES",
    "PrefitCalibratedClassifier",
    "StackedClassifier",
    "calibrated_pipeline",
    "make_pipeline",
    "raw_score",
]
