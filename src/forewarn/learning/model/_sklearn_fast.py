"""Scoring a few rows of an ``hgb`` model without scikit-learn's per-call overhead, on its private attributes.

Live scoring scores one run at a time. Through the Pipeline that costs ~2.5 ms, mostly scikit-learn
re-validating the input (and, for a ``CalibratedClassifierCV``, re-fitting a LabelEncoder inside every
``_CalibratedClassifier.predict_proba`` call); the trees themselves cost ~0.3 ms. This module repeats the
steps of the public path on the encoded matrix, reading scikit-learn internals that may change in any
release: ``sklearn.calibration._SigmoidCalibration`` and ``HistGradientBoostingClassifier.
_predict_iterations``, ``._predictors`` and ``._baseline_prediction``. So it is used only on the
scikit-learn releases in
:data:`TESTED_SKLEARN_VERSIONS`, where ``tests/test_model.py::TestFastScoring`` checks it against
``Pipeline.predict_proba`` to the last bit; with any other release :func:`hgb_parts` is ``None`` and the
model scores through the public ``pipeline.predict_proba``.

The ``"stack"`` pipeline takes the same path for its trees, and scores its logistic-regression member from
public fitted attributes (:class:`LogregParts`: imputer medians, scaler, one-hot categories, coefficients),
checked against the Pipeline by the same tests.

Example::

    >>> in_tested_range("1.4.2"), in_tested_range(TESTED_SKLEARN_VERSIONS[1])
    (False, True)
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import sklearn
import sklearn.calibration
from scipy.special import expit  # scipy: a dependency of scikit-learn's; expit is what it calibrates with
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from forewarn.learning.model.encoder import (
    STANDARD_SCORE_BOUND,
    FrameEncoder,
    categorical_block,
    category_key,
    clip_standardized,
    numeric_block,
    object_columns,
    object_rows,
)
from forewarn.learning.model.pipeline import PrefitCalibratedClassifier, StackedClassifier

TESTED_SKLEARN_VERSIONS: tuple[str, str] = ("1.9.1", "1.9.1")
"""The oldest and newest scikit-learn releases (inclusive) this module was checked against the public path on.

Widen it only after ``tests/test_model.py::TestFastScoring`` passed on the release to add.
"""


def release(version: str) -> tuple[int, ...]:
    """The release numbers of a version string: ``"1.9.1"`` -> ``(1, 9, 1)``, ``"1.10.dev0"`` -> ``(1, 10)``."""
    match = re.match(r"\d+(?:\.\d+)*", version)
    return tuple(int(part) for part in match.group().split(".")) if match else ()


def in_tested_range(version: str) -> bool:
    """Whether scikit-learn ``version`` lies within :data:`TESTED_SKLEARN_VERSIONS`."""
    oldest, newest = (release(v) for v in TESTED_SKLEARN_VERSIONS)
    return oldest <= release(version) <= newest


ENABLED = in_tested_range(sklearn.__version__)
"""Whether the installed scikit-learn is one this module was tested on; if not, nothing here is used."""

SIGMOID_CALIBRATION = getattr(sklearn.calibration, "_SigmoidCalibration", None)
"""sklearn's private Platt calibrator class; ``None`` in a version without it (then ``.predict`` is called)."""


@dataclass(frozen=True)
class HgbParts:
    """The fitted parts of an ``"hgb"`` pipeline that :func:`calibrated_proba` scores without sklearn's checks."""

    encoder: FrameEncoder
    calibrated: Any  # a fitted PrefitCalibratedClassifier or CalibratedClassifierCV over binary HGB classifiers


def hgb_parts(pipeline: Any) -> HgbParts | None:
    """The parts of ``pipeline`` if it is exactly what ``make_pipeline(spec, "hgb")`` fits, else ``None``.

    ``None`` too whenever the installed scikit-learn is outside :data:`TESTED_SKLEARN_VERSIONS`. Only the
    exact classes are accepted (no subclasses, no categorical preprocessing inside HGB, binary, sigmoid or
    isotonic calibration), so any other pipeline - the logreg family, a scikit-learn without these
    attributes - keeps the public ``predict_proba`` path.
    """
    if not ENABLED:
        return None
    steps = getattr(pipeline, "steps", None)
    if type(pipeline) is not Pipeline or not steps or len(steps) != 2:
        return None
    encoder, calibrated = steps[0][1], steps[1][1]
    if type(encoder) is not FrameEncoder:
        return None
    if type(calibrated) is PrefitCalibratedClassifier:
        fitted = hasattr(calibrated, "calibrator_") and len(getattr(calibrated, "classes_", ())) == 2
        return HgbParts(encoder, calibrated) if fitted and _plain_hgb(calibrated.estimator) else None
    if type(calibrated) is not CalibratedClassifierCV:
        return None
    members = getattr(calibrated, "calibrated_classifiers_", None)
    if not members or len(getattr(calibrated, "classes_", ())) != 2:
        return None
    for member in members:
        if (
            not _plain_hgb(getattr(member, "estimator", None))
            or getattr(member, "method", None) not in ("sigmoid", "isotonic")
            or len(getattr(member, "calibrators", ())) != 1
            or len(getattr(member, "classes", ())) != 2
        ):
            return None
    return HgbParts(encoder, calibrated)


