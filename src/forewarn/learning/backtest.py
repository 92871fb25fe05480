"""Walk-forward backtest: would the model have warned before past failures, better than simple rules?

The backtest replays history in time order, the way the model would have lived:

1. Labelled runs (:func:`forewarn.learning.features.failure_labels` is 1 or 0) are sorted by ``scheduled_start``
   and their features are computed *once* with :func:`forewarn.learning.features.build_features`, which only uses
   history that ended before each run's ``scheduled_start - lead`` (leakage-free per row).
2. The first ``min_train_fraction`` of the labelled runs (in ``scheduled_start`` order) is never tested;
   the rest is split into ``n_folds`` consecutive test windows holding equal numbers of runs, so a gap in
   the history (a pause, a migrated scheduler) cannot leave a window empty.
3. For each window ``[start, end)`` a :class:`~forewarn.learning.model.FailureWarningModel` is trained on the
   labelled runs that *ended* before ``start - lead`` (the moment the window's first warning is issued),
   never on runs merely scheduled before it; its threshold is chosen inside that training data. Then it
   scores every run scheduled in the window.
4. Two baselines score the same runs: ``last_failed`` (risk = the ``flow_last_ended_failed`` feature,
   warned when ``>= 0.5``) and ``smoothed_rate`` (risk = ``flow_failure_rate_smoothed``, warned at a
   threshold chosen on the fold's training runs by the model's own rule).

Lead time: the warning for run ``r`` is issued at ``cutoff = r.scheduled_start - lead``; for a warned
failure its lead time is ``r.end_time - cutoff`` (seconds from the warning until the failure was
recorded), and ``median_lead_time_seconds`` is the median over warned failures.

Example::

    >>> from forewarn.history.simulate import history_to_runs_frame, simulate_history
    >>> runs = history_to_runs_frame(simulate_history(20_000, seed=1))  # doctest: +SKIP
    >>> result = walk_forward_backtest(runs, n_folds=3)  # doctest: +SKIP
    >>> result.overall["model"]["pr_auc"] > result.overall["last_failed"]["pr_auc"]  # doctest: +SKIP
    True
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from forewarn.errors import ConfigurationError, InsufficientHistoryError
from forewarn.learning._json import jsonable
from forewarn.learning.metrics import average_precision_by_group, escape_rate, operating_point, warning_metrics
from forewarn.learning.model import DEFAULT_FAMILY, FailureWarningModel, choose_threshold

PREDICTION_COLUMNS: tuple[str, ...] = (
    "run_id",
    "flow_name",
    "scheduled_start",
    "fold",
    "risk",
    "threshold",
    "warned",
    "failed",
    "last_failed_risk",
    "last_failed_warned",
    "smoothed_rate_risk",
    "smoothed_rate_warned",
)
"""Columns of :attr:`BacktestResult.predictions`, one row per scored test run."""

LAST_FAILED_THRESHOLD = 0.5
SYSTEMS: tuple[str, ...] = ("model", "last_failed", "smoothed_rate")


@dataclass(frozen=True)
class BacktestResult:
    """What a walk-forward backtest found.

    * ``overall``: ``{"model": metrics, "last_failed": metrics, "smoothed_rate": metrics, "escape": ER}``
      over all test runs of all folds (metrics as :func:`forewarn.learning.metrics.warning_metrics`, ER as
      :func:`forewarn.learning.metrics.escape_rate`).
    * ``per_flow``: one row per flow name with its runs, failures and each system's PR-AUC, WR, precision.
    * ``folds``: one dict per test window: bounds, training counts, thresholds (and ``slice_thresholds``,
      the validation slices' own), timings, per-fold PR-AUC, ``operating_point`` (where the threshold landed
      on the window: :func:`forewarn.learning.metrics.operating_point`) and ``skipped`` (``None``, or why the
      fold could not be trained). ``overall["operating_point"]`` is their spread
      (:func:`operating_point_spread`).
    * ``predictions``: one row per test run, columns :data:`PREDICTION_COLUMNS`.
    * ``params`` and ``timings``: how it was run and how long it took.

    Example::

        >>> result.to_json()["overall"]["model"]["WR"]  # doctest: +SKIP
        0.41
    """

    overall: dict[str, Any]
    per_flow: pd.DataFrame
    folds: list[dict[str, Any]]
    predictions: pd.DataFrame
    params: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self, *, include_predictions: bool = False) -> dict[str, Any]:
        """A JSON-serialisable dict (times as ISO text, NaN as ``None``); predictions only on request."""
        out: dict[str, Any] = {
            "params": self.params,
            "timings": self.timings,
            "overall": self.overall,
            "folds": self.folds,
            "per_flow": self.per_flow.reset_index().to_dict(orient="records"),
        }
        if include_predictions:
            out["predictions"] = self.predictions.to_dict(orient="records")
        return jsonable(out)


@dataclass(frozen=True)
class PreparedHistory:
    """Labelled runs in time order with their features, computed once (see :func:`prepare_history`)."""

    runs: pd.DataFrame  # labelled runs sorted by scheduled_start, positional index
    X: pd.DataFrame  # features, same order
    y: np.ndarray  # 1 failed, 0 succeeded
    sched: np.ndarray  # scheduled_start, int64 ns UTC
    end: np.ndarray  # end_time, int64 ns UTC; NaT -> never ended
    attempts: pd.DataFrame | None
    lead: timedelta
    features_seconds: float


_NEVER = np.iinfo(np.int64).max


def _ns(s: pd.Series) -> np.ndarray:
    t = pd.to_datetime(s, utc=True)
    out = t.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    out[t.isna().to_numpy()] = _NEVER
    return out


def prepare_history(
    runs: pd.DataFrame,
    attempts: pd.DataFrame | None = None,
    lead: timedelta = timedelta(0),
    feature_config: Any = None,
) -> PreparedHistory:
    """The labelled runs sorted by ``scheduled_start`` (``start_time`` when missing), with their features.

    The backtest's folds and the final training fit (:func:`forewarn.learning.training.train_and_save`) both start
    from this one table, so the features are computed once and both see the same rows in the same order.
    """
    from forewarn.learning.features import build_features, failure_labels

    t0 = time.perf_counter()
    labels = failure_labels(runs)
    label = runs["flow_run_id"].map(labels).to_numpy(dtype=float)
    labelled = runs.loc[~np.isnan(label)].copy()
    labelled["_label"] = label[~np.isnan(label)]
    sched = pd.to_datetime(labelled["scheduled_start"], utc=True)
    if "start_time" in labelled:
        sched = sched.fillna(pd.to_datetime(labelled["start_time"], utc=True))
    labelled["_sched"] = sched
    labelled = labelled.loc[labelled["_sched"].notna()]
    labelled = labelled.sort_values(["_sched", "flow_run_id"], kind="stable").reset_index(drop=True)
    if labelled.empty:
        raise InsufficientHistoryError(
            "no finished, labelled runs to backtest on: collect more history or run `forewarn simulate`"
        )
    kwargs: dict[str, Any] = {"lead": lead}
    if feature_config is not None:
        kwargs["config"] = feature_config
    X = build_features(labelled.drop(columns=["_label", "_sched"]), runs, attempts, **kwargs)
    X = X.reindex(pd.Index(labelled["flow_run_id"], name=X.index.name))
    return PreparedHistory(
        runs=labelled,
        X=X,
        y=labelled["_label"].to_numpy(dtype=int),
        sched=_ns(labelled["_sched"]),
        end=_ns(labelled["end_time"]),
        attempts=attempts,
        lead=lead,
        features_seconds=time.perf_counter() - t0,
    )


@dataclass(frozen=True)
class _Baselines:
    """The two baselines' risks for every prepared run (same order as :attr:`PreparedHistory.X`)."""

    last_failed: np.ndarray  # the run's flow_last_ended_failed feature
    smoothed_rate: np.ndarray  # the run's flow_failure_rate_smoothed feature

    @classmethod
    def of(cls, X: pd.DataFrame) -> _Baselines:
        """Read both from the feature frame (absent or non-numeric values count as 0)."""
        from forewarn.learning.features import BASELINE_LAST_FAILED, BASELINE_SMOOTHED_RATE

        return cls(_baseline(X, BASELINE_LAST_FAILED), _baseline(X, BASELINE_SMOOTHED_RATE))


