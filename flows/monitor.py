"""Prefect flow that checks whether the live warnings came true and whether the model should be retrained.

    python flows/monitor.py           # one report against FOREWARN_DB_URL and FOREWARN_MODEL_DIR
    forewarn monitor                  # the same from the CLI, without a Prefect run

Deployed daily through ``prefect.yaml`` (deployment ``monitor``): each run publishes the report as a
markdown artifact (key ``forewarn-monitor``) and, with ``trigger_training``, starts the training
deployment when it recommends retraining. The figures are defined in docs/monitoring.md.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.deployments import run_deployment

from forewarn.scoring.monitor import monitor_store
from forewarn.store import TelemetryStore
from forewarn.timeutil import utc_now

MONITOR_ARTIFACT_KEY = "forewarn-monitor"
TRAINING_DEPLOYMENT = "forewarn-train/train-failure-model"


@flow(name="forewarn-monitor")
def monitor_flow(
    since_days: float = 28.0,
    drift_days: float = 7.0,
    bucket: str = "week",
    trigger_training: bool = False,
    training_deployment: str = TRAINING_DEPLOYMENT,
    db_url: str | None = None,
    model_dir: str | None = None,
) -> dict[str, Any]:
    """Live WR, precision and false alarms of the last ``since_days``, drift, and the retrain advice.

    With ``trigger_training`` and a "retrain" verdict, a run of ``training_deployment`` is started (not
    waited for) and its id returned as ``training_flow_run_id``.
    """
    logger = get_run_logger()
    now = utc_now()
    with TelemetryStore(db_url, create=False) as store:  # only reads: a mistyped URL is an error, not a new store
        report = monitor_store(
            store, model_dir=model_dir, now=now, since=now - timedelta(days=since_days), drift_days=drift_days,
            freq=bucket,
        )
    headline = report.advice.headline
    create_markdown_artifact(key=MONITOR_ARTIFACT_KEY, markdown=report.to_markdown(), description=headline)
    overall = report.overall
    logger.info(
        "%d scored run(s), %d pending; WR %s, precision %s, %d false alarm(s)",
        overall["scored"], overall["pending"], overall["WR"], overall["precision"], overall["false_alarms"],
    )
    (logger.warning if report.advice.retrain else logger.info)("%s", headline)
    summary: dict[str, Any] = {**report.to_json(), "training_flow_run_id": None}
    if report.advice.retrain and trigger_training:
        training = run_deployment(training_deployment, timeout=0)  # start it; training takes minutes
        logger.info("started %s: flow run %s", training_deployment, training.id)
        summary["training_flow_run_id"] = str(training.id)
    return summary


if __name__ == "__main__":
    print(monitor_flow()["reasons"])
