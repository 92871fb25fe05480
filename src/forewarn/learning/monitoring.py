"""Live monitoring: did the live warnings come true, and should the model be retrained?

The pre-run hook and the forecast write one ``predictions`` row per scoring of a run; when the run ends,
its ``flow_runs`` state says whether it failed. This module joins the two (pandas only: the scoring layer
reads the frames from the store) and reports, per flow and per week or day, the same figures the
backtest reports, now for warnings that were really issued. Exact definitions (the README's Metrics
section repeats them):

* **Predictions that count** for a run: those made before the run ended (all of them while it has not).
  With a ``MonitorReference``, only the predictions of that model version.
* A run is **scored** when at least one prediction counts; it is **warned** when any of them warned
  (a forecast hours ahead or the hook at start); its **risk** is that of its last counting prediction.
* A scored run is **pending** until it ends; an ended run is **labelled** unless ``CANCELLED``; it
  **failed** when it ended ``FAILED``, ``CRASHED`` or ``TIMEDOUT``.
* Over labelled runs: **WR** = warned failures / failures, **precision** = warned failures / warnings,
  **false alarms** = warned runs that did not fail, **false-alarm rate** = false alarms / labelled runs
  that did not fail, **lead** = median over warned failures of (end time - first warning).
* Runs are placed in time (buckets, the drift window) by their ``start_time``, else ``scheduled_start``,
  else the first prediction's ``scheduled_start``, else its ``predicted_at``.

The retrain advice weighs four checks (:func:`retrain_advice`); drift figures come from
:mod:`forewarn.learning.drift`.

Example::

    >>> import pandas as pd
    >>> t = pd.Timestamp("2026-03-02 09:00", tz="UTC")
    >>> predictions = pd.DataFrame({"flow_run_id": ["a", "b"], "flow_name": ["etl", "etl"],
    ...     "deployment": [None, None], "scheduled_start": [t, t], "predicted_at": [t, t],
    ...     "risk": [0.9, 0.1], "warned": [True, False], "model_version": ["m1", "m1"]})
    >>> runs = pd.DataFrame({"flow_run_id": ["a", "b"], "flow_name": ["etl", "etl"], "state": ["FAILED", "COMPLETED"],
    ...     "scheduled_start": [t, t], "start_time": [t, t], "end_time": [t + pd.Timedelta("5min")] * 2})
    >>> figures = outcome_metrics(live_outcomes(predictions, runs))
    >>> figures["WR"], figures["precision"], figures["false_alarms"]
    (1.0, 1.0, 0)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from forewarn.learning._json import jsonable
from forewarn.learning.drift import (
    PSI_RETRAIN,
    RiskReference,
    population_stability,
    rate_difference_interval,
    wilson_interval,
)
from forewarn.learning.metrics import warning_metrics
from forewarn.records import FAILURE_STATES, FINAL_STATES

OUTCOME_COLUMNS: tuple[str, ...] = (
    "flow_run_id",
    "flow_name",
    "deployment",
    "time",
    "predictions",
    "risk",
    "warned",
    "first_warned_at",
    "state",
    "pending",
    "labelled",
    "failed",
    "lead_seconds",
)
"""Columns of :func:`live_outcomes`: one row per scored run."""

FREQUENCIES = {"week": "W", "day": "D"}
"""The time buckets of :func:`over_time`: weeks (Monday to Sunday, UTC) or days (UTC)."""

MIN_RUNS = 50
"""Fewest runs a drift check judges on: live risks for the PSI, labelled runs for the failure rate."""

MIN_WARNINGS = 10
"""Fewest warnings (for precision) or failures (for WR) the live-quality checks judge on."""

MIN_RATE_CHANGE = 0.02
"""Smallest failure-rate change (absolute, 2 percentage points) that recommends retraining."""


@dataclass(frozen=True, slots=True)
class MonitorReference:
    """What the installed model knew: its version, training window and figures, from its manifest.

    ``risk_reference`` is ``None`` for a model trained before forewarn recorded it (the PSI check is then
    skipped, with the reason); ``backtest_precision``/``backtest_wr`` are the walk-forward figures the
    live ones are compared with.

    Example::

        >>> ref = MonitorReference("m1", (None, None), train_runs=1000, train_failures=50)
        >>> ref.train_failure_rate
        0.05
    """

    model_version: str
    training_window: tuple[Any, Any]
    train_runs: int
    train_failures: int
    risk_reference: RiskReference | None = None
    backtest_precision: float | None = None
    backtest_wr: float | None = None

    @property
    def train_failure_rate(self) -> float | None:
        """Failures / labelled runs in the training window."""
        return self.train_failures / self.train_runs if self.train_runs else None

    @classmethod
    def from_manifest(cls, manifest: Any) -> MonitorReference:
        """The reference of a :class:`~forewarn.learning.model.ModelManifest` (its ``extra["risk_reference"]``)."""
        stored = (manifest.extra or {}).get("risk_reference")
        model = ((manifest.backtest_metrics or {}).get("model")) or {}
        return cls(
            model_version=manifest.version,
            training_window=tuple(manifest.training_window),  # type: ignore[arg-type]
            train_runs=int(manifest.n_train_runs),
            train_failures=int(manifest.n_train_failures),
            risk_reference=RiskReference.from_json(stored) if stored else None,
            backtest_precision=model.get("precision"),
            backtest_wr=model.get("WR"),
        )


def _utc(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True)


def live_outcomes(predictions: pd.DataFrame, runs: pd.DataFrame, *, model_version: str | None = None) -> pd.DataFrame:
    """One row per scored run (columns :data:`OUTCOME_COLUMNS`), joining predictions to run outcomes.

    ``predictions`` is :meth:`TelemetryStore.predictions`, ``runs`` :meth:`TelemetryStore.runs`; the
    module docstring defines each column's meaning. A prediction for a run missing from ``runs`` leaves
    the run pending.
    """
    preds = predictions if model_version is None else predictions[predictions["model_version"] == model_version]
    preds = preds.assign(predicted_at=_utc(preds["predicted_at"]), scheduled_start=_utc(preds["scheduled_start"]))
    outcome = runs.loc[:, ["flow_run_id", "state", "scheduled_start", "start_time", "end_time"]].drop_duplicates(
        "flow_run_id", keep="last"
    )
    outcome = outcome.rename(columns={"scheduled_start": "run_scheduled_start"})
    joined = preds.merge(outcome, on="flow_run_id", how="left")
    end = _utc(joined["end_time"])
    joined = joined.loc[end.isna() | (joined["predicted_at"] < end)].sort_values(["predicted_at"], kind="stable")
    if joined.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in OUTCOME_COLUMNS})
    joined["warned_at"] = joined["predicted_at"].where(joined["warned"].astype(bool))
    per_run = joined.groupby("flow_run_id", sort=False).agg(
        flow_name=("flow_name", "last"),
        deployment=("deployment", "last"),
        predictions=("risk", "size"),
        risk=("risk", "last"),
        warned=("warned", "any"),
        first_warned_at=("warned_at", "min"),
        first_scheduled=("scheduled_start", "first"),
        first_predicted=("predicted_at", "first"),
        state=("state", "last"),
        run_scheduled_start=("run_scheduled_start", "last"),
        start_time=("start_time", "last"),
        end_time=("end_time", "last"),
    )
    return _outcome_columns(per_run.reset_index())


def _outcome_columns(per_run: pd.DataFrame) -> pd.DataFrame:
    """Place each run in time and label it (the module docstring's definitions)."""
    time = _utc(per_run["start_time"])
    for fallback in ("run_scheduled_start", "first_scheduled", "first_predicted"):
        time = time.fillna(_utc(per_run[fallback]))
    state = per_run["state"].astype(object).where(per_run["state"].notna(), None)
    ended = state.isin(FINAL_STATES)
    failed = state.isin(FAILURE_STATES)
    warned = per_run["warned"].astype(bool)
    first_warned = _utc(per_run["first_warned_at"])
    lead = (_utc(per_run["end_time"]) - first_warned).dt.total_seconds().where(warned & failed)
    out = per_run.assign(
        time=time,
        state=state,
        warned=warned,
        first_warned_at=first_warned,
        pending=~ended,
        labelled=ended & state.ne("CANCELLED"),
        failed=failed,
        lead_seconds=lead,
    )
    return out.loc[:, list(OUTCOME_COLUMNS)].sort_values(["time", "flow_run_id"], kind="stable").reset_index(drop=True)


def outcome_metrics(outcomes: pd.DataFrame) -> dict[str, Any]:
    """The live figures of ``outcomes`` (from :func:`live_outcomes`); ratios ``None`` when undefined.

    Keys: ``scored``, ``pending``, ``labelled``, ``failures``, ``warnings``, ``true_warnings``,
    ``false_alarms``, ``WR``, ``precision``, ``false_alarm_rate``, ``median_lead_time_seconds``.
    """
    labelled = outcomes.loc[outcomes["labelled"].astype(bool)]
    m = warning_metrics(
        labelled["failed"].astype(bool), labelled["warned"].astype(bool), labelled["risk"].astype(float),
        lead_seconds=labelled["lead_seconds"].astype(float),
    )
    return {
        "scored": len(outcomes),
        "pending": int(outcomes["pending"].astype(bool).sum()),
        "labelled": m["runs"],
        "failures": m["failures"],
        "warnings": m["warnings"],
        "true_warnings": m["true_warnings"],
        "false_alarms": m["false_warnings"],
        "WR": m["WR"],
        "precision": m["precision"],
        "false_alarm_rate": m["false_alarm_rate"],
        "median_lead_time_seconds": m["median_lead_time_seconds"],
    }


METRIC_KEYS: tuple[str, ...] = tuple(outcome_metrics(pd.DataFrame({c: [] for c in OUTCOME_COLUMNS})))
"""The columns of :func:`per_flow` and :func:`over_time`, the keys of :func:`outcome_metrics`."""


def per_flow(outcomes: pd.DataFrame) -> pd.DataFrame:
    """:func:`outcome_metrics` per flow name, one row each, sorted by name (columns :data:`METRIC_KEYS`).

    Undefined ratios are ``None``, as in :func:`outcome_metrics`.
    """
    rows = {str(name): outcome_metrics(group) for name, group in outcomes.groupby("flow_name", sort=True)}
    table = pd.DataFrame.from_dict(rows, orient="index", columns=list(METRIC_KEYS))
    table.index.name = "flow_name"
    return _none_for_undefined(table)


def _none_for_undefined(table: pd.DataFrame) -> pd.DataFrame:
    """Undefined ratios as ``None`` (as :func:`outcome_metrics` gives them), not pandas' NaN."""
    return table.astype(object).where(table.notna(), None)


def over_time(outcomes: pd.DataFrame, *, freq: str = "week", start: Any = None, end: Any = None) -> pd.DataFrame:
    """:func:`outcome_metrics` per week or day (``freq`` ``"week"``/``"day"``, UTC), every bucket listed.

    Buckets from ``start`` to ``end`` (default: the first and last run's time) with no scored run are
    rows of zeros and ``None`` rates, so a plot shows a gap rather than joining the points around it.
    Indexed by the bucket's first day (``datetime64[ns, UTC]``), named ``bucket``.

    Example::

        >>> empty = pd.DataFrame({c: [] for c in OUTCOME_COLUMNS})
        >>> table = over_time(empty, freq="day", start="2026-03-01", end="2026-03-03")
        >>> table["scored"].tolist(), table["WR"].tolist()
        ([0, 0, 0], [None, None, None])
    """
    if freq not in FREQUENCIES:
        raise ValueError(f"freq must be one of {', '.join(FREQUENCIES)}, not {freq!r}")
    times = _utc(outcomes["time"]).dt.tz_convert(None)
    first = pd.Timestamp(start).tz_localize(None) if start is not None else times.min()
    last = pd.Timestamp(end).tz_localize(None) if end is not None else times.max()
    if pd.isna(first) or pd.isna(last):
        return pd.DataFrame(columns=list(METRIC_KEYS), index=pd.DatetimeIndex([], tz="UTC", name="bucket"))
    periods = pd.period_range(first, last, freq=FREQUENCIES[freq])
    bucket = times.dt.to_period(FREQUENCIES[freq])
    groups = dict(iter(outcomes.groupby(bucket.to_numpy(), sort=False)))
    empty = outcomes.iloc[:0]
    rows = [outcome_metrics(groups.get(period, empty)) for period in periods]
    index = pd.DatetimeIndex(periods.start_time, name="bucket").tz_localize("UTC")
    return _none_for_undefined(pd.DataFrame(rows, index=index, columns=list(METRIC_KEYS)))


def drift_figures(
    reference: MonitorReference | None,
    recent_outcomes: pd.DataFrame,
    recent_runs: pd.DataFrame,
    *,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Risk PSI and failure-rate change of the recent window against the model's training window.

    ``recent_outcomes`` (:func:`live_outcomes` rows placed in the window) give the live risks;
    ``recent_runs`` (every run of the window, scored or not) give the live failure rate, over labelled runs.
    """
    labels = recent_runs["state"].astype(object)
    labelled = labels.isin(FINAL_STATES) & labels.ne("CANCELLED")
    n_live, x_live = int(labelled.sum()), int(labels.isin(FAILURE_STATES).sum())
    risks = recent_outcomes["risk"].astype(float).to_numpy()
    figures: dict[str, Any] = {
        "live_risks": int((~np.isnan(risks)).sum()),
        "live_mean_risk": float(np.nanmean(risks)) if len(risks) else None,
        "psi": None,
        "live_runs": n_live,
        "live_failures": x_live,
        "live_failure_rate": x_live / n_live if n_live else None,
        "train_runs": reference.train_runs if reference else None,
        "train_failures": reference.train_failures if reference else None,
        "train_failure_rate": reference.train_failure_rate if reference else None,
        "failure_rate_change": None,
        "failure_rate_change_ci": None,
        "confidence": confidence,
    }
    if reference is None:
        return figures
    if reference.risk_reference is not None:
        figures["psi"] = population_stability(reference.risk_reference, risks)
    if n_live and reference.train_runs:
        figures["failure_rate_change"] = x_live / n_live - reference.train_failures / reference.train_runs
        figures["failure_rate_change_ci"] = rate_difference_interval(
            x_live, n_live, reference.train_failures, reference.train_runs, confidence
        )
    return figures


@dataclass(frozen=True, slots=True)
class RetrainAdvice:
    """Whether to retrain, and why: ``reasons`` for retraining; ``notes`` for checks that could not judge.

    Example::

        >>> RetrainAdvice(True, ("risk PSI 0.31 >= 0.25",)).headline
        'retrain: risk PSI 0.31 >= 0.25'
    """

    retrain: bool
    reasons: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def headline(self) -> str:
        """One line: ``retrain: <reasons>`` or ``no retraining needed``, with what was not judged."""
        if self.retrain:
            return "retrain: " + "; ".join(self.reasons)
        return "no retraining needed" + (f" ({'; '.join(self.notes)})" if self.notes else "")


def _pct(value: float) -> str:
    return f"{value:.1%}"


def retrain_advice(
    reference: MonitorReference | None,
    drift: Mapping[str, Any],
    live: Mapping[str, Any],
    *,
    psi_limit: float = PSI_RETRAIN,
    min_runs: int = MIN_RUNS,
    min_warnings: int = MIN_WARNINGS,
    min_rate_change: float = MIN_RATE_CHANGE,
) -> RetrainAdvice:
    """Recommend retraining when any check fires; a check without enough data only adds a note.

    1. **risk drift**: PSI of the live risks (at least ``min_runs``) ``>= psi_limit``;
    2. **failure-rate drift**: the confidence interval of (live - training failure rate), over at least
       ``min_runs`` labelled runs, excludes 0 and the change is at least ``min_rate_change``;
    3. **precision**: over at least ``min_warnings`` labelled warnings, the upper Wilson bound of the live
       precision is below the backtest's precision;
    4. **WR**: likewise over at least ``min_warnings`` failures, against the backtest's WR.
    """
    if reference is None:
        return RetrainAdvice(False, notes=("no model installed: train one with `forewarn train`",))
    reasons: list[str] = []
    notes: list[str] = []
    confidence = float(drift.get("confidence", 0.95))
    _check_psi(reference, drift, psi_limit, min_runs, reasons, notes)
    _check_failure_rate(drift, min_runs, min_rate_change, confidence, reasons, notes)
    _check_quality("precision", live["true_warnings"], live["warnings"], "warnings", reference.backtest_precision,
                   min_warnings, confidence, reasons, notes)
    _check_quality("WR", live["true_warnings"], live["failures"], "failures", reference.backtest_wr,
                   min_warnings, confidence, reasons, notes)
    return RetrainAdvice(bool(reasons), tuple(reasons), tuple(notes))


def _check_psi(
    reference: MonitorReference, drift: Mapping[str, Any], limit: float, min_runs: int,
    reasons: list[str], notes: list[str],
) -> None:
    if reference.risk_reference is None:
        notes.append(f"model {reference.model_version} records no training risk distribution (retrain to add it)")
    elif drift["live_risks"] < min_runs:
        notes.append(f"risk drift: {drift['live_risks']} live risks, {min_runs} needed")
    elif drift["psi"] is not None and drift["psi"] >= limit:
        reasons.append(f"risk distribution shifted: PSI {drift['psi']:.2f} >= {limit:g}")


def _check_failure_rate(
    drift: Mapping[str, Any], min_runs: int, min_change: float, confidence: float,
    reasons: list[str], notes: list[str],
) -> None:
    if drift["live_runs"] < min_runs:
        notes.append(f"failure-rate drift: {drift['live_runs']} ended runs, {min_runs} needed")
        return
    change, interval = drift["failure_rate_change"], drift["failure_rate_change_ci"]
    if change is None or interval is None:
        return
    low, high = interval
    if (low > 0 or high < 0) and abs(change) >= min_change:
        reasons.append(
            f"failure rate {_pct(drift['live_failure_rate'])} now vs {_pct(drift['train_failure_rate'])} in training "
            f"({change * 100:+.1f} points, {confidence:.0%} CI {low * 100:+.1f} to {high * 100:+.1f})"
        )


def _check_quality(
    name: str, hits: int, n: int, of: str, backtest: float | None, minimum: int, confidence: float,
    reasons: list[str], notes: list[str],
) -> None:
    if backtest is None:
        return
    if n < minimum:
        notes.append(f"live {name}: {n} {of}, {minimum} needed")
        return
    interval = wilson_interval(hits, n, confidence)
    if interval is not None and interval[1] < backtest:
        reasons.append(
            f"live {name} {_pct(hits / n)} ({hits} of {n} {of}; {confidence:.0%} CI {_pct(interval[0])} to "
            f"{_pct(interval[1])}) is below the backtest's {_pct(backtest)}"
        )


@dataclass(frozen=True)
class MonitorReport:
    """What :func:`monitor_report` found: live figures overall, per flow and over time, drift and advice."""

    since: datetime
    until: datetime
    drift_since: datetime
    model_version: str | None
    overall: dict[str, Any]
    per_flow: pd.DataFrame
    over_time: pd.DataFrame
    drift: dict[str, Any]
    advice: RetrainAdvice
    freq: str = "week"
    outcomes: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (times as ISO text, undefined ratios ``None``)."""
        return jsonable(
            {
                "since": self.since,
                "until": self.until,
                "drift_since": self.drift_since,
                "model_version": self.model_version,
                "overall": self.overall,
                "per_flow": self.per_flow.reset_index().to_dict(orient="records"),
                "over_time": self.over_time.reset_index().to_dict(orient="records"),
                "drift": self.drift,
                "retrain": self.advice.retrain,
                "reasons": list(self.advice.reasons),
                "notes": list(self.advice.notes),
            }
        )

    def to_markdown(self) -> str:
        """The report as markdown (a Prefect artifact): the advice, the figures per flow and over time, drift."""
        advice = self.advice
        lines = [
            f"# forewarn live monitoring: {'**retrain**' if advice.retrain else 'no retraining needed'}",
            "",
            f"Model `{self.model_version or 'none installed'}`; runs from {self.since:%Y-%m-%d %H:%M} to "
            f"{self.until:%Y-%m-%d %H:%M} UTC; drift over the runs since {self.drift_since:%Y-%m-%d %H:%M}.",
            "",
            *(f"- retrain: {reason}" for reason in advice.reasons),
            *(f"- not judged: {note}" for note in advice.notes),
            "",
            _markdown_table(self.per_flow, "flow"),
            "",
            _markdown_table(self.over_time.rename(index=lambda t: f"{t:%Y-%m-%d}"), self.freq),
            "",
            "| drift | value |",
            "|---|---|",
            *(f"| {key} | {_markdown_value(value)} |" for key, value in self.drift.items()),
        ]
        return "\n".join(lines)


def _markdown_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, tuple):
        return " to ".join(_markdown_value(v) for v in value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")  # a flow name must not break the table


def _markdown_table(table: pd.DataFrame, first: str) -> str:
    columns = ["scored", "pending", "failures", "warnings", "WR", "precision", "false_alarms", "false_alarm_rate"]
    rows = [f"| {first} | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, row in table.iterrows():
        rows.append(f"| {_markdown_value(name)} | " + " | ".join(_markdown_value(row[c]) for c in columns) + " |")
    return "\n".join(rows)


def monitor_report(
    predictions: pd.DataFrame,
    runs: pd.DataFrame,
    reference: MonitorReference | None,
    *,
    since: datetime,
    until: datetime,
    drift_window: timedelta = timedelta(days=7),
    freq: str = "week",
    confidence: float = 0.95,
    **advice_options: Any,
) -> MonitorReport:
    """Live figures of the runs placed in ``[since, until)``, drift over ``[until - drift_window, until)``.

    ``predictions`` and ``runs`` may hold more than the window (only runs placed inside it count);
    ``runs`` should hold every run that started in the drift window, since the live failure rate is over
    all of them, scored or not. ``advice_options`` go to :func:`retrain_advice`.
    """
    version = reference.model_version if reference is not None else None
    outcomes = live_outcomes(predictions, runs, model_version=version)
    start, end = pd.Timestamp(since), pd.Timestamp(until)
    outcomes = outcomes.loc[(outcomes["time"] >= start) & (outcomes["time"] < end)].reset_index(drop=True)
    drift_start = max(start, end - pd.Timedelta(drift_window))
    recent = outcomes.loc[outcomes["time"] >= drift_start]
    run_time = _utc(runs["start_time"]).fillna(_utc(runs["scheduled_start"]))
    recent_runs = runs.loc[(run_time >= drift_start) & (run_time < end)]
    overall = outcome_metrics(outcomes)
    drift = drift_figures(reference, recent, recent_runs, confidence=confidence)
    return MonitorReport(
        since=start.to_pydatetime(),
        until=end.to_pydatetime(),
        drift_since=drift_start.to_pydatetime(),
        model_version=version,
        overall=overall,
        per_flow=per_flow(outcomes),
        over_time=over_time(outcomes, freq=freq, start=start, end=end - pd.Timedelta(1, "ns")),
        drift=drift,
        advice=retrain_advice(reference, drift, overall, **advice_options),
        freq=freq,
        outcomes=outcomes,
    )


__all__ = [
    "FREQUENCIES",
    "METRIC_KEYS",
    "MIN_RATE_CHANGE",
    "MIN_RUNS",
    "MIN_WARNINGS",
    "OUTCOME_COLUMNS",
    "MonitorReference",
    "MonitorReport",
    "RetrainAdvice",
    "drift_figures",
    "live_outcomes",
    "monitor_report",
    "outcome_metrics",
    "over_time",
    "per_flow",
    "retrain_advice",
]
