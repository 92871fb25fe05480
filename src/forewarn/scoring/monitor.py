"""Live monitoring from the store: the installed model's warnings against the outcomes of the runs.

:func:`monitor_store` reads the runs of the window and the predictions made for them, takes the
installed model's manifest as the reference (its version, training window, failure rate, risk
distribution and backtest figures), and hands them to :func:`forewarn.learning.monitoring.monitor_report`,
where every figure is defined. ``forewarn monitor`` and ``flows/monitor.py`` are thin faces over it.

Example::

    >>> from datetime import datetime, timezone
    >>> from forewarn.store import TelemetryStore
    >>> report = monitor_store(TelemetryStore("sqlite://"), model_dir="/nonexistent/models",
    ...                        now=datetime(2026, 3, 1, tzinfo=timezone.utc))
    >>> report.overall["scored"], report.advice.headline
    (0, 'no retraining needed (no model installed: train one with `forewarn train`)')
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from forewarn.learning.model import ModelManifest
from forewarn.learning.monitoring import MonitorReference, MonitorReport, monitor_report
from forewarn.scoring.registry import current_manifest_path
from forewarn.store import TelemetryStore
from forewarn.timeutil import utc, utc_now

PREDICTION_LOOKBACK = timedelta(days=7)
"""How long before a run's window predictions are read for it: a forecast scores runs up to its horizon
ahead (24 h by default), so a week covers any sensible horizon."""


def installed_reference(model_dir: Path | str | None = None) -> MonitorReference | None:
    """The :class:`MonitorReference` of the model installed in ``model_dir`` (default ``FOREWARN_MODEL_DIR``).

    Reads the manifest only (JSON; nothing is unpickled, so no key is needed); ``None`` when no model is
    installed. A manifest that cannot be read raises :class:`~forewarn.errors.ModelError` naming the file.

    Example::

        >>> installed_reference("/nonexistent/models") is None
        True
    """
    from forewarn.errors import ModelError

    if model_dir is None:
        from forewarn.settings import get_settings

        model_dir = get_settings().model_dir
    path = current_manifest_path(model_dir)
    if path is None:
        return None
    try:
        return MonitorReference.from_manifest(ModelManifest.from_json(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"cannot read the model manifest {path}: {exc}; retrain with `forewarn train`") from None


def monitor_store(
    store: TelemetryStore,
    *,
    model_dir: Path | str | None = None,
    now: datetime | None = None,
    since: datetime | None = None,
    drift_days: float = 7.0,
    freq: str = "week",
    tags: Sequence[str] | None = None,
    **options: Any,
) -> MonitorReport:
    """Monitor the runs placed in ``[since, now)`` (default: the last 28 days) against the installed model.

    ``tags`` keeps only runs with any of these Prefect tags, and the predictions made for them: the scope
    ``forewarn forecast --tag`` scores, judged on the same runs (runs stored before schema version 6 have
    no tags, so they are left out). Drift compares the last ``drift_days`` with the model's training window.
    ``options`` go to
    :func:`forewarn.learning.monitoring.monitor_report` (``confidence``) and on to
    :func:`~forewarn.learning.monitoring.retrain_advice` (``psi_limit``, ``min_runs``, ...).
    """
    until = utc(now) if now is not None else utc_now()
    start = utc(since) if since is not None else until - timedelta(days=28)
    if start >= until:
        raise ValueError(f"since ({start.isoformat()}) must be before now ({until.isoformat()})")
    reference = installed_reference(model_dir)
    drift_start = until - timedelta(days=drift_days)
    first = min(start, drift_start)
    runs = store.runs(since=first, until=until)
    pending = store.runs(state=["SCHEDULED", "RUNNING"])  # not started yet (no start_time) or still going
    runs = pd.concat([runs, pending[~pending["flow_run_id"].isin(runs["flow_run_id"])]], ignore_index=True)
    predictions = store.predictions(since=first - PREDICTION_LOOKBACK, until=until)
    if tags:
        runs = with_any_tag(runs, tags)
        predictions = predictions.loc[predictions["flow_run_id"].isin(runs["flow_run_id"])].reset_index(drop=True)
    return monitor_report(
        predictions,
        runs,
        reference,
        since=start,
        until=until,
        drift_window=timedelta(days=drift_days),
        freq=freq,
        **options,
    )


def with_any_tag(runs: pd.DataFrame, tags: Sequence[str]) -> pd.DataFrame:
    """The rows of a :meth:`~forewarn.store.TelemetryStore.runs` frame whose ``tags`` hold any of ``tags``.

    Example::

        >>> runs = pd.DataFrame({"flow_run_id": ["a", "b", "c"], "tags": [["etl", "nightly"], [], ["adhoc"]]})
        >>> with_any_tag(runs, ["nightly", "adhoc"])["flow_run_id"].tolist()
        ['a', 'c']
    """
    if isinstance(tags, str):
        raise TypeError(f"tags must be a sequence of tags, not one string: tags=[{tags!r}]")
    wanted = set(tags)
    keep = [not wanted.isdisjoint(run_tags) for run_tags in runs["tags"].tolist()]
    return runs.loc[keep].reset_index(drop=True)


__all__ = ["PREDICTION_LOOKBACK", "installed_reference", "monitor_store", "with_any_tag"]