def _baseline(X: pd.DataFrame, name: str) -> np.ndarray:
    if name not in X.columns:
        return np.zeros(len(X))
    return np.nan_to_num(pd.to_numeric(X[name], errors="coerce").to_numpy(dtype=float), nan=0.0)


def _run_folds(
    prep: PreparedHistory,
    *,
    n_folds: int,
    min_train_fraction: float,
    family: str,
    model_params: Mapping[str, Any] | None,
    progress: Callable[[int, int], None] | None,
) -> BacktestResult:
    """Train and score one model per test window, beside the baselines, and sum it all up."""
    if n_folds < 1:
        raise ConfigurationError("n_folds", n_folds, "a whole number >= 1, e.g. n_folds=5")
    if not 0.0 < min_train_fraction < 1.0:
        raise ConfigurationError("min_train_fraction", min_train_fraction, "a share in (0, 1), e.g. 0.4")
    started = time.perf_counter()
    params = {"family": family, **dict(model_params or {})}
    template = FailureWarningModel(**params)
    edges = _window_edges(prep.sched, n_folds, min_train_fraction)
    baselines = _Baselines.of(prep.X)
    folds: list[dict[str, Any]] = []
    scored: list[tuple[pd.DataFrame, np.ndarray]] = []  # per trained fold: its prediction rows, its test rows
    fit_total = 0.0
    if progress is not None:
        progress(0, n_folds)
    for i in range(n_folds):
        record, part = _run_fold(prep, template, baselines, i, edges[i], edges[i + 1], last=i == n_folds - 1)
        folds.append(record)
        fit_total += record.get("fit_seconds", 0.0)
        if part is not None:
            scored.append(part)
        if progress is not None:
            progress(i + 1, n_folds)
    if not scored:
        raise InsufficientHistoryError(_no_fold_trained(folds))
    predictions, rows = _predictions(scored)
    overall = _overall(prep, predictions, rows)
    overall["operating_point"] = operating_point_spread(folds, template)
    return BacktestResult(
        overall=overall,
        per_flow=_per_flow(predictions),
        folds=folds,
        predictions=predictions,
        params={
            **params,
            "n_folds": n_folds,
            "min_train_fraction": min_train_fraction,
            "lead_seconds": prep.lead.total_seconds(),
            "labelled_runs": len(prep.runs),
            "history_start": pd.Timestamp(int(prep.sched[0]), tz="UTC"),
            "history_end": pd.Timestamp(int(prep.sched[-1]), tz="UTC"),
        },
        timings={
            "features_seconds": prep.features_seconds,
            "fit_seconds": fit_total,
            "folds_seconds": time.perf_counter() - started,
        },
    )


