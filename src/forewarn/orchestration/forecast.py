"""The forecast: score the flow runs Prefect has scheduled for the next hours, with what is known now.

:func:`forecast_upcoming_runs` reads the ``SCHEDULED`` flow runs whose expected start lies in
``[now, now + horizon]`` from the Prefect API, describes each as a run of its flow and deployment with its
parameters, and scores it with :func:`forewarn.scoring.live.score_runs` at ``now``: every run's features use
only the history that ended before ``now`` (its cutoff), so a run eighteen hours ahead is described with
``lead = 18 h``. Each score is recorded as a ``predictions`` row (``source="forecast"``, ``lead_seconds =
scheduled_start - now``), and each run at or above the threshold gets the same Prefect event as the
pre-run hook (:data:`forewarn.orchestration.warning.EVENT_NAME`). :func:`publish_forecast` writes the at-risk runs as a
Prefect table artifact.

A scheduled run carries no code version yet; it is described with its flow's latest version in the store
(a deploy between now and its start is not known now). Its parameters are the ones Prefect will pass it.

Example::

    from forewarn.orchestration.forecast import forecast_upcoming_runs, publish_forecast
    from forewarn.store import TelemetryStore

    table = forecast_upcoming_runs(TelemetryStore())      # the next 24 hours
    publish_forecast(table)                               # a table artifact of the runs at risk
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

import pandas as pd

from forewarn.errors import ConfigurationError, ModelError
from forewarn.learning.readiness import HistoryReadiness
from forewarn.records import OPERATIONAL_FLOWS, parameters_hash
from forewarn.scoring import SCORE_COLUMNS, load_current_model, prediction_records, score_runs
from forewarn.scoring.notify import forecast_notifications
from forewarn.timeutil import utc

if TYPE_CHECKING:
    from forewarn.store import TelemetryStore

FORECAST_COLUMNS: tuple[str, ...] = (*SCORE_COLUMNS, "notified")
"""Columns of :func:`forecast_upcoming_runs`: the scores and whether each one notifies."""

FORECAST_ARTIFACT_KEY = "forewarn-forecast"
"""Key of the table artifact :func:`publish_forecast` writes."""

PAGE = 200
"""Flow runs read per API request (the Prefect server's default page limit)."""


def _read_scheduled(client: Any, now: datetime, horizon: timedelta, tags: Sequence[str] | None = None) -> list[Any]:
    """Every SCHEDULED flow run expected to start in ``[now, now + horizon]`` (with any of ``tags``), earliest first."""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterExpectedStartTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    flow_run_filter = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])),
        expected_start_time=FlowRunFilterExpectedStartTime(after_=cast(Any, now), before_=cast(Any, now + horizon)),
        tags=FlowRunFilterTags(any_=list(tags)) if tags else None,
    )
    return read_pages(
        lambda offset: client.read_flow_runs(
            flow_run_filter=flow_run_filter, sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=PAGE, offset=offset
        )
    )


def read_pages(read_page: Callable[[int], Iterable[Any]], page_size: int = PAGE) -> list[Any]:
    """Every item of a paged Prefect API read: ``read_page(offset)`` returns up to ``page_size`` items.

    Example::

        >>> read_pages(lambda offset: range(offset, min(offset + 2, 5)), page_size=2)
        [0, 1, 2, 3, 4]
    """
    items: list[Any] = []
    while True:
        page = list(read_page(len(items)))
        items.extend(page)
        if len(page) < page_size:
            return items


def flow_and_deployment_names(client: Any, runs: Iterable[Any]) -> tuple[dict[UUID, str], dict[UUID, str]]:
    """Flow names by flow id and deployment names by deployment id, for Prefect flow ``runs``.

    Example::

        >>> flow_and_deployment_names(None, [])
        ({}, {})
    """
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, FlowFilter, FlowFilterId

    runs = list(runs)
    flow_ids = sorted({r.flow_id for r in runs}, key=str)
    deployment_ids = sorted({r.deployment_id for r in runs if r.deployment_id is not None}, key=str)
    flows: dict[UUID, str] = {}
    deployments: dict[UUID, str] = {}
    for i in range(0, len(flow_ids), PAGE):
        chunk = flow_ids[i : i + PAGE]
        for flow in client.read_flows(flow_filter=FlowFilter(id=FlowFilterId(any_=chunk)), limit=PAGE):
            flows[flow.id] = flow.name
    for i in range(0, len(deployment_ids), PAGE):
        chunk = deployment_ids[i : i + PAGE]
        found = client.read_deployments(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=chunk)), limit=PAGE
        )
        for deployment in found:
            deployments[deployment.id] = deployment.name
    return flows, deployments


