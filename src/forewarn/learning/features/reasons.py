"""A feature's value as a statement a person can check against the run history: the words of a warning's reasons.

The model says *which* features move a run's risk (:meth:`~forewarn.learning.model.FailureWarningModel.explain`);
this module says *what they mean*, as the features module defines them: "the last 4 runs of this flow failed
(usual: 0)", not "flow_failure_streak = 4". Two kinds of feature value are not facts about the run and give no
reason at all (:func:`reason_text` returns ``None``):

* a value that only holds its prior because there is no history behind it (a flow or version that never ran
  has the overall failure rate as its "failure rate"): that reads as "no history for this flow yet";
* an attribute the run does not have (a missing ``feature_*`` column, no deployment): absence is not a reason.

"usual" is the feature's value on a typical training run (the median, or the most frequent category).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from forewarn.learning.features._attribute_history import SAME_JOB, attribute_of
from forewarn.learning.features._columns import NONE

Row = Mapping[str, Any]
Phrase = Callable[[Any, Any, Row], "str | None"]

_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, str):
        return value == NONE or not value.strip()
    try:
        return bool(np.isnan(value))
    except (TypeError, ValueError):
        return False


def _num(value: Any) -> str:
    v = float(value)
    if v.is_integer() and abs(v) < 1e15:
        return f"{int(v):,}"
    return f"{v:.3g}" if abs(v) >= 0.01 else f"{v:.2g}"


def _pct(value: Any) -> str:
    return f"{100 * float(value):.0f}%" if float(value) >= 0.01 or float(value) == 0 else f"{100 * float(value):.1g}%"


def _hours(value: Any) -> str:
    h = float(value)
    if h < 1:
        return f"{max(1, round(h * 60))} min"
    return f"{h:.1f} h" if h < 48 else f"{h / 24:.1f} days"


def _seen(row: Row, name: str) -> float:
    value: Any = row.get(name)
    return 0.0 if _missing(value) else float(value)


def _rate_of(subject: str, seen: str) -> Phrase:
    def phrase(value: Any, usual: Any, row: Row) -> str | None:
        runs = _seen(row, seen)
        if runs == 0:  # the smoothed rate is only its prior: no fact about this subject behind it
            return f"no history for this {subject} yet"
        return f"this {subject} failed {_pct(value)} of its {_num(runs)} past runs, smoothed (usual {_pct(usual)})"

    return phrase


def _count(template: str) -> Phrase:
    """``template`` with ``{v}`` and ``{usual}`` as numbers."""
    return lambda value, usual, row: template.format(v=_num(value), usual=_num(usual))


def _flag(when_one: str) -> Phrase:
    return lambda value, usual, row: when_one if float(value) >= 0.5 else None


def _streak(value: Any, usual: Any, row: Row) -> str | None:
    if float(value) == 0:
        return "the flow's last run did not fail"
    return f"the last {_num(value)} runs of this flow failed in a row (usual: {_num(usual)})"


def _scheduled_at(value: Any, usual: Any, row: Row) -> str | None:
    week_hour: Any = row.get("hour_of_week")
    if _missing(week_hour):
        return None
    day, hour = divmod(int(float(week_hour)), 24)
    return f"scheduled on a {_WEEKDAYS[day % 7]} around {hour:02d}:00 UTC, a time when runs fail more often"


def _parameters_seen(value: Any, usual: Any, row: Row) -> str | None:
    if float(value) == 0:
        return "parameters this flow has never run with"
    return f"parameters seen in {_num(value)} earlier runs (usual {_num(usual)})"


_PHRASES: dict[str, Phrase] = {
    "flow_failure_rate_smoothed": _rate_of("flow", "flow_runs_seen"),
    "version_failure_rate_smoothed": _rate_of("flow version", "version_runs_seen"),
    "flow_failure_rate_recent": lambda v, u, row: (
        None if _seen(row, "flow_runs_seen") == 0 else f"{_pct(v)} of this flow's recent runs failed (usual {_pct(u)})"
    ),
    "flow_failure_streak": _streak,
    "flow_success_streak": lambda v, u, row: (
        None
        if _seen(row, "flow_runs_seen") == 0
        else f"{_num(v)} successful runs since the flow last failed (usual {_num(u)})"
    ),
    "flow_last_ended_failed": _flag("the flow's last run failed"),
    "flow_hours_since_failure": lambda v, u, row: (
        f"the flow last failed {_hours(v)} before this run (usual {_hours(u)})"
    ),
    "flow_duration_trend": lambda v, u, row: f"recent runs of this flow took {float(v):.2g}x its usual time",
    "flow_runs_seen": lambda v, u, row: (
        "no history for this flow yet" if float(v) == 0 else f"{_num(v)} past runs of this flow known (usual {_num(u)})"
    ),
    "version_changed": _flag("a flow version that differs from the previous run's"),
    "version_runs_seen": lambda v, u, row: (
        "no history for this flow version yet" if float(v) == 0 else f"{_num(v)} past runs of this version"
    ),
    "parameters_changed": _flag("parameters that differ from the flow's previous run"),
    "parameters_runs_seen": _parameters_seen,
    "parameter_count": _count("{v} parameters (usual {usual})"),
    "global_failure_rate": lambda v, u, row: f"{_pct(v)} of all flows' runs failed over the lookback (usual {_pct(u)})",
    "global_failure_rate_window": lambda v, u, row: (
        f"{_pct(v)} of all flows' runs failed in the recent window (usual {_pct(u)})"
    ),
    "other_flows_failures_window": _count("{v} runs of other flows failed in the recent window (usual {usual})"),
    "partner_failures_window": _count(
        "{v} failures in the recent window of flows that have failed together with this one (usual {usual})"
    ),
    "attempts_failed_window": _count("{v} failed task attempts across all flows in the recent window (usual {usual})"),
    "flow_attempts_failed_window": _count("{v} failed task attempts of this flow in the recent window (usual {usual})"),
    "attempts_timeout_window": _count("{v} timed-out task attempts in the recent window (usual {usual})"),
    "attempts_connection_window": _count("{v} connection errors of task attempts in the recent window (usual {usual})"),
    "attempts_resource_window": _count("{v} resource errors (memory, disk) in the recent window (usual {usual})"),
    "days_to_month_end": _count("{v} days before the month ends (usual {usual})"),
    "flow_name": lambda v, u, row: f"the flow is {v} (a typical run's flow: {u})",
    "deployment": lambda v, u, row: f"the deployment is {v} (usual {u})",
    **dict.fromkeys(("hour_sin", "hour_cos", "dow_sin", "dow_cos", "hour_of_week"), _scheduled_at),
}


def _gap_words(row: Row) -> str:
    return f"usual gap: {_hours(_seen(row, 'flow_usual_gap_hours'))}"


def _cadence(phrase: Callable[[Any, Any, Row], str | None]) -> Phrase:
    """A cadence phrase, or "no history" when the flow has fewer than two ended runs (no gap to compare)."""

    def checked(value: Any, usual: Any, row: Row) -> str | None:
        if _seen(row, "flow_runs_seen") < 2:
            return "no history of this flow's cadence yet (fewer than 2 past runs)"
        return phrase(value, usual, row)

    return checked


def _after_failure(value: Any, usual: Any, row: Row) -> str | None:
    if _seen(row, "flow_last_ended_failed") == 0 and float(value) == 1.0:
        return "no failure of this flow in the lookback to compare with"
    since = _hours(_seen(row, "flow_hours_since_failure"))
    return f"submitted {since} after this flow's last failure; {_gap_words(row)} between its runs"


_FLOW_CADENCE: dict[str, Phrase] = {
    "flow_hours_since_end": _cadence(
        lambda v, u, row: f"this flow's last run ended {_hours(v)} before this one; {_gap_words(row)} between its runs"
    ),
    "flow_usual_gap_hours": _cadence(
        lambda v, u, row: f"this flow's recent runs ended {_hours(v)} apart on average (usual {_hours(u)})"
    ),
    "flow_gap_ratio": _cadence(
        lambda v, u, row: (
            f"due {_hours(_seen(row, 'flow_hours_since_end'))} after this flow's last run ended, "
            f"{float(v):.2g}x the usual gap between its runs ({_hours(_seen(row, 'flow_usual_gap_hours'))})"
        )
    ),
    "flow_failure_gap_ratio": _cadence(_after_failure),
    "flow_runs_ended_hour": lambda v, u, row: (
        f"{_num(v)} runs of this flow ended in the hour before this one (usual {_num(u)})"
    ),
}


def _attribute_value(attribute: str, row: Row) -> str | None:
    """``user u12``, ``requested seconds 3,600``, ``hour 14:00-15:00 UTC``: the run's value of an attribute."""
    if attribute == SAME_JOB:
        return "the same attributes as this run"
    if attribute == "hour":
        week_hour: Any = row.get("hour_of_week")
        if _missing(week_hour):
            return None
        hour = int(float(week_hour)) % 24
        return f"a scheduled hour of {hour:02d}:00-{hour + 1:02d}:00 UTC"
    if f"feature_{attribute}" not in row:  # a model without the attribute itself: still one fact
        return f"this run's {attribute.replace('_', ' ')}"
    value: Any = row.get(f"feature_{attribute}")
    if _missing(value):
        return None
    shown = _num(value) if isinstance(value, (int, float, np.integer, np.floating)) else str(value)
    return f"{attribute.replace('_', ' ')} {shown}"


