"""Spooled telemetry entries as JSON and back: what one line of a spool file holds.

An entry is one of three writes the recorder makes: ``attempt`` (an :class:`AttemptRecord`), ``run_start``
(a :class:`FlowRunRecord`) or ``run_end`` (a flow run id, final state and end time). Times are ISO 8601
with their offset; enums are their values; flow parameters are written as the store will keep them
(JSON values, anything else as its ``str()``), so decoding gives back the row the store would have written.
A run's ``tags`` are written only when it has some: an entry from before schema version 6 has none, and
decodes as a run without tags.

An attempt, written once per task attempt on the task's own thread, is a JSON array of its fields in
:data:`ATTEMPT_FIELDS` order after the word ``"attempt"``: about half the bytes of an object with its
keys, and cheaper to encode and to decode. Runs are objects ``{"kind": ..., "record": {...}}``, and so
were attempts before forewarn 0.2: both forms are read.

A spool file is input an attacker may have written: :func:`decode_entry` checks every field's type and
raises :class:`~forewarn.errors.InvalidRecordError` naming the field, never a raw ``KeyError``.

Example::

    >>> from datetime import datetime, timezone
    >>> from forewarn.records import AttemptOutcome, AttemptRecord
    >>> t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> rec = AttemptRecord("f1", "t1", "load", 1, t0, t0, AttemptOutcome.SUCCESS)
    >>> encode_entry("attempt", rec)[:5]
    ['attempt', 'f1', 't1', 'load', 1]
    >>> decode_entry(encode_entry("attempt", rec)) == ("attempt", rec)
    True
"""

from __future__ import annotations

import itertools
import json
from dataclasses import MISSING, asdict, dataclass, fields
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


ATTEMPT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(AttemptRecord))
"""The order of an attempt's fields in its spooled array (after ``"attempt"``)."""

_TIMES = {"start_time", "end_time", "scheduled_start"}
_RECORD_TYPES: dict[str, type] = {"attempt": AttemptRecord, "run_start": FlowRunRecord, "run_end": RunEnd}
_ENUMS: dict[str, type] = {"outcome": AttemptOutcome, "state": RunState}


def encode_entry(kind: str, record: AttemptRecord | FlowRunRecord | RunEnd) -> list[Any] | dict[str, Any]:
    """``record`` as JSON-ready data: an attempt as an array (:data:`ATTEMPT_FIELDS`), a run as an object."""
    if type(record) is AttemptRecord:
        return _attempt_array(record)
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


def _attempt_array(r: AttemptRecord) -> list[Any]:
    """An attempt's fields in :data:`ATTEMPT_FIELDS` order. Every field is a scalar, and this runs on the
    task's thread once per attempt: no ``asdict`` (recursion, deep copies), no keys. The fields after the
    first twelve (:data:`EXTRA_FIELDS`: a concurrency wait, a replica, a provider, the execution id) are
    optional: trailing ones that hold their default (null, or ``""`` for the execution id) are left out.
    A live attempt has an execution id, so it is sixteen fields long, the three rare ones null."""
    values = [
        "attempt",
        r.flow_run_id,
        r.task_run_id,
        r.task_name,
        r.attempt,
        None if r.start_time is None else r.start_time.isoformat(),
        None if r.end_time is None else r.end_time.isoformat(),
        getattr(r.outcome, "value", r.outcome),
        r.exception_type,
        r.exception_message,
        r.retryable,
        r.used_fallback,
        r.host,
    ]
    if r.execution_id:
        return [*values, r.wait_seconds, r.replica, r.provider, r.execution_id]
    extras = [r.wait_seconds, r.replica, r.provider]
    while extras and extras[-1] is None:
        extras.pop()
    return values + extras if extras else values