def upcoming_runs_frame(runs: Iterable[Any], flows: dict[UUID, str], deployments: dict[UUID, str]) -> pd.DataFrame:
    """Prefect flow runs as the targets frame :func:`~forewarn.scoring.live.score_runs` takes.

    ``flow_name`` comes from the run's flow, ``deployment`` is the deployment's name (as ``forewarn.flow``
    records it), ``parameters``/``parameters_hash`` as the run will receive them, ``scheduled_start`` the
    expected start time.

    Example::

        >>> upcoming_runs_frame([], {}, {}).columns.tolist()[:3]
        ['flow_run_id', 'flow_name', 'deployment']
    """
    rows = []
    for run in runs:
        parameters = json.loads(json.dumps(dict(run.parameters or {}), default=str))
        rows.append(
            {
                "flow_run_id": str(run.id),
                "flow_name": flows.get(run.flow_id, str(run.flow_id)),
                "deployment": deployments.get(run.deployment_id) if run.deployment_id is not None else None,
                "parameters": parameters,
                "parameters_hash": parameters_hash(parameters),
                "flow_version": run.flow_version,
                "scheduled_start": run.expected_start_time,
                "state": "SCHEDULED",
            }
        )
    columns = [
        "flow_run_id",
        "flow_name",
        "deployment",
        "parameters",
        "parameters_hash",
        "flow_version",
        "scheduled_start",
        "state",
    ]
    frame = pd.DataFrame(rows, columns=columns)
    frame["scheduled_start"] = pd.to_datetime(frame["scheduled_start"], utc=True).astype("datetime64[ns, UTC]")
    for name in columns:
        if name != "scheduled_start":
            frame[name] = frame[name].astype(object)
    return frame


def in_scope(
    targets: pd.DataFrame,
    *,
    deployments: Sequence[str] | None = None,
    known_flows: Iterable[str] | None = None,
) -> pd.DataFrame:
    """The scheduled runs the forecast scores: never forewarn's own operational flows; with ``deployments``,
    only runs of those deployments (a name, or ``flow-name/deployment-name``); otherwise, with
    ``known_flows``, only runs of flows the store has history for.

    Example::

        >>> targets = pd.DataFrame({"flow_name": ["etl", "forewarn-forecast", "new", "etl"],
        ...                         "deployment": ["nightly", "forecast", "daily", "hourly"]})
        >>> in_scope(targets, known_flows={"etl", "forewarn-forecast"})["deployment"].tolist()
        ['nightly', 'hourly']
        >>> in_scope(targets, deployments=["etl/hourly", "daily"])["deployment"].tolist()
        ['daily', 'hourly']
    """
    keep = ~targets["flow_name"].isin(OPERATIONAL_FLOWS)
    if deployments:
        wanted = set(deployments)
        full = targets["flow_name"].astype(str) + "/" + targets["deployment"].astype(str)
        keep &= targets["deployment"].isin(wanted) | full.isin(wanted)
    elif known_flows is not None:
        keep &= targets["flow_name"].isin(set(known_flows))
    return targets.loc[keep].reset_index(drop=True)


def _with_known_versions(store: TelemetryStore, targets: pd.DataFrame, now: datetime) -> pd.DataFrame:
    """Runs without a code version get their flow's latest version among runs that ended before ``now``."""
    missing = targets["flow_version"].isna()
    if not missing.any():
        return targets
    targets = targets.copy()
    for flow in targets.loc[missing, "flow_name"].unique():
        last = store.last_runs(str(flow), now, 1)
        if not last.empty:
            rows = missing & (targets["flow_name"] == flow)
            targets.loc[rows, "flow_version"] = last["flow_version"].iloc[-1]
    return targets


