"""Warnings before runs: the pre-run hook that ``forewarn.flow`` calls as its run starts.

:func:`warn_before_run` scores the starting run against the current model (features from the telemetry
store, see :mod:`forewarn.scoring`), records the score as a ``predictions`` row (``source="hook"``), and,
when the risk is at or above the model's threshold,

* logs one WARNING line on the flow run's logger with the risk, the threshold and the top reasons;
* creates a Prefect markdown artifact on the run (key :data:`ARTIFACT_KEY`);
* emits the Prefect event :data:`EVENT_NAME` for the flow run, for Prefect Automations;
* applies the flow's warning policy: ``"warn"`` (nothing more), ``"harden"`` (this run's forewarn tasks get
  :data:`HARDEN_EXTRA_ATTEMPTS` more attempts, their fallbacks still armed) or ``"pause"`` (Prefect's
  ``pause_flow_run``: the run waits for a person to resume it in the UI).

Scoring is **fail-open**: no model installed, a model that fails its checksum or its signature (or whose
files others could have swapped), a model trained on other features, a store that cannot be read, or any
other error costs one log line saying what happened and what to do, and the run goes on unscored. With
no model installed the hook reads one directory entry and imports nothing heavy (no pandas, no
scikit-learn).

Example::

    import forewarn

    @forewarn.flow(name="nightly-load", warning_policy="harden")
    def nightly_load() -> None:
        ...  # a run scored at risk gets more attempts for its forewarn tasks
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from forewarn.errors import (
    ChecksumMismatchError,
    ConfigurationError,
    FeatureSchemaError,
    ModelError,
    StoreError,
    UntrustedModelError,
)
from forewarn.model_files import model_installed
from forewarn.records import FlowRunRecord
from forewarn.resilience.attempts import DEFAULT_EXTRA_ATTEMPTS, Hardening, hardened
from forewarn.timeutil import utc_now

if TYPE_CHECKING:
    import pandas as pd

    from forewarn.store import TelemetryStore

EVENT_NAME = "forewarn.run.at-risk"
"""The Prefect event emitted for a run scored at or above the threshold (by the hook and the forecast)."""

ARTIFACT_KEY = "forewarn-risk"
"""Key of the markdown artifact a warned run gets."""

POLICIES: tuple[str, ...] = ("warn", "harden", "pause")
"""Warning policies, set per flow with ``forewarn.flow(warning_policy=...)`` or ``FOREWARN_WARNING_POLICY``."""

HARDEN_EXTRA_ATTEMPTS = DEFAULT_EXTRA_ATTEMPTS
"""Attempts added to every forewarn task of a run hardened by the ``"harden"`` policy (the resilience
layer's :data:`~forewarn.resilience.attempts.DEFAULT_EXTRA_ATTEMPTS`)."""

PAUSE_TIMEOUT_SECONDS = 3600
"""How long a run paused by the ``"pause"`` policy waits to be resumed before it fails."""

PAUSE_KEY = "forewarn-risk"
"""The ``key`` of that pause, so a resumed run is not paused again by the same hook."""

logger = logging.getLogger("forewarn.warning")
"""Used outside a flow run; inside one, lines go to Prefect's flow run logger (and so to the UI)."""


def _run_logger() -> logging.Logger | logging.LoggerAdapter[Any]:
    try:
        from prefect import get_run_logger

        return get_run_logger()
    except Exception:  # outside a run context: the module's own logger
        return logger


def _policy(policy: str | None) -> str:
    if policy is None:
        from forewarn.settings import get_settings

        policy = get_settings().warning_policy
    if policy not in POLICIES:
        raise ConfigurationError("warning_policy", policy, "one of 'warn', 'harden', 'pause'")
    return policy


def _store() -> TelemetryStore:
    """The process's store: the telemetry recorder's when telemetry is on (one connection pool)."""
    from forewarn.orchestration.recorder import default_recorder

    recorder = default_recorder()
    if recorder is not None:
        return recorder.store
    from forewarn.settings import get_settings
    from forewarn.store import TelemetryStore

    url = get_settings().db_url
    store = _stores.get(url)
    if store is None:
        store = _stores[url] = TelemetryStore(url)
    return store


_stores: dict[str, TelemetryStore] = {}


def _fail_open(log: Any, case: str, exc: BaseException | None, advice: str) -> None:
    detail = f" ({type(exc).__name__}: {exc})" if exc is not None else ""
    log.warning("forewarn did not score this run: %s%s. The run goes on unscored; %s", case, detail, advice)


def warn_before_run(
    record: FlowRunRecord,
    *,
    policy: str | None = None,
    now: datetime | None = None,
    model_dir: Path | str | None = None,
    store: TelemetryStore | None = None,
    extra_attempts: int = HARDEN_EXTRA_ATTEMPTS,
    pause_timeout: int = PAUSE_TIMEOUT_SECONDS,
) -> contextlib.ExitStack | None:
    """Score the starting run ``record``, record the prediction and warn if it is at risk (fail-open).

    ``policy`` is ``"warn"``, ``"harden"`` or ``"pause"`` (default ``FOREWARN_WARNING_POLICY``);
    ``model_dir`` defaults to ``FOREWARN_MODEL_DIR`` and ``store`` to the process's telemetry store.
    Returns a context that ``forewarn.flow`` exits after the flow body - the hardening of the ``"harden"``
    policy, already entered - or None. Never raises for a scoring problem: each is logged in one line.
    With ``"pause"``, a run that nobody resumes within ``pause_timeout`` seconds fails with Prefect's
    ``FlowPauseTimeout``.

    Example::

        >>> from datetime import datetime, timezone
        >>> from forewarn.records import FlowRunRecord
        >>> rec = FlowRunRecord("r1", "etl", start_time=datetime(2026, 1, 1, tzinfo=timezone.utc))
        >>> warn_before_run(rec, model_dir="/nonexistent/models") is None
        True
    """
    log = _run_logger()
    try:
        chosen = _policy(policy)
        if model_dir is None:
            from forewarn.settings import get_settings

            model_dir = get_settings().model_dir
    except ConfigurationError as exc:
        _fail_open(log, "the warning settings are invalid", exc, "fix the setting named above")
        return None
    if not model_installed(model_dir):
        log.info(
            "forewarn did not score this run: no failure-warning model in %s (FOREWARN_MODEL_DIR). "
            "Run `forewarn train` to train one; until then runs are not scored.",
            model_dir,
        )
        return None
    moment = now or utc_now()
    table = _score(record, log, Path(model_dir), store, moment)
    if table is None or table.empty:
        return None
    row = table.iloc[0]
    if not bool(row["warned"]):
        return None
    try:
        announce_at_risk(row, log=log, source="hook", policy=chosen)
    except Exception as exc:  # announcing is best effort: the run must not fail because of it
        log.warning("forewarn could not publish the warning for this run (%s: %s)", type(exc).__name__, exc)
    return _apply_policy(chosen, log, extra_attempts=extra_attempts, pause_timeout=pause_timeout)


def _score(
    record: FlowRunRecord, log: Any, model_dir: Path, store: TelemetryStore | None, now: datetime
) -> pd.DataFrame | None:
    """Score one run and record the prediction; on any problem, log one line and return None."""
    where = f"the model in {model_dir}"
    try:
        from forewarn.scoring.live import prediction_records, record_targets, score_runs
        from forewarn.scoring.registry import load_current_model

        loaded = load_current_model(model_dir)
        if loaded is None:  # removed since the check above
            return None
        model, manifest = loaded
    except ChecksumMismatchError as exc:
        _fail_open(
            log,
            f"{where} failed its checksum and was not loaded",
            exc,
            "restore the file or retrain with `forewarn train`",
        )
        return None
    except UntrustedModelError as exc:
        _fail_open(log, f"{where} is not trusted and was not loaded", exc, "the error says why and what to do")
        return None
    except FeatureSchemaError as exc:
        _fail_open(
            log,
            f"{where} was trained on other features than this forewarn builds",
            exc,
            "retrain it with `forewarn train`",
        )
        return None
    except ModelError as exc:
        _fail_open(log, f"{where} cannot be loaded", exc, "retrain it with `forewarn train`")
        return None
    except Exception as exc:
        _fail_open(log, f"loading {where} failed unexpectedly", exc, "retrain it with `forewarn train`")
        return None
    try:
        store = store or _store()
        table = score_runs(store, record_targets([record]), model, manifest, now=now)
    except StoreError as exc:
        _fail_open(
            log, "the telemetry store could not be read", exc, "check FOREWARN_DB_URL and that the database is up"
        )
        return None
    except FeatureSchemaError as exc:
        _fail_open(log, f"the features of this run do not fit {where}", exc, "retrain it with `forewarn train`")
        return None
    except Exception as exc:
        _fail_open(log, "scoring failed unexpectedly", exc, "please report this with the error above")
        return None
    try:
        store.record_predictions(prediction_records(table, source="hook", predicted_at=now))
    except Exception as exc:  # the score stands even if it cannot be stored
        log.warning("forewarn scored this run but could not record the prediction (%s: %s)", type(exc).__name__, exc)
    return table


def describe(row: Any) -> str:
    """One line for a scored run: risk, threshold and reasons in words.

    Example::

        >>> describe({"risk": 0.82, "threshold": 0.4, "reasons": ["the flow's last run failed: raises risk by 0.3"]})
        "failure risk 0.82 (warning threshold 0.40); top reasons: the flow's last run failed: raises risk by 0.3"
    """
    reasons = list(row["reasons"]) or ["none given"]
    return f"failure risk {row['risk']:.2f} (warning threshold {row['threshold']:.2f}); top reasons: " + "; ".join(
        reasons
    )


def event_payload(row: Any, *, source: str, policy: str | None = None) -> dict[str, Any]:
    """The payload of the :data:`EVENT_NAME` event for one scored run (JSON-ready).

    Example::

        >>> sorted(event_payload({"flow_run_id": "r", "flow_name": "etl", "deployment": None,
        ...     "scheduled_start": None, "lead_seconds": None, "risk": 0.5, "threshold": 0.4,
        ...     "reasons": [], "model_version": "m"}, source="hook"))[:4]
        ['deployment', 'flow_name', 'flow_run_id', 'lead_seconds']
    """
    scheduled = row["scheduled_start"]
    lead = row["lead_seconds"]
    return {
        "flow_run_id": str(row["flow_run_id"]),
        "flow_name": str(row["flow_name"]),
        "deployment": row["deployment"] if isinstance(row["deployment"], str) else None,
        "scheduled_start": scheduled.isoformat()
        if hasattr(scheduled, "isoformat") and scheduled == scheduled
        else None,
        "lead_seconds": float(lead) if lead is not None and lead == lead else None,
        "risk": round(float(row["risk"]), 6),
        "threshold": round(float(row["threshold"]), 6),
        "reasons": [str(r) for r in row["reasons"]],
        "model_version": str(row["model_version"]),
        "source": source,
        **({"policy": policy} if policy is not None else {}),
    }


def emit_at_risk_event(row: Any, *, source: str, policy: str | None = None) -> Any:
    """Emit :data:`EVENT_NAME` for one scored run; the resource is its Prefect flow run.

    Example::

        >>> emit_at_risk_event(row, source="forecast")  # doctest: +SKIP
    """
    from prefect.events import emit_event

    return emit_event(
        event=EVENT_NAME,
        resource={
            "prefect.resource.id": f"prefect.flow-run.{row['flow_run_id']}",
            "prefect.resource.name": str(row["flow_name"]),
        },
        related=[
            {"prefect.resource.id": f"forewarn.model.{row['model_version']}", "prefect.resource.role": "model"},
        ],
        payload=event_payload(row, source=source, policy=policy),
    )


def risk_markdown(row: Any, *, policy: str | None = None) -> str:
    """The markdown artifact of a warned run.

    Example::

        >>> print(risk_markdown({"risk": 0.8, "threshold": 0.4, "reasons": ["a"], "model_version": "m",
        ...     "flow_name": "etl"}).splitlines()[0])
        # forewarn: failure risk 0.80 (threshold 0.40)
    """
    reasons = "\n".join(f"{i}. {r}" for i, r in enumerate(row["reasons"], start=1)) or "(none given)"
    action = {
        "warn": "Nothing else was changed.",
        "harden": f"This run's forewarn tasks got {HARDEN_EXTRA_ATTEMPTS} extra attempts (fallbacks still armed).",
        "pause": "This run was paused until someone resumes it.",
    }.get(policy or "", "")
    return (
        f"# forewarn: failure risk {row['risk']:.2f} (threshold {row['threshold']:.2f})\n\n"
        f"Flow `{row['flow_name']}` was scored **at risk** before it started, from the history known at its "
        f"scheduled start (model `{row['model_version']}`).\n\n"
        f"Top reasons (a feature's value against its usual one, and how much it moves the risk):\n\n{reasons}\n\n"
        f"{action}\n"
    )


def announce_at_risk(row: Any, *, log: Any, source: str, policy: str | None) -> None:
    """The warning of a run at risk: a WARNING line, a markdown artifact and the Prefect event."""
    log.warning("forewarn: this run is at risk of failing: %s", describe(row))
    from prefect.artifacts import create_markdown_artifact

    cast(Any, create_markdown_artifact)(
        markdown=risk_markdown(row, policy=policy),
        key=ARTIFACT_KEY,
        description="forewarn scored this run at risk of failing before it started",
        _sync=True,
    )
    emit_at_risk_event(row, source=source, policy=policy)


def _apply_policy(policy: str, log: Any, *, extra_attempts: int, pause_timeout: int) -> contextlib.ExitStack | None:
    if policy == "harden":
        stack = contextlib.ExitStack()
        stack.enter_context(hardened(Hardening(extra_attempts=extra_attempts)))
        log.warning(
            "forewarn: hardening is on for this run: every forewarn task gets %d extra attempt(s); "
            "fallbacks stay armed",
            extra_attempts,
        )
        return stack
    if policy == "pause":
        from prefect.flow_runs import pause_flow_run

        log.warning(
            "forewarn: pausing this run until someone resumes it in the Prefect UI (it fails if not resumed "
            "within %d s)",
            pause_timeout,
        )
        try:
            cast(Any, pause_flow_run)(timeout=pause_timeout, key=PAUSE_KEY, _sync=True)
        except RuntimeError as exc:  # this run cannot be paused (no API, or Prefect refused): go on
            log.warning("forewarn could not pause this run (%s); it goes on", exc)
    return None


__all__ = [
    "ARTIFACT_KEY",
    "EVENT_NAME",
    "HARDEN_EXTRA_ATTEMPTS",
    "PAUSE_KEY",
    "PAUSE_TIMEOUT_SECONDS",
    "POLICIES",
    "announce_at_risk",
    "describe",
    "emit_at_risk_event",
    "event_payload",
    "model_installed",
    "risk_markdown",
    "warn_before_run",
]