def decode_entry(obj: Any) -> tuple[str, AttemptRecord | FlowRunRecord | RunEnd]:
    """The ``(kind, record)`` of data written by :func:`encode_entry`; ``InvalidRecordError`` if malformed."""
    if type(obj) is list and obj and obj[0] == "attempt":
        if not len(_ATTEMPT_TYPES) < len(obj) <= len(ATTEMPT_FIELDS) + 1:
            raise InvalidRecordError(
                f"a spooled attempt must hold {len(_ATTEMPT_TYPES)} to {len(ATTEMPT_FIELDS)} fields, not {len(obj) - 1}"
            )
        return "attempt", _checked_attempt(obj[1:])
    if not isinstance(obj, dict) or obj.get("kind") not in KINDS or not isinstance(obj.get("record"), dict):
        raise InvalidRecordError(
            f"a spool entry must be ['attempt', ...] or {{'kind': one of {', '.join(KINDS)}, 'record': {{...}}}}"
        )
    kind, values = obj["kind"], dict(obj["record"])
    record_type = _RECORD_TYPES[kind]
    names = {f.name for f in fields(record_type)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise InvalidRecordError(f"a spooled {kind} has unknown field(s) {', '.join(unknown)}")
    if kind == "attempt":  # the object form of forewarn 0.1's spool
        defaults = {f.name: f.default for f in fields(AttemptRecord)}
        missing = [name for name in ATTEMPT_FIELDS if name not in values and defaults[name] is MISSING]
        if missing:
            raise InvalidRecordError(f"a spooled attempt is incomplete: it has no {', '.join(missing)}")
        return kind, _checked_attempt([values.get(name, defaults[name]) for name in ATTEMPT_FIELDS])
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


_OPTIONAL_TEXT = (str, type(None))
_ATTEMPT_TYPES: tuple[tuple[str, tuple[type, ...], str], ...] = (
    ("flow_run_id", _OPTIONAL_TEXT, "text or null"),
    ("task_run_id", (str,), "text"),
    ("task_name", (str,), "text"),
    ("attempt", (int,), "a whole number"),
    ("start_time", (str,), "an ISO 8601 time"),
    ("end_time", (str,), "an ISO 8601 time"),
    ("outcome", (str,), "text"),
    ("exception_type", _OPTIONAL_TEXT, "text or null"),
    ("exception_message", _OPTIONAL_TEXT, "text or null"),
    ("retryable", (bool, type(None)), "true, false or null"),
    ("used_fallback", (bool,), "true or false"),
    ("host", _OPTIONAL_TEXT, "text or null"),
)


_EXTRA_TYPES: tuple[tuple[str, tuple[type, ...], str], ...] = (
    ("wait_seconds", (float, int, type(None)), "a number of seconds or null"),
    ("replica", (int, type(None)), "a whole number or null"),
    ("provider", _OPTIONAL_TEXT, "text or null"),
    ("execution_id", (str,), "text"),
)
"""The fields after the twelve of :data:`_ATTEMPT_TYPES`, optional at the end of a spooled attempt: an entry
spooled before a field existed (``execution_id``: schema version 7) ends before it and still decodes."""
EXTRA_FIELDS = tuple(name for name, _, _ in _EXTRA_TYPES)
_EXTRA_DEFAULTS: tuple[Any, ...] = (None, None, None, "")

_ATTEMPT_SIGNATURES = frozenset(itertools.product(*(types for _, types, _ in _ATTEMPT_TYPES)))
"""Every valid tuple of the JSON types of an attempt's fields: one set lookup checks all twelve."""
_OUTCOMES = {outcome.value: outcome for outcome in AttemptOutcome}


def _checked_attempt(values: list[Any]) -> AttemptRecord:
    """The :class:`AttemptRecord` of an attempt's spooled fields, each checked for its JSON type."""
    core, extra = values[: len(_ATTEMPT_TYPES)], values[len(_ATTEMPT_TYPES) :]
    if tuple(map(type, core)) not in _ATTEMPT_SIGNATURES:
        for value, (name, types, expected) in zip(core, _ATTEMPT_TYPES, strict=True):
            if type(value) not in types:
                raise InvalidRecordError(f"a spooled attempt.{name} must be {expected}, not {value!r:.80}")
    for value, (name, types, expected) in zip(extra, _EXTRA_TYPES, strict=False):
        if type(value) not in types:
            raise InvalidRecordError(f"a spooled attempt.{name} must be {expected}, not {value!r:.80}")
    wait, replica, provider, execution_id = (*extra, *_EXTRA_DEFAULTS[len(extra) :])
    fr, tr, tn, n, start, end, outcome, etype, emsg, retryable, used_fallback, host = core
    member = _OUTCOMES.get(outcome) or _enum(AttemptOutcome, outcome, "attempt", "outcome")  # that raises
    return AttemptRecord(
        fr, tr, tn, n, _aware_time(start, "start_time"), _aware_time(end, "end_time"), member, etype, emsg,
        retryable, used_fallback, host, None if wait is None else float(wait), replica, provider, execution_id,
    )  # fmt: skip


def _aware_time(value: str, name: str) -> datetime:
    parsed = _time(value, "attempt", name)
    assert parsed is not None  # value is text here
    return parsed


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


__all__ = ["ATTEMPT_FIELDS", "EXTRA_FIELDS", "KINDS", "RunEnd", "decode_entry", "encode_entry"]