@dataclass(frozen=True, slots=True)
class ColdStart:
    """No model is installed yet: where the history stands (see :func:`cold_start`)."""

    readiness: HistoryReadiness
    model_dir: Path

    @property
    def message(self) -> str:
        """One sentence for logs and the command line.

        Example::

            >>> ColdStart(HistoryReadiness(40, 3), Path("/models")).message
            'not enough history yet: 40 runs, 3 failures of the 200/20 needed; nothing to forecast without a model'
        """
        if not self.readiness.ready:
            return f"{self.readiness.message}; nothing to forecast without a model"
        return (
            f"no model in {self.model_dir} yet, though the history is enough ({self.readiness.runs:,} runs, "
            f"{self.readiness.failures:,} failures): run `forewarn train` or the training deployment"
        )

    def markdown(self, title: str) -> str:
        """A markdown artifact body for a run that completed without a model."""
        if not self.readiness.ready:
            return self.readiness.markdown(title)
        return f"# {title}: no model yet\n\n{self.message}.\n"


def cold_start(store: TelemetryStore, model_dir: Path | str | None = None) -> ColdStart | None:
    """``None`` when a model is installed in ``model_dir`` (default ``FOREWARN_MODEL_DIR``); else a
    :class:`ColdStart` saying whether the store's history is enough to train one yet.

    A model that is installed but broken or untrusted raises, as :func:`~forewarn.scoring.load_current_model`
    does: that is no cold start.

    Example::

        >>> from forewarn.store import TelemetryStore
        >>> cold_start(TelemetryStore("sqlite://"), "/nonexistent/models").message
        'not enough history yet: 0 runs, 0 failures of the 200/20 needed; nothing to forecast without a model'
    """
    if model_dir is None:
        from forewarn.settings import get_settings

        model_dir = get_settings().model_dir
    if load_current_model(model_dir) is not None:
        return None
    return ColdStart(HistoryReadiness.from_state_counts(store.state_counts()), Path(model_dir))


def forecast_upcoming_runs(
    store: TelemetryStore,
    *,
    horizon: timedelta = timedelta(hours=24),
    now: datetime | None = None,
    client: Any = None,
    model_dir: Path | str | None = None,
    record: bool = True,
    emit_events: bool = True,
    deployments: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    rise: float | None = None,
) -> pd.DataFrame:
    """Score the scheduled flow runs expected to start within ``horizon`` of ``now``, as known now.

    **Scope** (:func:`in_scope`): runs with any of ``tags`` (Prefect flow run tags, which runs take from their
    deployment) and, with ``deployments``, of those deployments; without ``deployments``, only runs of flows
    the store has history for. forewarn's own operational flows are never scored.

    **Warn once** (:mod:`forewarn.scoring.notify`): the returned ``notified`` column says which scores notify:
    at risk, and the run was not warned about by an earlier recorded forecast, or its risk rose by ``rise``
    (default ``FOREWARN_FORECAST_RISE``) or crossed into a higher band since. Only those get the event.

    Reads the runs from the Prefect API (``client``: a sync Prefect client, default
    ``get_client(sync_client=True)``), scores them with the model in ``model_dir`` (default
    ``FOREWARN_MODEL_DIR``) and the store's history up to ``now``, records one ``predictions`` row per run
    (``record``) and emits :data:`forewarn.orchestration.warning.EVENT_NAME` for each run at risk (``emit_events``).
    Returns the :data:`~forewarn.scoring.live.SCORE_COLUMNS` table, earliest start first; ``lead_seconds`` is
    ``scheduled_start - now``.

    Raises :class:`~forewarn.errors.ModelError` when no usable model is installed (the forecast is an
    explicit job, so unlike the pre-run hook it does not fail open), and
    :class:`~forewarn.errors.StoreError` when the store cannot be read.

    Example::

        >>> table = forecast_upcoming_runs(store, horizon=timedelta(hours=12))  # doctest: +SKIP
        >>> table.loc[table["warned"], ["flow_name", "scheduled_start", "risk", "reasons"]]  # doctest: +SKIP
    """
    if not isinstance(horizon, timedelta) or horizon <= timedelta(0):
        raise ConfigurationError("horizon", horizon, "a positive timedelta, e.g. timedelta(hours=24)")
    moment = utc(now)
    if model_dir is None:
        from forewarn.settings import get_settings

        model_dir = get_settings().model_dir
    loaded = load_current_model(model_dir)
    if loaded is None:
        raise ModelError(f"no model in {model_dir}: run `forewarn train` first", path=model_dir)
    model, manifest = loaded

    if rise is None:
        from forewarn.settings import get_settings

        rise = get_settings().forecast_rise
    if client is None:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as own_client:
            upcoming = _upcoming(own_client, moment, horizon, tags)
    else:
        upcoming = _upcoming(client, moment, horizon, tags)
    known = None if deployments else store.flow_names()
    targets = in_scope(upcoming, deployments=deployments, known_flows=known)
    targets = _with_known_versions(store, targets, moment)
    if targets.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in FORECAST_COLUMNS})
    table = score_runs(store, targets, model, manifest, now=moment)
    table["notified"] = forecast_notifications(store, table, rise)  # before this forecast's rows are recorded
    if record:
        store.record_predictions(prediction_records(table, source="forecast", predicted_at=moment))
    if emit_events:
        from forewarn.orchestration.warning import emit_at_risk_event

        for _, row in table.loc[table["notified"]].iterrows():
            emit_at_risk_event(row, source="forecast")
    return table