def _attribute_phrase(found: tuple[str, str, bool], value: Any, usual: Any, row: Row) -> str | None:
    """The phrase of an attribute-history column (``found``: its attribute, suffix, and within the flow)."""
    attribute, suffix, within_flow = found
    subject = _attribute_value(attribute, row)
    if subject is None:  # the run lacks the attribute: its history is no fact about the run
        return None
    if suffix == "_to_flow_usual":
        if _seen(row, "flow_runs_seen") == 0:
            return f"no history of {attribute.replace('_', ' ')} for this flow yet"
        if float(value) == 1.0:  # equal to the flow's usual value, or nothing to compare with
            return None
        raw: Any = row.get(f"feature_{attribute}")
        if _missing(raw) or float(value) == 0:
            return f"{subject}: {float(value):.2g}x the mean of this flow's recent runs"
        return f"{subject}, {float(value):.2g}x the mean of this flow's recent runs ({_num(float(raw) / float(value))})"
    mine = within_flow or attribute == SAME_JOB  # among this flow's own runs
    runs = _seen(row, f"{'' if attribute == SAME_JOB else 'flow_' if within_flow else ''}{attribute}_runs_seen")
    if runs == 0:
        return f"no history of this flow with {subject} yet" if mine else f"no history for {subject} yet"
    if suffix == "_runs_seen":
        return f"{_num(value)} past runs of {'this' if mine else 'any'} flow with {subject} (usual {_num(usual)})"
    if suffix == "_last_ended_failed":
        done = "failed" if float(value) >= 0.5 else "did not fail"
        return f"the last run {'of this flow ' if mine else ''}with {subject} {done}"
    smoothed = f"smoothed (usual {_pct(usual)})"
    who = "this flow's runs" if mine else "runs"
    if suffix == "_failure_rate_window":
        return f"{who} with {subject} failed {_pct(value)} in the recent window, {smoothed}"
    if suffix == "_failure_rate_recent":
        latest = "this flow's most recent runs" if mine else "the most recent runs"
        return f"{latest} with {subject} failed {_pct(value)}, {smoothed}"
    if mine:
        return f"this flow failed {_pct(value)} of its {_num(runs)} past runs with {subject}, {smoothed}"
    return f"runs with {subject} failed {_pct(value)} of {_num(runs)} past runs, {smoothed}"