def _no_fold_trained(folds: list[dict[str, Any]]) -> str:
    """Why no fold trained: each fold's training history in one line, then the last fold's reason once.

    The reasons differ only in their counts (and the advice in them is the same), so five of them in full
    would bury it; the last fold has the most history, so its reason says how far the store is from enough.
    """
    counts = ", ".join(f"{f['fold']}: {f['n_train_runs']:,} / {f['n_train_failures']:,}" for f in folds)
    return (
        f"no backtest fold could be trained (training runs / failures per fold {counts}); "
        f"the last fold: {folds[-1]['skipped']}"
    )


def operating_point_spread(folds: list[dict[str, Any]], model: FailureWarningModel) -> dict[str, Any]:
    """How the model's operating point varied across the trained folds: the per-fold figures' ranges.

    ``rule`` and its target (``target_precision`` or ``alert_budget``), and over the folds that were
    trained: ``precision``, ``alert_share``, ``WR``, ``best_WR`` and ``WR_to_best`` as ``[min, max]``
    (``None`` where no fold defines it), ``folds`` (how many), and ``folds_on_target`` (how many met
    :func:`forewarn.learning.metrics.operating_point`'s ``on_target``).

    Example::

        >>> folds = [{"operating_point": {"precision": 0.45, "alert_share": 0.04, "WR": 0.5, "best_WR": 0.55,
        ...           "WR_to_best": 0.9, "on_target": True}}, {"skipped": "too few runs"}]
        >>> operating_point_spread(folds, FailureWarningModel())["precision"]
        [0.45, 0.45]
    """
    points = [f["operating_point"] for f in folds if f.get("operating_point")]
    target = (
        {"target_precision": model.target_precision}
        if model.threshold_rule == "precision"
        else {"alert_budget": model.alert_budget}
    )
    spread: dict[str, Any] = {"rule": model.threshold_rule, **target}
    for key in ("precision", "alert_share", "WR", "best_WR", "WR_to_best"):
        values = [p[key] for p in points if p[key] is not None]
        spread[key] = [min(values), max(values)] if values else None
    spread["folds"] = len(points)
    spread["folds_on_target"] = sum(bool(p["on_target"]) for p in points)
    return spread