def _upcoming(client: Any, now: datetime, horizon: timedelta, tags: Sequence[str] | None) -> pd.DataFrame:
    runs = _read_scheduled(client, now, horizon, tags)
    flows, deployments = flow_and_deployment_names(client, runs)
    return upcoming_runs_frame(runs, flows, deployments)


def forecast_rows(table: pd.DataFrame, *, warned_only: bool = True) -> list[dict[str, Any]]:
    """The forecast as table-artifact rows (JSON-ready): one dict per run, earliest start first.

    Example::

        >>> forecast_rows(pd.DataFrame(columns=list(SCORE_COLUMNS)))
        []
    """
    rows = table.loc[table["warned"].astype(bool)] if warned_only else table
    out = []
    for _, row in rows.sort_values("scheduled_start").iterrows():
        out.append(
            {
                "flow": str(row["flow_name"]),
                "deployment": row["deployment"] if isinstance(row["deployment"], str) else "",
                "scheduled start (UTC)": pd.Timestamp(row["scheduled_start"]).strftime("%Y-%m-%d %H:%M"),
                "in (hours)": round(float(row["lead_seconds"]) / 3600, 1),
                "risk": round(float(row["risk"]), 3),
                "threshold": round(float(row["threshold"]), 3),
                "reasons": "; ".join(str(r) for r in row["reasons"]),
                "flow run": str(row["flow_run_id"]),
            }
        )
    return out


def publish_forecast(table: pd.DataFrame, *, key: str = FORECAST_ARTIFACT_KEY) -> UUID:
    """Write the at-risk runs of a forecast as a Prefect table artifact (on the current run, if any).

    Returns the artifact's id. With no run at risk the table is empty and the description says so.

    Example::

        >>> publish_forecast(forecast_upcoming_runs(store))  # doctest: +SKIP
    """
    from prefect.artifacts import create_table_artifact

    rows = forecast_rows(table)
    scored = len(table)
    description = f"forewarn forecast: {len(rows)} of {scored} scheduled run(s) at risk of failing" + (
        f" (model {table['model_version'].iloc[0]})" if scored else ""
    )
    return cast(UUID, cast(Any, create_table_artifact)(table=rows, key=key, description=description, _sync=True))


__all__ = [
    "FORECAST_ARTIFACT_KEY",
    "FORECAST_COLUMNS",
    "ColdStart",
    "cold_start",
    "flow_and_deployment_names",
    "forecast_rows",
    "forecast_upcoming_runs",
    "in_scope",
    "publish_forecast",
    "read_pages",
    "upcoming_runs_frame",
]
