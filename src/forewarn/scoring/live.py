"""Scoring flow runs for failure risk: the Prefect-free core of the pre-run hook and the forecast.

:func:`score_runs` describes each target run with :func:`forewarn.learning.features.build_features` - the same code
that builds the training and backtest tables - from the history in the telemetry store that was known at
the run's **cutoff**, then asks the current model (:func:`load_current_model`) for its risk and its top
reasons. The cutoff of a run scheduled at ``s`` and scored at ``now`` is ``min(s, now)``:

* scored at or after its scheduled start (the pre-run hook; a late start): the cutoff is ``s``, exactly
  as in training and in the backtest, so the live score equals the backtest score for the same history
  (``tests/test_scoring.py`` checks this to 1e-12);
* scored ahead of it (the forecast): the cutoff is ``now``, because nothing later is known yet; the run
  is described with ``lead = s - now``.

The history comes from :mod:`forewarn.scoring.cache` (warm, through the process's
:class:`~forewarn.scoring.cache.HistoryCache`, or read afresh) and the model from
:mod:`forewarn.scoring.registry`. The names those modules own stay importable from here for one release.

Example::

    >>> loaded = load_current_model("models")  # doctest: +SKIP
    >>> if loaded is not None:  # doctest: +SKIP
    ...     model, manifest = loaded
    ...     table = score_runs(store, upcoming, model, manifest, now=datetime.now(timezone.utc))
    ...     table[["flow_run_id", "risk", "warned", "reasons"]]
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from forewarn.errors import FeatureSchemaError
from forewarn.learning.features import (
    NONE,
    AttemptIndex,
    FeatureConfig,
    RunIndex,
    build_features,
    cutoff_window,
    reference_times,
)
from forewarn.learning.model import FailureWarningModel, ModelManifest
from forewarn.records import FEATURE_PREFIX
from forewarn.scoring.cache import HistoryCache, history_cache, read_history
from forewarn.scoring.cache import clear_history_caches as clear_history_caches
from forewarn.scoring.registry import check_feature_schema as check_feature_schema
from forewarn.scoring.registry import clear_model_cache as clear_model_cache
from forewarn.scoring.registry import configured_model_key as configured_model_key
from forewarn.scoring.registry import current_manifest_path as current_manifest_path
from forewarn.scoring.registry import feature_config_dict as feature_config_dict
from forewarn.scoring.registry import feature_config_of
from forewarn.scoring.registry import load_current_model as load_current_model
from forewarn.timeutil import utc_timestamp

if TYPE_CHECKING:
    from forewarn.records import FlowRunRecord
    from forewarn.store import TelemetryStore

SCORE_COLUMNS: tuple[str, ...] = (
    "flow_run_id",
    "flow_name",
    "deployment",
    "scheduled_start",
    "lead_seconds",
    "risk",
    "threshold",
    "warned",
    "reasons",
    "model_version",
)
"""Columns of :func:`score_runs`' table, in order."""

TOP_REASONS = 3
"""How many reasons :func:`score_runs` gives per run."""

_UTC_NS = pd.DatetimeTZDtype("ns", "UTC")


def _target_frame(targets: pd.DataFrame, manifest: ModelManifest) -> pd.DataFrame:
    """``targets`` ready for build_features (changed columns copied); feature_* columns it lacks added, missing."""
    missing = [c for c in ("flow_run_id", "flow_name") if c not in targets.columns]
    if missing or ("scheduled_start" not in targets.columns and "start_time" not in targets.columns):
        raise FeatureSchemaError(
            f"targets lack column(s) {', '.join(missing) or 'scheduled_start'}: score_runs needs flow_run_id, "
            "flow_name and scheduled_start (or start_time) per run"
        )
    frame = (
        targets
        if isinstance(targets.index, pd.RangeIndex) and targets.index.start == 0
        else targets.reset_index(drop=True)
    )
    ids = frame["flow_run_id"].to_numpy(dtype=object)
    columns: dict[str, Any] = {}
    if not all(type(v) is str for v in ids.tolist()):  # an id may come as a UUID or a number
        ids = columns["flow_run_id"] = np.asarray([str(v) for v in ids.tolist()], dtype=object)
    if len(set(ids.tolist())) != len(ids):
        dup = pd.Series(ids).loc[lambda s: s.duplicated()].iloc[0]
        raise ValueError(f"targets repeat flow_run_id {dup!r}: score each run once per call")
    for name in ("scheduled_start", "start_time"):
        if name in frame.columns and frame[name].dtype != _UTC_NS:
            columns[name] = pd.to_datetime(frame[name], utc=True).astype(_UTC_NS)
    for name, kind in manifest.feature_types.items():
        if name.startswith(FEATURE_PREFIX) and name not in frame.columns:
            # a live run may lack an attribute the training history had: it is scored as missing
            columns[name] = np.full(len(frame), np.nan) if kind == "numeric" else np.full(len(frame), NONE, object)
    return frame.assign(**columns) if columns else frame  # only what differs is copied (~0.3 ms a column)