def _plain_hgb(est: Any) -> bool:
    """Whether ``est`` is a fitted binary HistGradientBoostingClassifier with the attributes read here."""
    return (
        type(est) is HistGradientBoostingClassifier
        and getattr(est, "_preprocessor", None) is None  # else HGB would re-encode categorical columns
        and not hasattr(est, "feature_names_in_")  # fitted on a frame: sklearn would check the names
        and getattr(est, "n_trees_per_iteration_", None) == 1
        and all(hasattr(est, a) for a in ("_predict_iterations", "_predictors", "_baseline_prediction"))
    )


def calibrated_proba(calibrated: Any, Xt: np.ndarray) -> np.ndarray | None:
    """``calibrated.predict_proba(Xt)`` for :func:`hgb_parts`' calibrated HGB, to the last bit; ``None``: no.

    A :class:`~forewarn.learning.model.pipeline.PrefitCalibratedClassifier` (what ``fit`` builds) is its own
    ``predict_proba`` with HGB's decision function taken without re-validating ``Xt``. For a
    :class:`~sklearn.calibration.CalibratedClassifierCV` (models saved before, and the fallbacks' pipeline):
    the steps of sklearn's ``CalibratedClassifierCV.predict_proba`` and ``_CalibratedClassifier.predict_proba``
    (binary case) on the already-encoded float matrix: each member's HGB decision function (its trees'
    sum, via HGB's own tree code) goes through its calibrator into column 1, column 0 is ``1 - p``, values
    just above 1 are clipped, and the members' probabilities are averaged in order. What is skipped is
    input validation, the pandas/array-API dispatch and a LabelEncoder fit per call, for a matrix our
    own :class:`FrameEncoder` produced (checked: float64, 2-D, the width HGB was fitted on).
    """
    if not (isinstance(Xt, np.ndarray) and Xt.dtype == np.float64 and Xt.ndim == 2):
        return None  # e.g. set_output(transform="pandas") made the encoder return a DataFrame
    if type(calibrated) is PrefitCalibratedClassifier:  # its own predict_proba, from HGB's decision on
        if Xt.shape[1] != calibrated.estimator.n_features_in_:
            return None
        p = calibrated.calibrate(_hgb_decision(calibrated.estimator, Xt))
        return np.column_stack([1.0 - p, p])
    members = calibrated.calibrated_classifiers_
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
    if type(calibrator) is SIGMOID_CALIBRATION:
        return np.asarray(expit(-(calibrator.a_ * decision + calibrator.b_)))  # _SigmoidCalibration.predict
    return np.asarray(calibrator.predict(decision))


@dataclass(frozen=True)
class LogregParts:
    """A fitted ``make_pipeline(spec, "logreg", calibration=None)``, read off for scoring a few rows.

    Only public fitted attributes: the imputer's medians and indicated columns, the scaler's mean and scale,
    each one-hot encoder's categories (the infrequent ones share a column), the coefficients.
    """

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    fill: np.ndarray
    indicated: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    numeric_coef: np.ndarray
    category_coef: tuple[dict[str, float], ...]
    other_coef: tuple[float, ...]  # a value in no column of its own: the infrequent column's weight, or 0
    intercept: float

    def decision(self, values: np.ndarray) -> np.ndarray:
        """The logistic regression's decision function of an object matrix ``[*numeric, *categorical]``."""
        k = len(self.numeric)
        x = values[:, :k].astype(float)
        if np.isinf(x).any():  # the Pipeline's imputer refuses infinity: let it say so
            raise ValueError("infinite numeric feature")
        missing = np.isnan(x)
        z = np.concatenate([np.where(missing, self.fill, x), missing[:, self.indicated]], axis=1)
        z = np.clip((z - self.mean) / self.scale, -STANDARD_SCORE_BOUND, STANDARD_SCORE_BOUND)
        out = z @ self.numeric_coef + self.intercept
        for j, (weights, other) in enumerate(zip(self.category_coef, self.other_coef, strict=True), start=k):
            out += [weights.get(category_key(v), other) for v in values[:, j]]
        return np.asarray(out, dtype=float)


