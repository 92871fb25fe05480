"""The scikit-learn Pipeline of each model family, from raw feature rows to a calibrated failure probability.

Example::

    >>> from forewarn.learning.features import FeatureSpec
    >>> make_pipeline(FeatureSpec(numeric=("age",), categorical=("flow_name",))).named_steps["features"]
    FrameEncoder(categorical=('flow_name',), numeric=('age',))
"""

from __future__ import annotations

from typing import Any

from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.pipeline import make_pipeline as _sk_make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from forewarn.errors import ConfigurationError
from forewarn.learning.features import FeatureSpec
from forewarn.learning.model.encoder import MIN_CATEGORY_COUNT, FrameEncoder, categorical_block, numeric_block

FAMILIES: tuple[str, ...] = ("hgb", "logreg")
"""Classifier families :func:`make_pipeline` knows: HistGradientBoosting and logistic regression."""

DEFAULT_FAMILY = "hgb"
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
      standardised, categorical columns one-hot encoded with ``handle_unknown="infrequent_if_exist"`` -
      and an L2 logistic regression.

    ``calibration=None`` leaves the classifier uncalibrated (its ``decision_function`` is the raw score the
    calibrator of a calibrated pipeline maps to a probability): the model's threshold search uses it.

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
            )
            transformers.append(("numeric", num, list(numeric)))
        if categorical:
            encoder = OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=MIN_CATEGORY_COUNT)
            transformers.append(("categorical", _sk_make_pipeline(to_str, encoder), list(categorical)))
        features = ColumnTransformer(transformers, remainder="drop", sparse_threshold=1.0)
        clf = LogisticRegression(C=1.0, max_iter=2000, random_state=random_state)
    else:
        raise ConfigurationError("family", family, f"one of {', '.join(map(repr, FAMILIES))}")
    if calibration is None:
        return Pipeline([("features", features), ("classifier", clf)])
    calibrated = CalibratedClassifierCV(
        clf,
        method=calibration,
        cv=StratifiedKFold(n_splits=calibration_cv, shuffle=True, random_state=random_state),
        ensemble=False,
    )
    return Pipeline([("features", features), ("classifier", calibrated)])


__all__ = ["DEFAULT_FAMILY", "FAMILIES", "make_pipeline"]
