"""Prefect flows that train the failure-warning model and backtest it, on the telemetry store.

    python flows/training.py              # train on FOREWARN_DB_URL, save under FOREWARN_MODEL_DIR
    forewarn train                        # the same from the CLI, without a Prefect run

Deployed through ``prefect.yaml`` (deployments ``train-failure-model`` and ``backtest``) they run on a
schedule from the Prefect UI; each publishes a markdown artifact with the model's and the baselines'
figures, measured on runs the model never trained on.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from forewarn.errors import InsufficientHistoryError
from forewarn.learning.backtest import walk_forward_backtest
from forewarn.learning.model import DEFAULT_FAMILY
from forewarn.learning.readiness import HistoryReadiness
from forewarn.learning.summary import metrics_markdown
from forewarn.learning.training import train_and_save
from forewarn.orchestration.prefect_history import import_prefect_history
from forewarn.scoring import configured_model_key
from forewarn.settings import get_settings
from forewarn.store import TelemetryStore


@task(cache_policy=NO_CACHE)
def load_history(db_url: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """All runs and attempts in the store (attempts None when the history is run-level only).

    Training only reads: a mistyped URL fails as "no forewarn store at PATH" instead of training on a new,
    empty store.
    """
    with TelemetryStore(db_url, create=False) as store:
        return store.history()


@task(cache_policy=NO_CACHE)
def import_prefect_runs(db_url: str | None = None) -> dict[str, int]:
    """Import what ended in Prefect since the last import (``forewarn import-prefect``); the counts."""
    with TelemetryStore(db_url) as store:
        result = import_prefect_history(store)
    get_run_logger().info(
        "imported %d flow run(s) and %d task attempt(s) from %s",
        result.runs_imported,
        result.attempts_imported,
        result.api_url,
    )
    return {"runs": result.runs_imported, "attempts": result.attempts_imported}


@flow(name="forewarn-train")
def train_failure_model(
    family: str = DEFAULT_FAMILY,
    n_folds: int = 5,
    model_dir: str | None = None,
    db_url: str | None = None,
    import_prefect: bool = False,
) -> dict[str, Any]:
    """Backtest, then fit and save the failure-warning model; publish its figures as an artifact.

    Until the store holds enough history (200 labelled runs with 20 failures) the run completes without a
    model and says so ("not enough history yet: N runs, M failures of the 200/20 needed") in its log and in
    the ``forewarn-model`` markdown artifact; it returns ``{"version": None, "status": ...}``.
    With ``import_prefect`` the flow first imports the flow runs that ended in Prefect since the last import.
    """
    logger = get_run_logger()
    if import_prefect:
        import_prefect_runs(db_url)
    runs, attempts = load_history(db_url)
    readiness = HistoryReadiness.from_runs(runs)
    if not readiness.ready:
        return _without_a_model(readiness, readiness.message)
    target = Path(model_dir or get_settings().model_dir)
    key = configured_model_key(create=True, model_dir=target)
    try:
        result = train_and_save(runs, attempts, model_dir=target, key=key, family=family, n_folds=n_folds)
    except InsufficientHistoryError as exc:  # enough runs overall, but too few in what the model can learn from
        return _without_a_model(readiness, str(exc))
    manifest = result.manifest
    logger.info("saved model %s (threshold %.3f) to %s", manifest.version, manifest.threshold, result.path)
    create_markdown_artifact(
        key="forewarn-model",
        markdown=f"# forewarn model {manifest.version}\n\n"
        f"Trained on {manifest.n_train_runs:,} runs ({manifest.n_train_failures:,} failures), "
        f"{manifest.training_window[0]:%Y-%m-%d} to {manifest.training_window[1]:%Y-%m-%d}; "
        f"threshold {manifest.threshold:.3f} ({manifest.threshold_rule}).\n\n"
        "Walk-forward backtest (held-out windows):\n\n" + metrics_markdown(manifest.backtest_metrics or {}),
        description="The failure-warning model now in use, and how it did on runs it never trained on.",
    )
    return {"version": manifest.version, "path": str(result.path), "threshold": manifest.threshold}


def _say_not_ready(readiness: HistoryReadiness, reason: str, *, key: str, title: str, description: str) -> None:
    """Say why a run completes without its result: in the log and in the run's ``key`` markdown artifact."""
    get_run_logger().warning(reason)
    create_markdown_artifact(key=key, markdown=readiness.markdown(title) + f"\n{reason}\n", description=description)


def _without_a_model(readiness: HistoryReadiness, reason: str) -> dict[str, Any]:
    """Complete the training run without a model: say why in the log and in the model artifact."""
    _say_not_ready(
        readiness, reason, key="forewarn-model", title="forewarn model", description="No model yet: not enough history."
    )
    return {"version": None, "status": reason, "runs": readiness.runs, "failures": readiness.failures}


@flow(name="forewarn-backtest")
def backtest_flow(
    n_folds: int = 5,
    family: str = DEFAULT_FAMILY,
    lead_minutes: float = 0.0,
    json_path: str | None = None,
    predictions_out: str | None = None,
    db_url: str | None = None,
) -> dict[str, Any]:
    """Walk-forward backtest of the model against both baselines; optional JSON and predictions CSV.

    Like training, it completes without figures while the store holds too little history ("not enough
    history yet: ..." in its log and in the ``forewarn-backtest`` artifact) instead of failing each run.
    """
    runs, attempts = load_history(db_url)
    readiness = HistoryReadiness.from_runs(runs)
    if not readiness.ready:
        return _without_a_backtest(readiness, readiness.message)
    try:
        result = walk_forward_backtest(
            runs, attempts, n_folds=n_folds, family=family, lead=timedelta(minutes=lead_minutes)
        )
    except InsufficientHistoryError as exc:  # enough runs overall, but a fold had too few to learn from
        return _without_a_backtest(readiness, str(exc))
    summary = result.to_json()
    if json_path:
        Path(json_path).write_text(json.dumps(summary, indent=2))
    if predictions_out:
        result.predictions.to_csv(predictions_out, index=False)
    create_markdown_artifact(
        key="forewarn-backtest",
        markdown="# forewarn backtest\n\n" + metrics_markdown(result.overall),
        description="Walk-forward backtest: the model against the last-run-failed and smoothed-rate baselines.",
    )
    return summary


def _without_a_backtest(readiness: HistoryReadiness, reason: str) -> dict[str, Any]:
    """Complete the backtest run without figures: say why in the log and in the backtest artifact."""
    _say_not_ready(
        readiness,
        reason,
        key="forewarn-backtest",
        title="forewarn backtest",
        description="No backtest yet: not enough history.",
    )
    return {"status": reason, "runs": readiness.runs, "failures": readiness.failures}


if __name__ == "__main__":
    print(train_failure_model())
