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

Example::

    >>> in_tested_range("1.4.2"), in_tested_range(TESTED_SKLEARN_VERSIONS[1])
    (False, True)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import sklearn
import sklearn.calibration
from scipy.special import expit  # scipy: a dependency of scikit-learn's; expit is what it calibrates with
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline

from forewarn.learning.model.encoder import FrameEncoder
from forewarn.learning.model.pipeline import PrefitCalibratedClassifier

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


def proba(pipeline: Any, rows: pd.DataFrame) -> np.ndarray | None:
    """``pipeline.predict_proba(rows)`` by the fast path, to the last bit; ``None``: take the public path.

    For a few rows (``FrameEncoder``'s small path); what the encoder raises propagates, as it would
    from the Pipeline.
    """
    parts = hgb_parts(pipeline)
    if parts is None:
        return None
    return calibrated_proba(parts.calibrated, parts.encoder.transform(rows))


def proba_of_columns(pipeline: Any, columns: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """``pipeline.predict_proba(pd.DataFrame(columns))`` without building the frame; ``None``: no fast path.

    For at most ``SMALL_BATCH`` rows: the encoder writes the columns straight into its matrix (building
    a DataFrame and taking it apart again cost ~1 ms). Where its small path refuses a value, ``None``.
    """
    parts = hgb_parts(pipeline)
    if parts is None:
        return None
    try:
        Xt = parts.encoder._encode_columns(columns)
    except (TypeError, ValueError, KeyError):  # as transform(): the frame path handles odd values
        return None
    return calibrated_proba(parts.calibrated, Xt)


__all__ = [
    "ENABLED",
    "TESTED_SKLEARN_VERSIONS",
    "HgbParts",
    "calibrated_proba",
    "hgb_parts",
    "in_tested_range",
    "proba",
    "proba_of_columns",
    "release",
]
