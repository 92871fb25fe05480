"""Plain-text summaries of backtest figures, shared by the CLI, the flows' artifacts and the notebook.

Example::

    >>> overall = {"model": {"WR": 0.5, "precision": 0.4, "pr_auc": 0.3, "roc_auc": 0.8, "brier": 0.05,
    ...            "false_alarm_rate": 0.02, "median_lead_time_seconds": 600.0, "warnings": 10, "failures": 8}}
    >>> print(metrics_markdown(overall).splitlines()[2])
    | model | 0.300 | 0.800 | 0.0500 | 50.0% | 40.0% | 2.0% | 10 | 10.0 min |
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SYSTEMS = ("model", "last_failed", "smoothed_rate")
HEADER = ("system", "PR-AUC", "ROC-AUC", "Brier", "WR", "precision", "false alarms", "warnings", "median lead")


def _num(value: Any, fmt: str) -> str:
    if value is None or value != value:  # None or NaN: undefined for these runs
        return "-"
    if fmt == "%":
        return f"{value:.1%}"
    if fmt == "min":
        return f"{value / 60:.1f} min"
    return format(value, fmt)


def metrics_rows(overall: Mapping[str, Any]) -> list[list[str]]:
    """One row of formatted cells per system present in ``overall`` (model first, then the baselines)."""
    rows = []
    for system in SYSTEMS:
        m = overall.get(system)
        if not m:
            continue
        rows.append(
            [
                system,
                _num(m.get("pr_auc"), ".3f"),
                _num(m.get("roc_auc"), ".3f"),
                _num(m.get("brier"), ".4f"),
                _num(m.get("WR"), "%"),
                _num(m.get("precision"), "%"),
                _num(m.get("false_alarm_rate"), "%"),
                _num(m.get("warnings"), "d"),
                _num(m.get("median_lead_time_seconds"), "min"),
            ]
        )
    return rows


def metrics_markdown(overall: Mapping[str, Any]) -> str:
    """A markdown table of the model's and the baselines' figures, plus ER when known."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in metrics_rows(overall)]
    escape = overall.get("escape") or {}
    if escape.get("ER") is not None:
        lines.append("")
        lines.append(
            f"ER = {escape['ER']:.1%} of {escape.get('runs_with_failed_attempt', '?')} runs that met a failed "
            "attempt still completed."
        )
    return "\n".join(lines)


__all__ = ["HEADER", "metrics_markdown", "metrics_rows"]