def logreg_parts(pipeline: Any) -> LogregParts | None:
    """The parts of ``pipeline`` if it is exactly the fitted logreg pipeline ``make_pipeline`` builds, else ``None``."""
    steps = getattr(pipeline, "steps", None)
    if type(pipeline) is not Pipeline or not steps or len(steps) != 2:
        return None
    ct, clf = steps[0][1], steps[1][1]
    if type(ct) is not ColumnTransformer or type(clf) is not LogisticRegression or getattr(clf, "coef_", None) is None:
        return None
    if clf.coef_.shape[0] != 1 or getattr(ct, "remainder", None) != "drop":
        return None
    named = dict((name, (pipe, cols)) for name, pipe, cols in getattr(ct, "transformers_", ()) if name != "remainder")
    numeric, categorical = named.get("numeric", (None, [])), named.get("categorical", (None, []))
    num = _numeric_parts(numeric[0]) if numeric[0] is not None else None
    cats = _category_parts(categorical[0]) if categorical[0] is not None else None
    if (numeric[0] is not None and num is None) or (categorical[0] is not None and cats is None):
        return None
    empty = (np.empty(0), np.empty(0, dtype=np.intp), np.empty(0), np.empty(0))
    fill, indicated, mean, scale = num if num is not None else empty
    coef = clf.coef_[0]
    width = len(fill) + len(indicated)
    if len(mean) != width:
        return None
    weights: list[dict[str, float]] = []
    others: list[float] = []
    at = width
    for frequent, infrequent in cats or []:
        weights.append({value: float(coef[at + i]) for i, value in enumerate(frequent)})
        others.append(float(coef[at + len(frequent)]) if infrequent else 0.0)
        at += len(frequent) + (1 if infrequent else 0)
    if at != len(coef):
        return None
    return LogregParts(
        numeric=tuple(numeric[1]),
        categorical=tuple(categorical[1]),
        fill=fill,
        indicated=indicated,
        mean=mean,
        scale=scale,
        numeric_coef=coef[:width],
        category_coef=tuple(weights),
        other_coef=tuple(others),
        intercept=float(clf.intercept_[0]),
    )