def _for_model(X: pd.DataFrame, model: FailureWarningModel) -> pd.DataFrame:
    """``X`` in the dtypes the model was trained on; coerced only when a column differs (rare, ~1 ms)."""
    spec = model.feature_spec_
    missing = [c for c in spec.names if c not in X.columns]
    if missing:
        raise FeatureSchemaError(
            f"the features lack {', '.join(missing)} that the model was trained on; retrain it with `forewarn train`"
        )
    dtypes = dict(zip(X.columns, X.dtypes.tolist(), strict=True))
    numeric_ok = all(dtypes[c] == np.float64 for c in spec.numeric)
    categorical_ok = all(dtypes[c] == np.dtype(object) for c in spec.categorical)
    return X if numeric_ok and categorical_ok else spec.coerce(X)


def score_runs(
    store: TelemetryStore,
    targets: pd.DataFrame,
    model: FailureWarningModel,
    manifest: ModelManifest,
    *,
    now: datetime,
    config: FeatureConfig | None = None,
    cache: HistoryCache | bool = True,
    top: int = TOP_REASONS,
) -> pd.DataFrame:
    """Score each target run for failure risk with what was known at its cutoff ``min(scheduled_start, now)``.

    ``targets`` is a runs frame (``flow_run_id``, ``flow_name``, ``scheduled_start`` or ``start_time``,
    and optionally ``deployment``, ``parameters``, ``parameters_hash``, ``flow_version``, ``feature_*``).
    The features come from :func:`~forewarn.learning.features.build_features` over the runs that ended in the
    store inside :func:`~forewarn.learning.features.history_window` of the cutoffs and the attempts of its last
    ``global_window``; a ``feature_*`` attribute the model knows but a target lacks is scored as missing.
    ``cache=True`` reads the window through the process's :class:`HistoryCache` of ``store`` (warm after
    the first call), ``False`` reads it afresh, or pass a cache. ``config`` defaults to the model's
    (:func:`feature_config_of`).

    Returns one row per target, in order, with :data:`SCORE_COLUMNS`: ``lead_seconds`` is
    ``scheduled_start - now`` (negative for a run scored after its scheduled start), ``warned`` is
    ``risk >= threshold`` (the model's ``threshold_``), ``reasons`` the ``top`` reasons of
    :meth:`~forewarn.learning.model.FailureWarningModel.explain` as sentences for a warned run, and an empty list
    for a run below the threshold (only warned runs are explained, so a quiet run's predictions row
    carries no reasons). Raises
    :class:`~forewarn.errors.FeatureSchemaError` when the model needs features that cannot be built and
    :class:`~forewarn.errors.StoreError` when the store cannot be read.

    Example::

        >>> table = score_runs(store, upcoming, model, manifest, now=now)  # doctest: +SKIP
        >>> table.loc[table["warned"], ["flow_run_id", "risk", "reasons"]]  # doctest: +SKIP
    """
    now_ts = utc_timestamp(now)
    frame = _target_frame(targets, manifest)
    if frame.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in SCORE_COLUMNS})
    config = config or feature_config_of(manifest)
    ref = reference_times(frame)
    cutoff = np.minimum(ref, now_ts.value)
    runs, attempts = _known_history(store, cutoff, config, cache, now_ts)
    X = _for_model(_features(frame, ref - cutoff, runs, attempts, config), model)
    risk = np.asarray(model.risk(X), dtype=np.float64)
    threshold = float(model.threshold_)
    warned = risk >= threshold
    reasons = _reasons(model, X, warned, top)
    return _score_table(frame, ref, now_ts, risk, threshold, warned, reasons, manifest.version)


def _known_history(
    store: TelemetryStore, cutoff: np.ndarray, config: FeatureConfig, cache: HistoryCache | bool, now: pd.Timestamp
) -> tuple[RunIndex, AttemptIndex]:
    """The history that runs with these cutoffs can see: through ``cache``, or read afresh when it is False."""
    since, until = cutoff_window(cutoff, config)
    attempts_since = since + pd.Timedelta(config.lookback)
    if cache is False:
        return read_history(store, since.to_pydatetime(), attempts_since.to_pydatetime(), until.to_pydatetime())
    reader = history_cache(store) if cache is True else cache
    return reader.read(since.to_pydatetime(), attempts_since.to_pydatetime(), now=now)


def _features(
    frame: pd.DataFrame, lead: np.ndarray, runs: RunIndex, attempts: AttemptIndex, config: FeatureConfig
) -> pd.DataFrame:
    """The features of ``frame``'s runs, in its order: one build_features call per distinct ``lead``."""
    parts, leads = [], np.unique(lead)
    for value in leads:
        part = frame if len(leads) == 1 else frame.iloc[np.flatnonzero(lead == value)]
        parts.append(build_features(part, runs, attempts, lead=pd.Timedelta(int(value)), config=config))
    if len(parts) == 1:
        return parts[0]
    return pd.concat(parts).reindex(pd.Index(frame["flow_run_id"], name="flow_run_id"))


