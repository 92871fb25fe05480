"""Prefect flow that scores the scheduled runs of the next hours and warns about the ones at risk.

    python flows/forecast.py          # one forecast against the Prefect API in PREFECT_API_URL
    forewarn forecast --notify        # the same from the CLI (without --notify: a preview)

Deployed hourly through ``prefect.yaml`` (deployment ``forecast``): each run records one prediction per
scheduled run (with its lead time), emits ``forewarn.run.at-risk`` for each run at risk that was not
warned about before or whose risk rose since (for Prefect Automations), and publishes a table artifact of
the runs at risk.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from forewarn.orchestration.forecast import FORECAST_ARTIFACT_KEY, cold_start, forecast_upcoming_runs, publish_forecast
from forewarn.store import TelemetryStore


@flow(name="forewarn-forecast")
def forecast_flow(
    horizon_hours: float = 24.0,
    db_url: str | None = None,
    deployments: list[str] | None = None,
    tags: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Score the scheduled runs starting within ``horizon_hours``; warn about those at risk, once per run.

    ``deployments`` (names, or ``flow-name/deployment-name``) and ``tags`` choose the runs; by default, the
    runs of every flow the store has history for. A run already warned about is warned about again only
    when its risk rose by ``FOREWARN_FORECAST_RISE`` or crossed into a higher band.

    Until a model is installed the run completes with "not enough history yet: ..." (or "no model yet")
    in its log and in a markdown artifact, and returns an empty list.
    """
    logger = get_run_logger()
    store = TelemetryStore(db_url)
    waiting = cold_start(store)
    if waiting is not None:
        logger.warning(waiting.message)
        create_markdown_artifact(
            key=FORECAST_ARTIFACT_KEY,
            markdown=waiting.markdown("forewarn forecast"),
            description="No forecast yet: no model is installed.",
        )
        return []
    table = forecast_upcoming_runs(store, horizon=timedelta(hours=horizon_hours), deployments=deployments, tags=tags)
    publish_forecast(table)
    at_risk = table.loc[table["warned"].astype(bool)]
    logger.info(
        "scored %d scheduled run(s) in the next %g h; %d at risk, %d warned about now",
        len(table),
        horizon_hours,
        len(at_risk),
        int(table["notified"].astype(bool).sum()),
    )
    for row in at_risk.itertuples():
        logger.warning(
            "%s at %s: risk %.3f (threshold %.3f)", row.flow_name, row.scheduled_start, row.risk, row.threshold
        )
    return [
        {
            "flow_run_id": r.flow_run_id,
            "flow_name": r.flow_name,
            "risk": float(r.risk),
            "warned": bool(r.warned),
            "notified": bool(r.notified),
        }
        for r in table.itertuples()
    ]


if __name__ == "__main__":
    print(forecast_flow())
