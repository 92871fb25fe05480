"""The failure-warning estimator: calibrated failure risk, a warning threshold, and the reasons behind a risk.

:class:`FailureWarningModel` follows scikit-learn's estimator contract. ``fit(X, y)`` takes the feature
frame from :func:`forewarn.learning.features.build_features` (rows in time order) and the labels from
:func:`forewarn.learning.features.failure_labels`, and learns

* ``pipeline_`` - one :class:`~sklearn.pipeline.Pipeline` from *raw* feature rows to a calibrated failure
  probability (column encoding, classifier and calibration all inside it; nothing is re-implemented at
  scoring time, see :func:`~forewarn.learning.model.pipeline.make_pipeline`);
* ``threshold_`` - the risk at or above which a run is warned, chosen on the training data alone from
  out-of-fold risks (see :func:`~forewarn.learning.model.threshold.choose_threshold` and ``fit``).

Example::

    >>> model = FailureWarningModel(family="hgb", threshold_rule="precision", target_precision=0.5)
    >>> model.get_params()["alert_budget"]
    0.05
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import ThreadpoolController

import forewarn.learning.model._sklearn_fast as _sklearn_fast
from forewarn.errors import ConfigurationError, FeatureSchemaError, InsufficientHistoryError
from forewarn.learning._openmp import fit_thread_count
from forewarn.learning.features import FeatureSpec, feature_spec
from forewarn.learning.features.reasons import reason_text
from forewarn.learning.model.encoder import PICKLED_MODULE, SMALL_BATCH, numeric_block
from forewarn.learning.model.pipeline import (
    DEFAULT_FAMILY,
    FAMILIES,
    PrefitCalibratedClassifier,
    calibrated_pipeline,
    make_pipeline,
    raw_score,
)
from forewarn.learning.model.threshold import (
    THRESHOLD_RULES,
    choose_threshold,
    choose_threshold_over_slices,
    time_slices,
)
from forewarn.learning.readiness import MIN_FAILURES, MIN_RUNS

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


def _side_by_side(jobs: Sequence[Callable[[], Any]], threads: int) -> list[Any]:
    """Each job's result, in order; with ``threads >= 2`` the jobs run at once, the threads shared among them.

    Two HistGradientBoosting fits on one OpenMP thread each, side by side in two Python threads (the fit's
    loops release the GIL), took half the wall time of the same fits one after the other on two threads
    each: a fit's parallel regions leave a second core idle a third of the time (docs/benchmarks.md,
    "Training"). An OpenMP thread limit holds for the thread that sets it, so each job sets its own.
    With one thread, or one job, the jobs run in turn on ``threads``.
    """
    if threads < 2 or len(jobs) < 2:
        return [job() for job in jobs]
    shares = [threads // len(jobs) + (i < threads % len(jobs)) for i in range(len(jobs))]

    def run(job: Callable[[], Any], share: int) -> Any:
        with _openmp_threads(max(1, share)):
            return job()

    with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="forewarn-fit") as pool:
        futures = [pool.submit(run, job, share) for job, share in zip(jobs, shares, strict=True)]
        return [f.result() for f in futures]


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


class FailureWarningModel(ClassifierMixin, BaseEstimator):
    """Warns before a flow run fails: calibrated failure risk plus a threshold chosen on training data.

    Hyperparameters (stored untouched by ``__init__``, per the estimator contract):

    * ``family``: ``"stack"`` (default), ``"hgb"``, ``"logreg"`` or ``"mean"``, see :func:`make_pipeline`.
      ``"stack"`` fits both hgb and logreg, and its calibrator weighs their two out-of-time scores.
    * ``threshold_rule``: ``"precision"`` (lowest threshold reaching ``target_precision`` out of fold,
      falling back to the budget rule) or ``"budget"`` (warn the riskiest ``alert_budget`` share of runs).
    * ``min_failures`` / ``min_runs``: fewer labelled failures or runs than this raise
      :class:`~forewarn.errors.InsufficientHistoryError`.
    * ``threshold_holdout``: share of the (time-ordered) training rows, taken from the end, whose
      out-of-fold risks choose the threshold.
    * ``calibration``: ``"sigmoid"`` (Platt; keeps the ranking) or ``"isotonic"``.
    * ``n_threads``: OpenMP threads for scoring (``None``: all cores). The default is 1: for a few rows a
      parallel region costs more than the rows, and live scoring scores one row at a time.
    * ``threshold_slices``: the holdout's risks are cut into up to this many consecutive time slices (each
      with at least :data:`~forewarn.learning.model.threshold.MIN_SLICE_FAILURES` failures), the rule picks
      a threshold in each, and ``threshold_`` is their median (see :func:`choose_threshold_over_slices`).
    * ``fit_threads``: OpenMP threads for fitting, separate from ``n_threads`` because a fit's histograms
      over 100,000s of rows split well across idle cores. ``None`` (the default): the cores the rest of
      the machine leaves idle when the fit starts, or every core where OpenMP's waiting threads sleep
      (``forewarn.learning._openmp``). With two or more, the threshold's copy and the final classifier
      fit side by side, each on half of them (:func:`_side_by_side`).
    * ``max_fit_rows``: above this many labelled runs, each classifier fits on all failures and a random,
      up-weighted sample of the successful runs, about this many rows in all (see :meth:`_fit_rows`);
      ``None``: always on every row. The threshold's holdout is scored and calibrated on all its rows.

    Learned attributes: ``pipeline_``, ``threshold_``, ``threshold_source_``, ``slice_thresholds_``, ``feature_spec_``,
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
        min_failures: int = MIN_FAILURES,
        min_runs: int = MIN_RUNS,
        threshold_holdout: float = 0.3,
        calibration: str = "sigmoid",
        n_threads: int | None = 1,
        random_state: int = 0,
        threshold_slices: int = 4,
        fit_threads: int | None = None,
        max_fit_rows: int | None = 100_000,
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
        self.threshold_slices = threshold_slices
        self.fit_threads = fit_threads
        self.max_fit_rows = max_fit_rows

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickle; a model saved before ``threshold_slices`` and ``fit_threads`` existed gets the values
        it was fitted with (one pooled holdout, its one threshold), so ``get_params`` and ``repr`` work."""
        state.setdefault("threshold_slices", 1)
        state.setdefault("fit_threads", state.get("n_threads", 1))
        state.setdefault("max_fit_rows", None)
        if "threshold_" in state:
            state.setdefault("slice_thresholds_", [state["threshold_"]])
        super().__setstate__(state)

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
        if self.family == "stack" and self.calibration != "sigmoid":  # isotonic maps one score, not two
            raise ConfigurationError(
                "calibration", self.calibration, "'sigmoid' with family='stack' (isotonic: choose family='hgb')"
            )
        if not 0.0 < self.threshold_holdout < 1.0:
            raise ConfigurationError("threshold_holdout", self.threshold_holdout, "a share in (0, 1), e.g. 0.3")
        choose_threshold(
            [], [], self.threshold_rule, target_precision=self.target_precision, alert_budget=self.alert_budget
        )  # validates both values
        time_slices([], self.threshold_slices)  # validates it
        for name in ("n_threads", "fit_threads", "max_fit_rows"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigurationError(name, value, "a whole number >= 1, or None for every core")

    def _pipeline(self, spec: FeatureSpec, n_minority: int, *, calibrated: bool = True) -> Pipeline:
        return make_pipeline(
            spec,
            self.family,
            random_state=self.random_state,
            calibration=self.calibration if calibrated else None,
            calibration_cv=max(2, min(3, n_minority)),
        )

    def fit(self, X: pd.DataFrame, y: Any) -> FailureWarningModel:
        """Learn from feature rows ``X`` (in time order) and labels ``y`` (1 failed, 0 succeeded, NaN skip).

        Rows with a NaN label are dropped. Calibration and threshold come from one time holdout, honestly:
        an uncalibrated copy of the classifier is fitted on the earliest ``1 - threshold_holdout`` of the
        rows and gives raw scores for the latest ``threshold_holdout`` (out of fold, later in time, like
        real use). The classifier fitted on all rows is calibrated on those scores (the calibrator learns
        how often a score came true on runs after the ones it was learned from; a
        :class:`~forewarn.learning.model.pipeline.PrefitCalibratedClassifier` in ``pipeline_``), and
        :func:`choose_threshold_over_slices` applies ``threshold_rule`` to up to ``threshold_slices``
        consecutive slices of the calibrated holdout scores and takes the median (``threshold_source_ =
        "time_holdout"``). The calibrator is monotone, so this is a cut on the raw score chosen out of
        time. Two classifier fits in all, where shuffled 3-fold calibration took five.
        If the earliest part holds fewer than 3 failures (or the holdout none), the pipeline is
        calibrated on shuffled stratified 3-fold out-of-fold scores (:func:`make_pipeline`) and the
        threshold's risks are those of an uncalibrated copy through that calibrator (``"time_holdout"``,
        one needing 3 early failures), shuffled stratified 3-fold out-of-fold risks over all rows
        (``"kfold"``), or with fewer than 6 failures in all the final model's own in-sample risks
        (``"in_sample"``, optimistic); the last two as one slice. Above ``max_fit_rows`` rows each
        classifier fits on a weighted sample of them (:meth:`_fit_rows`).

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
                "or import older history: `forewarn import-runs`, `import-prefect`, `import-swf`), or run "
                "`forewarn simulate` to try forewarn out on simulated history."
            )
        spec = feature_spec(X)
        X = X.loc[:, list(spec.names)]
        n_minority = min(n_failures, n_runs - n_failures)

        threads = fit_thread_count(self.fit_threads)
        with _openmp_threads(threads):
            oof = self._fit_time_calibrated(X, labels, spec, threads)
            if oof is None:  # too few failures early on, or none in the holdout: calibrate out of fold
                self.pipeline_ = self._fit(self._pipeline(spec, n_minority), X, labels)
                oof = self._out_of_fold(X, labels, spec)
            if oof is None:  # too few failures to hold any out: in-sample risks, optimistic
                oof = (labels, self.pipeline_.predict_proba(X)[:, 1], "in_sample")
        self.threshold_, self.slice_thresholds_ = choose_threshold_over_slices(
            oof[0],
            oof[1],
            self.threshold_rule,
            n_slices=self.threshold_slices if oof[2] == "time_holdout" else 1,
            target_precision=self.target_precision,
            alert_budget=self.alert_budget,
        )
        self.threshold_source_ = oof[2]
        self.feature_spec_ = spec
        self.feature_baseline_ = {
            **{c: float(np.nanmedian(numeric_block(X[[c]]))) if X[c].notna().any() else math.nan for c in spec.numeric},
            **{c: _mode(X[c]) for c in spec.categorical},
        }
        self.n_train_runs_ = n_runs
        self.n_train_failures_ = n_failures
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = len(spec.names)
        self.feature_names_in_ = np.asarray(spec.names, dtype=object)
        return self

    def _fit_rows(self, y: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The rows a classifier is fitted on and their weights; ``(None, None)``: all rows, unweighted.

        Above ``max_fit_rows`` rows, every run of the minority outcome (failures, as a rule) is kept and the
        majority's runs are sampled at random (seeded by ``random_state``) down to ``max_fit_rows`` rows in
        all - never fewer than the minority's count - each kept one weighing ``1 / its sampling rate``, so
        the classifier still learns the true failure odds. The rows stay in time order.
        """
        n = len(y)
        if self.max_fit_rows is None or n <= self.max_fit_rows:
            return None, None
        minority_label = 1 if 2 * int(y.sum()) <= n else 0
        minority, majority = np.flatnonzero(y == minority_label), np.flatnonzero(y != minority_label)
        keep = max(self.max_fit_rows - len(minority), len(minority))
        if keep >= len(majority):
            return None, None
        rng = np.random.default_rng(self.random_state)
        rows = np.sort(np.concatenate([minority, rng.choice(majority, keep, replace=False)]))
        weight = np.where(y[rows] == minority_label, 1.0, len(majority) / keep)
        return rows, weight

    def _fit(self, pipeline: Pipeline, X: pd.DataFrame, y: np.ndarray) -> Pipeline:
        """``pipeline`` fitted on ``X, y``, or on the majority-subsampled, weighted rows of :meth:`_fit_rows`."""
        rows, weight = self._fit_rows(y)
        if rows is None:
            return pipeline.fit(X, y)
        if self.family == "mean":  # a VotingClassifier of Pipelines passes no weights on: subsampled only
            return pipeline.fit(X.iloc[rows], y[rows])
        return pipeline.fit(X.iloc[rows], y[rows], classifier__sample_weight=weight)

    def _fit_time_calibrated(
        self, X: pd.DataFrame, y: np.ndarray, spec: FeatureSpec, threads: int = 1
    ) -> tuple[np.ndarray, np.ndarray, str] | None:
        """Fit ``pipeline_`` calibrated on a time holdout; the holdout's labels and risks, or ``None``: can't.

        An uncalibrated copy of the classifier is fitted on the earliest ``1 - threshold_holdout`` of the
        rows and scores the latest ``threshold_holdout``; the uncalibrated classifier fitted on all rows
        gets a calibrator fitted on those out-of-time scores
        (:func:`~forewarn.learning.model.pipeline.calibrated_pipeline`), and the same calibrator makes the
        scores the risks the threshold is chosen on. ``None`` when the earlier rows hold fewer than 3 of
        either outcome or the holdout lacks one. The two fits are independent: they share the ``threads``
        side by side (:func:`_side_by_side`).
        """
        n = len(y)
        n_hold = max(1, round(n * self.threshold_holdout))
        early_y, hold_y = y[: n - n_hold], y[n - n_hold :]
        early_fail, hold_fail = int(early_y.sum()), int(hold_y.sum())
        if min(early_fail, len(early_y) - early_fail) < 3 or not 0 < hold_fail < len(hold_y):
            return None
        early, final = _side_by_side(
            [
                lambda: self._fit(self._pipeline(spec, 3, calibrated=False), X.iloc[: n - n_hold], early_y),
                lambda: self._fit(self._pipeline(spec, 3, calibrated=False), X, y),
            ],
            threads,
        )
        scores = raw_score(early, X.iloc[n - n_hold :])
        del early
        self.pipeline_ = calibrated_pipeline(final, self.calibration, scores, hold_y)
        return hold_y, self.pipeline_.named_steps["classifier"].calibrate(scores), "time_holdout"

    def _out_of_fold(
        self, X: pd.DataFrame, y: np.ndarray, spec: FeatureSpec
    ) -> tuple[np.ndarray, np.ndarray, str] | None:
        """Honest risks to choose the threshold on when :meth:`_fit_time_calibrated` could not; ``None``:
        use in-sample. ``pipeline_`` is calibrated out of fold (:func:`make_pipeline`) here."""
        n = len(y)
        n_hold = max(1, round(n * self.threshold_holdout))
        early_y = y[: n - n_hold]
        early_fail = int(early_y.sum())
        early_minority = min(early_fail, len(early_y) - early_fail)
        if early_minority >= 3:
            early = self._fit(self._pipeline(spec, early_minority, calibrated=False), X.iloc[: n - n_hold], early_y)
            risk = calibrated_risk(self.pipeline_, early.decision_function(X.iloc[n - n_hold :]))
            return y[n - n_hold :], risk, "time_holdout"
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
        (see :mod:`forewarn.learning.model._sklearn_fast`); the result is the pipeline's to the last bit,
        and anything unexpected takes the pipeline.
        """
        # 0 rows go to the Pipeline, whose error says what is wrong
        proba = _sklearn_fast.proba(self.pipeline_, rows) if 0 < len(rows) <= SMALL_BATCH else None
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

    def explain(
        self, X_row: pd.DataFrame | pd.Series | Mapping[str, Any], top: int = 3, *, raising_only: bool = False
    ) -> list[Reason]:
        """The ``top`` features that move this run's risk most, model-agnostically, largest first.

        For each feature the row is copied with that feature set to its training baseline (median for
        numeric, most frequent for categorical features); ``contribution = risk(row) - risk(copy)``, so a
        positive contribution means the actual value raises risk. The row and all copies are scored as one
        batch (see :meth:`_variant_risks`). Features at their baseline value (contribution 0) are left out,
        and so are values that state no fact about the run (:func:`~forewarn.learning.features.reasons.
        reason_text`: a rate with no history behind it, an attribute the run lacks); ``raising_only`` keeps
        the reasons that raise risk (a warning's "because"). Each reason's text says what the value means
        and what it was compared with.

        Example::

            >>> reasons = model.explain(features.iloc[[-1]], raising_only=True)  # doctest: +SKIP
            >>> print(reasons[0])  # doctest: +SKIP
            the last 3 runs of this flow failed in a row (usual: 0): raises risk by 0.18
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
        said: set[str] = set()
        as_dict = dict(zip(names, values, strict=True))
        for i in order:
            c = float(contributions[i])
            if len(reasons) >= top or abs(c) < 1e-9:
                break
            name = names[i]
            value, base = values[i], self.feature_baseline_[name]
            fact = reason_text(name, value, base, as_dict)
            if fact is None or fact in said or (raising_only and c <= 0):
                continue  # several time-of-week features say one thing; say it once
            said.add(fact)
            text = f"{fact}: {'raises' if c > 0 else 'lowers'} risk by {abs(c):.2g}"
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
        n = len(next(iter(columns.values()), ()))
        proba = _sklearn_fast.proba_of_columns(self.pipeline_, columns) if n <= SMALL_BATCH else None
        if proba is None:  # transform() would not take its small path either
            proba = self._proba(pd.DataFrame(columns))
        return proba[:, 1]


def calibrated_risk(pipeline: Pipeline, decision: np.ndarray) -> np.ndarray:
    """What the fitted calibrated ``pipeline`` makes of raw classifier scores ``decision``: a failure risk.

    The pipeline's classifier is a :class:`~forewarn.learning.model.pipeline.PrefitCalibratedClassifier`
    (its ``calibrate``), or, as :func:`make_pipeline` builds it and models saved before it, a
    :class:`~sklearn.calibration.CalibratedClassifierCV` with ``ensemble=False``: one classifier and one
    calibrator; the risk is that calibrator applied to ``decision``, clipped to [0, 1] as scikit-learn clips
    it. For the pipeline's own classifier's scores it equals ``pipeline.predict_proba(X)[:, 1]`` (a test
    checks it).
    """
    classifier = pipeline.named_steps["classifier"]
    if isinstance(classifier, PrefitCalibratedClassifier):
        return classifier.calibrate(decision)
    (member,) = classifier.calibrated_classifiers_
    (calibrator,) = member.calibrators
    return np.clip(np.asarray(calibrator.predict(np.asarray(decision, dtype=float)), dtype=float), 0.0, 1.0)


def _mode(s: pd.Series) -> Any:
    counts = s.dropna().value_counts()
    return counts.index[0] if len(counts) else None


# Saved models pickle this class by its module: the package's path, as before the package was split.
FailureWarningModel.__module__ = PICKLED_MODULE

__all__ = ["FailureWarningModel", "Reason", "calibrated_risk"]