def _reasons(model: FailureWarningModel, X: pd.DataFrame, warned: np.ndarray, top: int) -> list[list[str]]:
    """The ``top`` reasons of each warned run as sentences; none for a run below the threshold."""
    # only a warned run is explained (explain costs ~5 ms a row)
    return [
        [r.text for r in model.explain(X.iloc[[i]], top=top, raising_only=True)] if warned[i] else []
        for i in range(len(X))
    ]


def _score_table(
    frame: pd.DataFrame,
    ref: np.ndarray,
    now: pd.Timestamp,
    risk: np.ndarray,
    threshold: float,
    warned: np.ndarray,
    reasons: list[list[str]],
    model_version: str,
) -> pd.DataFrame:
    """The :data:`SCORE_COLUMNS` table: one row per run of ``frame``, scheduled at ``ref`` (ns)."""
    deployment = frame["deployment"].to_numpy(dtype=object) if "deployment" in frame.columns else None
    table = {
        "flow_run_id": frame["flow_run_id"].to_numpy(dtype=object),
        "flow_name": frame["flow_name"].to_numpy(dtype=object),
        "deployment": np.full(len(frame), None, dtype=object) if deployment is None else _none_for_missing(deployment),
        "scheduled_start": pd.DatetimeIndex(ref.view("datetime64[ns]")).tz_localize("UTC"),
        "lead_seconds": (ref - now.value) / 1e9,
        "risk": risk,
        "threshold": np.full(len(frame), threshold),
        "warned": warned,
        "reasons": _object_array(reasons),
        "model_version": np.full(len(frame), model_version, dtype=object),
    }
    return pd.DataFrame(table, columns=list(SCORE_COLUMNS))


def _none_for_missing(values: np.ndarray) -> np.ndarray:
    """``values`` with every missing cell (NaN, NaT, pd.NA) as ``None``."""
    missing = pd.isna(values)
    if missing.any():
        values = values.copy()
        values[missing] = None
    return values


def _object_array(items: list[Any]) -> np.ndarray:
    """A 1-d object array of ``items`` (lists stay cells; numpy would make a 2-d array of equal lists)."""
    out = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        out[i] = item
    return out


def record_targets(records: Sequence[FlowRunRecord]) -> pd.DataFrame:
    """Flow run records (e.g. the run starting now) as the targets frame :func:`score_runs` takes.

    A record's ``features`` become ``feature_<name>`` columns.

    Example::

        >>> from datetime import datetime, timezone
        >>> from forewarn.records import FlowRunRecord
        >>> t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
        >>> frame = record_targets([FlowRunRecord("r1", "etl", t0, scheduled_start=t0, features={"rows": 5})])
        >>> frame[["flow_run_id", "feature_rows"]].to_dict("records")
        [{'flow_run_id': 'r1', 'feature_rows': 5}]
    """
    rows = []
    for rec in records:
        row: dict[str, Any] = {
            "flow_run_id": rec.flow_run_id,
            "flow_name": rec.flow_name,
            "deployment": rec.deployment,
            "parameters": dict(rec.parameters or {}),
            "parameters_hash": rec.parameters_hash,
            "flow_version": rec.flow_version,
            "scheduled_start": rec.scheduled_start,
            "start_time": rec.start_time,
            "state": getattr(rec.state, "value", rec.state),
        }
        for name, value in (getattr(rec, "features", None) or {}).items():
            row[FEATURE_PREFIX + str(name)] = value
        rows.append(row)
    frame = pd.DataFrame(rows)
    for name in ("scheduled_start", "start_time"):
        if name in frame.columns:
            frame[name] = pd.to_datetime(frame[name], utc=True).astype("datetime64[ns, UTC]")
    for name in ("flow_run_id", "flow_name", "deployment", "parameters_hash", "flow_version", "state"):
        if name in frame.columns:
            frame[name] = frame[name].astype(object)
    return frame


def prediction_records(table: pd.DataFrame, *, source: str, predicted_at: datetime) -> list[Any]:
    """One :class:`~forewarn.records.PredictionRecord` per row of a :func:`score_runs` table.

    Example::

        >>> store.record_predictions(prediction_records(table, source="forecast", predicted_at=now))  # doctest: +SKIP
    """
    from forewarn.records import PredictionRecord

    records = []
    for row in table.itertuples(index=False):
        scheduled = None if pd.isna(row.scheduled_start) else pd.Timestamp(row.scheduled_start).to_pydatetime()
        records.append(
            PredictionRecord(
                flow_run_id=str(row.flow_run_id),
                flow_name=str(row.flow_name),
                predicted_at=predicted_at,
                risk=float(row.risk),
                threshold=float(row.threshold),
                model_version=str(row.model_version),
                scheduled_start=scheduled,
                deployment=None if row.deployment is None or pd.isna(row.deployment) else str(row.deployment),
                reasons=tuple(row.reasons),
                source=source,
            )
        )
    return records


# and, for one release, the names that moved to registry and cache (imported "as" themselves above)
__all__ = ["SCORE_COLUMNS", "TOP_REASONS", "prediction_records", "record_targets", "score_runs"]