def _window_edges(sched: np.ndarray, n_folds: int, min_train_fraction: float) -> list[int]:
    """The bounds of the ``n_folds`` test windows (ns): equal numbers of runs after the first share."""
    n = len(sched)
    split = int(n * min_train_fraction)
    return [int(sched[split + (n - split) * i // n_folds]) for i in range(n_folds)] + [int(sched[-1])]


def _lead_ns(prep: PreparedHistory) -> int:
    return int(prep.lead.total_seconds() * 1e9)


def _run_fold(
    prep: PreparedHistory,
    template: FailureWarningModel,
    baselines: _Baselines,
    fold: int,
    lo: int,
    hi: int,
    *,
    last: bool,
) -> tuple[dict[str, Any], tuple[pd.DataFrame, np.ndarray] | None]:
    """One test window ``[lo, hi)`` (the last one closed): its record, and its scored rows unless skipped."""
    in_window = (prep.sched >= lo) & ((prep.sched <= hi) if last else (prep.sched < hi))
    test = np.flatnonzero(in_window)
    train = np.flatnonzero(prep.end < lo - _lead_ns(prep))
    record = _fold_record(prep, fold, lo, hi, train, test)
    if len(test) == 0:
        record["skipped"] = "no runs scheduled in this window"
        return record, None
    model = _fit_fold(prep, template, train, record)
    if model is None:
        return record, None
    part = _score_fold(prep, model, baselines, fold, train, test, record)
    return record, (part, test)


def _fold_record(
    prep: PreparedHistory, fold: int, lo: int, hi: int, train: np.ndarray, test: np.ndarray
) -> dict[str, Any]:
    """What :attr:`BacktestResult.folds` says about a window before its model is trained."""
    return {
        "fold": fold,
        "test_start": pd.Timestamp(lo, tz="UTC"),
        "test_end": pd.Timestamp(hi, tz="UTC"),
        "train_cutoff": pd.Timestamp(lo - _lead_ns(prep), tz="UTC"),
        "n_train_runs": len(train),
        "n_train_failures": int(prep.y[train].sum()),
        "train_last_end": pd.Timestamp(int(prep.end[train].max()), tz="UTC") if len(train) else None,
        "n_test_runs": len(test),
        "n_test_failures": int(prep.y[test].sum()),
        "skipped": None,
    }


def _fit_fold(
    prep: PreparedHistory, template: FailureWarningModel, train: np.ndarray, record: dict[str, Any]
) -> FailureWarningModel | None:
    """A fresh copy of ``template`` fitted on the training rows; ``None`` (and ``skipped`` said) if too few."""
    model = FailureWarningModel(**template.get_params())
    t0 = time.perf_counter()
    try:
        model.fit(prep.X.iloc[train], prep.y[train])
    except InsufficientHistoryError as exc:
        record["skipped"] = str(exc)
    record["fit_seconds"] = time.perf_counter() - t0
    return model if record["skipped"] is None else None


def _score_fold(
    prep: PreparedHistory,
    model: FailureWarningModel,
    baselines: _Baselines,
    fold: int,
    train: np.ndarray,
    test: np.ndarray,
    record: dict[str, Any],
) -> pd.DataFrame:
    """Score the window's runs with the model and both baselines; record thresholds, timing and PR-AUCs."""
    t0 = time.perf_counter()
    risk = model.risk(prep.X.iloc[test])
    record["score_seconds"] = time.perf_counter() - t0
    smooth_thr = choose_threshold(
        prep.y[train],
        baselines.smoothed_rate[train],
        model.threshold_rule,
        target_precision=model.target_precision,
        alert_budget=model.alert_budget,
    )
    record.update(
        threshold=model.threshold_,
        threshold_source=model.threshold_source_,
        smoothed_rate_threshold=smooth_thr,
    )
    last_failed, smoothed = baselines.last_failed[test], baselines.smoothed_rate[test]
    part = pd.DataFrame(
        {
            "run_id": prep.runs["flow_run_id"].to_numpy()[test],
            "flow_name": prep.runs["flow_name"].to_numpy()[test],
            "scheduled_start": prep.runs["_sched"].iloc[test].to_numpy(),
            "fold": fold,
            "risk": risk,
            "threshold": model.threshold_,
            "warned": risk >= model.threshold_,
            "failed": prep.y[test],
            "last_failed_risk": last_failed,
            "last_failed_warned": last_failed >= LAST_FAILED_THRESHOLD,
            "smoothed_rate_risk": smoothed,
            "smoothed_rate_warned": smoothed >= smooth_thr,
        }
    )
    for system in SYSTEMS:
        rk, wk = _columns(system)
        record[f"{system}_pr_auc"] = warning_metrics(part["failed"], part[wk], part[rk])["pr_auc"]
    record["slice_thresholds"] = list(model.slice_thresholds_)
    record["operating_point"] = operating_point(
        part["failed"],
        part["warned"],
        part["risk"],
        model.threshold_rule,
        target_precision=model.target_precision,
        alert_budget=model.alert_budget,
    )
    return part


def _predictions(scored: list[tuple[pd.DataFrame, np.ndarray]]) -> tuple[pd.DataFrame, np.ndarray]:
    """All folds' prediction rows as one frame, and the prepared rows they score, in the same order."""
    predictions = pd.concat([part for part, _ in scored], ignore_index=True)
    predictions["scheduled_start"] = pd.to_datetime(predictions["scheduled_start"], utc=True)
    return predictions, np.concatenate([test for _, test in scored])


def _overall(prep: PreparedHistory, predictions: pd.DataFrame, rows: np.ndarray) -> dict[str, Any]:
    """Each system's metrics over every test run (with lead times), and the escape rate of those runs."""
    cutoff = prep.sched - _lead_ns(prep)
    lead_seconds = np.where(prep.end == _NEVER, np.nan, (prep.end - cutoff) / 1e9)
    overall: dict[str, Any] = {system: _metrics(predictions, system, lead_seconds[rows]) for system in SYSTEMS}
    overall["escape"] = escape_rate(prep.runs.iloc[rows], prep.attempts)
    return overall


def _columns(system: str) -> tuple[str, str]:
    if system == "model":
        return "risk", "warned"
    return f"{system}_risk", f"{system}_warned"


def _metrics(predictions: pd.DataFrame, system: str, lead_seconds: np.ndarray | None) -> dict[str, Any]:
    risk, warned = _columns(system)
    return warning_metrics(predictions["failed"], predictions[warned], predictions[risk], lead_seconds=lead_seconds)


def _per_flow(predictions: pd.DataFrame) -> pd.DataFrame:
    """Per flow (sorted by name): runs, failures, and each system's PR-AUC, WR, precision and warnings.

    The same definitions as :func:`warning_metrics` on each flow's rows (NaN where those are ``None``),
    computed for every flow at once: real schedulers have thousands of flows.
    """
    codes, flows = pd.factorize(predictions["flow_name"], sort=True)
    k = len(flows)
    failed = predictions["failed"].to_numpy(dtype=float)
    runs = np.bincount(codes, minlength=k)
    failures = np.bincount(codes, weights=failed, minlength=k)
    table: dict[str, Any] = {"runs": runs, "failures": failures.astype(np.int64)}
    with np.errstate(invalid="ignore", divide="ignore"):
        for system in SYSTEMS:
            risk, warned = _columns(system)
            w = predictions[warned].to_numpy(dtype=bool)
            warnings = np.bincount(codes, weights=w, minlength=k)
            true = np.bincount(codes, weights=w & (failed == 1), minlength=k)
            table[f"{system}_pr_auc"] = average_precision_by_group(codes, failed, predictions[risk])
            table[f"{system}_WR"] = np.where(failures > 0, true / failures, np.nan)
            table[f"{system}_precision"] = np.where(warnings > 0, true / warnings, np.nan)
            table[f"{system}_warnings"] = warnings.astype(np.int64)
    return pd.DataFrame(table, index=pd.Index(flows, name="flow_name"))


def walk_forward_backtest(
    runs: pd.DataFrame,
    attempts: pd.DataFrame | None = None,
    *,
    n_folds: int = 5,
    min_train_fraction: float = 0.4,
    lead: timedelta = timedelta(0),
    family: str = DEFAULT_FAMILY,
    model_params: Mapping[str, Any] | None = None,
    feature_config: Any = None,
    progress: Callable[[int, int], None] | None = None,
    prepared: PreparedHistory | None = None,
) -> BacktestResult:
    """Replay history in time order and score the model and two baselines on held-out windows.

    ``runs`` is a runs frame (``TelemetryStore.runs()`` or ``simulate.history_to_runs_frame``),
    ``attempts`` the matching attempts frame or ``None`` for run-level history (then ``ER`` is ``None``).
    ``model_params`` go to :class:`~forewarn.learning.model.FailureWarningModel` (e.g. ``{"threshold_rule":
    "budget", "alert_budget": 0.02}``); ``progress(done, total)`` is called as folds finish. See the
    module docstring for the exact procedure. A fold whose training data is too small is recorded with
    ``skipped`` set; if every fold is skipped, :class:`~forewarn.errors.InsufficientHistoryError` is raised.
    ``prepared`` (from :func:`prepare_history` with the same ``lead`` and ``feature_config``) skips
    computing the features again.

    Example::

        >>> result = walk_forward_backtest(runs, n_folds=5, lead=timedelta(minutes=10))  # doctest: +SKIP
        >>> result.predictions.columns.tolist()[:4]  # doctest: +SKIP
        ['run_id', 'flow_name', 'scheduled_start', 'fold']
    """
    prep = prepared if prepared is not None else prepare_history(runs, attempts, lead, feature_config)
    result = _run_folds(
        prep,
        n_folds=n_folds,
        min_train_fraction=min_train_fraction,
        family=family,
        model_params=model_params,
        progress=progress,
    )
    return result


COMPARISON_COLUMNS: tuple[str, ...] = (
    "pr_auc",
    "roc_auc",
    "brier",
    "WR",
    "precision",
    "false_alarm_rate",
    "warnings",
    "median_lead_time_seconds",
    "fit_seconds",
)


def compare_families(
    runs: pd.DataFrame,
    attempts: pd.DataFrame | None = None,
    families: Iterable[str] = ("hgb", "logreg"),
    **kw: Any,
) -> pd.DataFrame:
    """Backtest several model families on the same folds (features computed once) next to the baselines.

    Returns one row per family and per baseline (``last_failed``, ``smoothed_rate``), columns
    :data:`COMPARISON_COLUMNS`. Keyword arguments are those of :func:`walk_forward_backtest` (except
    ``family``).

    Example::

        >>> compare_families(runs, n_folds=3).loc[["hgb", "logreg"], "pr_auc"]  # doctest: +SKIP
    """
    allowed = {"n_folds", "min_train_fraction", "lead", "model_params", "feature_config", "progress"}
    unknown = sorted(set(kw) - allowed)
    if unknown:
        raise TypeError(f"compare_families() got unexpected keyword(s) {unknown}; allowed: {sorted(allowed)}")
    prep = prepare_history(runs, attempts, kw.get("lead", timedelta(0)), kw.get("feature_config"))
    results: dict[str, BacktestResult] = {}  # kept for the baselines, which are the same for every family
    rows: dict[str, dict[str, Any]] = {}
    for family in families:
        result = _run_folds(
            prep,
            n_folds=kw.get("n_folds", 5),
            min_train_fraction=kw.get("min_train_fraction", 0.4),
            family=family,
            model_params=kw.get("model_params"),
            progress=kw.get("progress"),
        )
        results[family] = result
        rows[family] = {**result.overall["model"], "fit_seconds": result.timings["fit_seconds"]}
    first = next(iter(results.values()))
    for system in SYSTEMS[1:]:
        rows[system] = {**first.overall[system], "fit_seconds": 0.0}
    frame = pd.DataFrame.from_dict(rows, orient="index").loc[:, list(COMPARISON_COLUMNS)]
    frame.index.name = "system"
    return frame


__all__ = [
    "COMPARISON_COLUMNS",
    "PREDICTION_COLUMNS",
    "BacktestResult",
    "PreparedHistory",
    "compare_families",
    "operating_point_spread",
    "prepare_history",
    "walk_forward_backtest",
]