_PHRASES.update(_FLOW_CADENCE)


def reason_text(name: str, value: Any, usual: Any, row: Row) -> str | None:
    """Feature ``name`` at ``value`` (``usual`` on a typical run) in words, or ``None`` when it is no reason.

    ``row`` is the run's whole feature row: a phrase reads the counts behind a rate from it (a rate with no
    runs behind it is "no history ... yet"). Features without a phrase of their own (``feature_*`` attributes,
    categories) read as ``name = value (usual ...)``; a missing value is never a reason.

    Example::

        >>> row = {"flow_runs_seen": 0.0, "flow_failure_rate_smoothed": 0.67}
        >>> reason_text("flow_failure_rate_smoothed", 0.67, 0.05, row)
        'no history for this flow yet'
        >>> reason_text("flow_failure_streak", 3.0, 0.0, {"flow_runs_seen": 12.0})
        'the last 3 runs of this flow failed in a row (usual: 0)'
        >>> reason_text("feature_input_rows", float("nan"), 1200.0, row) is None
        True
        >>> reason_text("feature_queue", "gpu", "batch", row)
        'queue = gpu (usual batch)'
    """
    if _missing(value):
        return None
    phrase = _PHRASES.get(name)
    if phrase is not None:
        return phrase(value, usual, row)
    found = attribute_of(name, row)
    if found is not None:
        return _attribute_phrase(found, value, usual, row)
    label = name.removeprefix("feature_").replace("_", " ") if name.startswith("feature_") else name
    shown = _num(value) if isinstance(value, (int, float, np.integer, np.floating)) else str(value)
    if _missing(usual):
        return f"{label} = {shown}"
    base = _num(usual) if isinstance(usual, (int, float, np.integer, np.floating)) else str(usual)
    if isinstance(value, float) and isinstance(usual, float) and math.isclose(value, usual):
        return None
    return f"{label} = {shown} (usual {base})"


__all__ = ["reason_text"]
