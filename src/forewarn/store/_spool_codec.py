"""Spooled telemetry entries as JSON objects and back: what one line of a spool file holds.

An entry is one of three writes the recorder makes: ``attempt`` (an :class:`AttemptRecord`), ``run_start``
(a :class:`FlowRunRecord`) or ``run_end`` (a flow run id, final state and end time). Times are ISO 8601
with their offset; enums are their values; flow parameters are written as the store will keep them
(JSON values, anything else as its ``str()``), so decoding gives back the row the store would have written.
A run's ``tags`` are written only when it has some: an entry from before schema version 6 has none, and
decodes as a run without tags.

A spool file is input an attacker may have written: :func:`decode_entry` checks every field's type and
raises :class:`~forewarn.errors.InvalidRecordError` naming the field, never a raw ``KeyError``.

Example::

    >>> from datetime import datetime, timezone
    >>> from forewarn.records import AttemptOutcome, AttemptRecord
    >>> t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> rec = AttemptRecord("f1", "t1", "load", 1, t0, t0, AttemptOutcome.SUCCESS)
    >>> decode_entry(encode_entry("attempt", rec)) == ("attempt", rec)
    True
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

from forewarn.errors import InvalidRecordError
from forewarn.records import AttemptOutcome, AttemptRecord, FlowRunRecord, RunState

KINDS = ("attempt", "run_start", "run_end")
"""The kinds of spooled entry, in the order of the recorder's methods."""


@dataclass(frozen=True)
class RunEnd:
    """The final state of a flow run, as ``TelemetryStore.record_flow_run_end`` takes it."""

    flow_run_id: str
    state: RunState
    end_time: datetime


_TIMES = {"start_time", "end_time", "scheduled_start"}
_RECORD_TYPES: dict[str, type] = {"attempt": AttemptRecord, "run_start": FlowRunRecord, "run_end": RunEnd}
_ENUMS: dict[str, type] = {"outcome": AttemptOutcome, "state": RunState}


def encode_entry(kind: str, record: AttemptRecord | FlowRunRecord | RunEnd) -> dict[str, Any]:
    """``record`` as a JSON-ready object with its ``kind``."""
    if type(record) is AttemptRecord:
        return {"kind": kind, "record": _attempt_values(record)}
    values = asdict(record)
    for name in _TIMES.intersection(values):
        if values[name] is not None:
            values[name] = values[name].isoformat()
    for name in _ENUMS.keys() & values.keys():
        values[name] = getattr(values[name], "value", values[name])
    if kind == "run_start":
        # the store keeps parameters as JSON with str() for the rest: spool exactly what it will keep
        values["parameters"] = json.loads(json.dumps(values["parameters"], default=str))
        values["features"] = json.loads(json.dumps(values["features"], default=str))
        # written only when the run has tags, so a run without them stays an entry a forewarn from
        # before schema version 6, sharing the spool on the same host, still reads
        if values["tags"]:
            values["tags"] = list(values["tags"])
        else:
            del values["tags"]
    return {"kind": kind, "record": values}


def _attempt_values(r: AttemptRecord) -> dict[str, Any]:
    """An attempt's fields as :func:`dataclasses.asdict` and the loop above would give them, without
    ``asdict``'s recursion and deep copies: every field is a scalar, and this runs on the task's thread
    once per attempt. ``wait_seconds`` is written only when set (a task with a concurrency limit), so the
    entries of every other task stay what a forewarn from before schema version 3 can still read from a
    spool it shares on the same host."""
    values = {
        "flow_run_id": r.flow_run_id,
        "task_run_id": r.task_run_id,
        "task_name": r.task_name,
        "attempt": r.attempt,
        "start_time": None if r.start_time is None else r.start_time.isoformat(),
        "end_time": None if r.end_time is None else r.end_time.isoformat(),
        "outcome": getattr(r.outcome, "value", r.outcome),
        "exception_type": r.exception_type,
        "exception_message": r.exception_message,
        "retryable": r.retryable,
        "used_fallback": r.used_fallback,
        "host": r.host,
        "replica": r.replica,
        "provider": r.provider,
    }
    if r.wait_seconds is not None:
        values["wait_seconds"] = r.wait_seconds
    return values


def decode_entry(obj: Any) -> tuple[str, AttemptRecord | FlowRunRecord | RunEnd]:
    """The ``(kind, record)`` of an object written by :func:`encode_entry`; ``InvalidRecordError`` if malformed."""
    if not isinstance(obj, dict) or obj.get("kind") not in KINDS or not isinstance(obj.get("record"), dict):
        raise InvalidRecordError(f"a spool entry must be {{'kind': one of {', '.join(KINDS)}, 'record': {{...}}}}")
    kind, values = obj["kind"], dict(obj["record"])
    record_type = _RECORD_TYPES[kind]
    names = {f.name for f in fields(record_type)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise InvalidRecordError(f"a spooled {kind} has unknown field(s) {', '.join(unknown)}")
    for name in _TIMES.intersection(values):
        values[name] = _time(values[name], kind, name)
    for name in _ENUMS.keys() & values.keys():
        values[name] = _enum(_ENUMS[name], values[name], kind, name)
    if kind == "run_start" and "tags" in values:
        values["tags"] = _tags(values["tags"])
    try:
        return kind, record_type(**values)
    except TypeError as exc:
        raise InvalidRecordError(f"a spooled {kind} is incomplete: {exc}") from None


def _time(value: Any, kind: str, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise InvalidRecordError(f"a spooled {kind}.{name} must be an ISO 8601 time, not {value!r:.80}") from None
    if parsed.tzinfo is None:
        raise InvalidRecordError(f"a spooled {kind}.{name} must carry a UTC offset, not {value!r:.80}")
    return parsed


def _tags(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
        raise InvalidRecordError(f"a spooled run_start.tags must be a list of strings, not {value!r:.80}")
    return tuple(value)


def _enum(enum_type: Any, value: Any, kind: str, name: str) -> Any:
    try:
        return enum_type(value)
    except ValueError:
        allowed = ", ".join(member.value for member in enum_type)
        raise InvalidRecordError(f"a spooled {kind}.{name} must be one of {allowed}, not {value!r:.80}") from None


__all__ = ["KINDS", "RunEnd", "decode_entry", "encode_entry"]
