"""Records as table rows: the column values one :class:`~forewarn.records.FlowRunRecord`,
:class:`~forewarn.records.AttemptRecord` or :class:`~forewarn.records.PredictionRecord` is written as.

Every value is checked before anything is written (aware times, known states and outcomes, a known
source) and every string is cut to its column, so a write fails on bad input with a message naming the
field, never half-way through in the database.
"""

from __future__ import annotations

import json
from typing import Any

from forewarn.errors import InvalidRecordError
from forewarn.records import PREDICTION_SOURCES, AttemptRecord, FlowRunRecord, PredictionRecord
from forewarn.store._codec import (
    aware,
    aware_or_none,
    cut,
    encode_features,
    encode_parameters,
    encode_tags,
    forewarn_version,
    outcome_value,
    state_value,
)
from forewarn.store.schema import flow_runs, predictions, string_lengths, task_attempts

SOURCES = ("forewarn", "import", "prefect")
"""Where a ``flow_runs`` row came from: recorded live by forewarn, imported from a CSV history, or imported
from the Prefect API's flow runs (``forewarn import-prefect``)."""

RUN_LENGTHS = string_lengths(flow_runs)
"""Length of each string column of ``flow_runs``."""

ATTEMPT_LENGTHS = string_lengths(task_attempts)
"""Length of each string column of ``task_attempts``."""

_PREDICTION_LENGTHS = string_lengths(predictions)


def check_source(source: str) -> None:
    """An :class:`InvalidRecordError` unless ``source`` is one of :data:`SOURCES`."""
    if source not in SOURCES:
        raise InvalidRecordError(f"source={source!r} is invalid: expected one of {', '.join(SOURCES)}")


def run_row(rec: FlowRunRecord, source: str) -> dict[str, Any]:
    """The ``flow_runs`` values of ``rec``: canonical parameters JSON and hash, features and tags JSON, this version."""
    check_source(source)
    parameters, digest = encode_parameters(rec.parameters)
    n = RUN_LENGTHS
    return {
        "flow_run_id": cut(rec.flow_run_id, n["flow_run_id"]),
        "flow_name": cut(rec.flow_name, n["flow_name"]),
        "deployment": cut(rec.deployment, n["deployment"]),
        "parameters": parameters,
        "parameters_hash": cut(rec.parameters_hash or digest, n["parameters_hash"]),
        "flow_version": cut(rec.flow_version, n["flow_version"]),
        "scheduled_start": aware_or_none(rec.scheduled_start, "FlowRunRecord.scheduled_start"),
        "start_time": aware_or_none(rec.start_time, "FlowRunRecord.start_time"),
        "end_time": aware_or_none(rec.end_time, "FlowRunRecord.end_time"),
        "state": state_value(rec.state),
        "host": cut(rec.host, n["host"]),
        "forewarn_version": cut(rec.forewarn_version or forewarn_version(), n["forewarn_version"]),
        "source": source,
        "features": encode_features(rec.features),
        "tags": encode_tags(rec.tags, field="FlowRunRecord.tags"),
    }


def attempt_row(rec: AttemptRecord) -> dict[str, Any]:
    """The ``task_attempts`` values of ``rec`` (no ``id``), with ``duration_seconds`` computed.

    ``retryable`` and ``used_fallback`` come out as Python ``bool`` (or ``None``), ``duration_seconds`` as
    ``float``: what SQLAlchemy's ``Boolean`` and ``Float`` would bind, so the multi-row writes of
    :class:`~forewarn.store._bulk.AttemptUpserts` can pass them to the driver as they are.
    """
    start = aware(rec.start_time, "AttemptRecord.start_time")
    end = aware(rec.end_time, "AttemptRecord.end_time")
    retryable = rec.retryable
    if retryable is not None:
        if retryable not in (True, False):
            raise InvalidRecordError(f"AttemptRecord.retryable must be True, False or None, not {retryable!r:.80}")
        retryable = bool(retryable)
    n = ATTEMPT_LENGTHS
    return {
        "flow_run_id": cut(rec.flow_run_id, n["flow_run_id"]),
        "task_run_id": cut(rec.task_run_id, n["task_run_id"]),
        "task_name": cut(rec.task_name, n["task_name"]),
        "attempt": rec.attempt,
        "start_time": start,
        "end_time": end,
        "duration_seconds": (end - start).total_seconds(),
        "outcome": outcome_value(rec.outcome),
        "exception_type": cut(rec.exception_type, n["exception_type"]),
        "exception_message": cut(rec.exception_message, n["exception_message"]),
        "retryable": retryable,
        "used_fallback": bool(rec.used_fallback),
        "host": cut(rec.host, n["host"]),
        "wait_seconds": rec.wait_seconds,
        "replica": rec.replica,
        "provider": cut(rec.provider, n["provider"]),
        "execution_id": _execution_id(rec.execution_id),
    }


def _execution_id(value: object) -> str:
    """An attempt's ``execution_id`` as stored: text cut to its column, ``None`` read as ``''`` (no execution known)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidRecordError(f"AttemptRecord.execution_id must be text, not {value!r:.80}")
    return cut(value, ATTEMPT_LENGTHS["execution_id"]) or ""


def prediction_row(rec: PredictionRecord) -> dict[str, Any]:
    """The ``predictions`` values of ``rec`` (no ``id``): ``reasons`` as a JSON list, ``warned`` from the record."""
    if rec.source not in PREDICTION_SOURCES:
        raise InvalidRecordError(
            f"PredictionRecord.source={rec.source!r} is invalid: expected one of {', '.join(PREDICTION_SOURCES)}"
        )
    if isinstance(rec.reasons, str):
        raise InvalidRecordError(
            f"PredictionRecord.reasons must be a sequence of strings, not one string: reasons=({rec.reasons!r},)"
        )
    n = _PREDICTION_LENGTHS
    aware(rec.predicted_at, "PredictionRecord.predicted_at")
    aware_or_none(rec.scheduled_start, "PredictionRecord.scheduled_start")
    return {
        "flow_run_id": cut(rec.flow_run_id, n["flow_run_id"]),
        "flow_name": cut(rec.flow_name, n["flow_name"]),
        "deployment": cut(rec.deployment, n["deployment"]),
        "scheduled_start": rec.scheduled_start,
        "predicted_at": rec.predicted_at,
        "lead_seconds": rec.lead_seconds,
        "risk": float(rec.risk),
        "threshold": float(rec.threshold),
        "warned": bool(rec.warned),
        "model_version": cut(rec.model_version, n["model_version"]),
        "reasons": json.dumps([str(r) for r in rec.reasons], ensure_ascii=False),
        "source": rec.source,
    }