def _numeric_parts(pipe: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Imputer medians, indicated columns, scaler mean and scale of the numeric branch; ``None``: not ours."""
    kinds = [type(step) for _, step in getattr(pipe, "steps", ())]
    if kinds != [FunctionTransformer, SimpleImputer, StandardScaler, FunctionTransformer]:
        return None
    to_float, imputer, scaler, clip = (step for _, step in pipe.steps)
    if to_float.func is not numeric_block or clip.func is not clip_standardized:
        return None
    if imputer.strategy != "median" or not imputer.keep_empty_features or not scaler.with_mean or not scaler.with_std:
        return None
    indicated = imputer.indicator_.features_ if imputer.add_indicator else np.empty(0, dtype=np.intp)
    return imputer.statistics_.astype(float), np.asarray(indicated, dtype=np.intp), scaler.mean_, scaler.scale_


def _category_parts(pipe: Any) -> list[tuple[list[str], bool]] | None:
    """Per categorical column: the values with a column of their own, in output order, and whether an
    infrequent column follows them; ``None``: not the branch ``make_pipeline`` builds."""
    kinds = [type(step) for _, step in getattr(pipe, "steps", ())]
    if kinds != [FunctionTransformer, OneHotEncoder]:
        return None
    to_str, encoder = (step for _, step in pipe.steps)
    if to_str.func is not categorical_block or encoder.drop is not None:
        return None
    if encoder.handle_unknown != "infrequent_if_exist":
        return None
    out = []
    for categories, infrequent in zip(encoder.categories_, encoder.infrequent_categories_, strict=True):
        rare = set() if infrequent is None else set(infrequent.tolist())
        out.append(([str(c) for c in categories.tolist() if c not in rare], bool(rare)))
    return out


@dataclass(frozen=True)
class StackParts:
    """The fitted parts of a ``"stack"`` pipeline: hgb's encoder and trees, logreg's parts, the calibrator.

    Both members read the same columns in the same order (checked), so one object matrix of the rows
    (:func:`~forewarn.learning.model.encoder.object_rows`) feeds the encoder and the logistic regression.
    """

    encoder: FrameEncoder
    hgb: Any
    logreg: LogregParts
    calibrated: PrefitCalibratedClassifier

    @property
    def names(self) -> list[str]:
        """The columns both members read: numeric, then categorical."""
        return [*self.logreg.numeric, *self.logreg.categorical]

    def proba(self, values: np.ndarray) -> np.ndarray:
        """``predict_proba`` of the rows in object matrix ``values`` (columns :attr:`names`)."""
        trees = _hgb_decision(self.hgb, self.encoder.encode_objects(values))
        scores = np.column_stack([trees, self.logreg.decision(values)])
        p = self.calibrated.calibrate(scores)
        return np.column_stack([1.0 - p, p])


# A fitted pipeline is read once: LogregParts holds a dict per categorical column (thousands of values on
# a trace like CTC), too dear to build again for every scored row. Weak keys: a model's parts go with it.
_STACK_PARTS: weakref.WeakKeyDictionary[Any, StackParts | None] = weakref.WeakKeyDictionary()


def stack_parts(pipeline: Any) -> StackParts | None:
    """The parts of ``pipeline`` if it is exactly what ``FailureWarningModel(family="stack")`` fits, else ``None``.

    Read once per fitted pipeline (a fitted model's pipeline is not changed in place).
    """
    if not ENABLED or type(pipeline) is not Pipeline:
        return None
    if pipeline not in _STACK_PARTS:
        _STACK_PARTS[pipeline] = _read_stack_parts(pipeline)
    return _STACK_PARTS[pipeline]


def _read_stack_parts(pipeline: Pipeline) -> StackParts | None:
    if len(pipeline.steps) != 2:
        return None
    if not (isinstance(pipeline.steps[0][1], str) and pipeline.steps[0][1] == "passthrough"):
        return None
    calibrated = pipeline.steps[1][1]
    if type(calibrated) is not PrefitCalibratedClassifier or type(calibrated.estimator) is not StackedClassifier:
        return None
    if calibrated.method != "sigmoid" or not hasattr(calibrated, "calibrator_"):
        return None
    members = getattr(calibrated.estimator, "members_", [])
    if len(members) != 2:
        return None
    hgb, logreg = members
    hgb_steps = getattr(hgb, "steps", [])
    if type(hgb) is not Pipeline or len(hgb_steps) != 2 or type(hgb_steps[0][1]) is not FrameEncoder:
        return None
    if not _plain_hgb(hgb_steps[1][1]):
        return None
    encoder, parts = hgb_steps[0][1], logreg_parts(logreg)
    if parts is None or (tuple(encoder.numeric), tuple(encoder.categorical)) != (parts.numeric, parts.categorical):
        return None  # the members read other columns: one object matrix would not serve both
    return StackParts(encoder, hgb_steps[1][1], parts, calibrated)


def proba(pipeline: Any, rows: pd.DataFrame) -> np.ndarray | None:
    """``pipeline.predict_proba(rows)`` by the fast path, to the last bit; ``None``: take the public path.

    For a few rows (``FrameEncoder``'s small path); what the encoder raises propagates, as it would
    from the Pipeline. A ``"stack"`` pipeline's rows go through hgb's fast path and :class:`LogregParts`.
    """
    parts = hgb_parts(pipeline)
    if parts is not None:
        return calibrated_proba(parts.calibrated, parts.encoder.transform(rows))
    stack = stack_parts(pipeline)
    if stack is None:
        return None
    try:
        return stack.proba(object_rows(rows, stack.names))
    except (TypeError, ValueError):  # e.g. pd.NA in an object column: the Pipeline says what it makes of it
        return None


def proba_of_columns(pipeline: Any, columns: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """``pipeline.predict_proba(pd.DataFrame(columns))`` without building the frame; ``None``: no fast path.

    For at most ``SMALL_BATCH`` rows: the encoder writes the columns straight into its matrix (building
    a DataFrame and taking it apart again cost ~1 ms). Where its small path refuses a value, ``None``.
    """
    parts = hgb_parts(pipeline)
    stack = stack_parts(pipeline) if parts is None else None
    if parts is None and stack is None:
        return None
    try:
        if parts is not None:
            return calibrated_proba(parts.calibrated, parts.encoder._encode_columns(columns))
        assert stack is not None
        return stack.proba(object_columns(columns, stack.names))
    except (TypeError, ValueError, KeyError):  # as transform(): the frame path handles odd values
        return None


__all__ = [
    "ENABLED",
    "LogregParts",
    "StackParts",
    "TESTED_SKLEARN_VERSIONS",
    "HgbParts",
    "calibrated_proba",
    "hgb_parts",
    "in_tested_range",
    "logreg_parts",
    "proba",
    "proba_of_columns",
    "release",
    "stack_parts",
]
