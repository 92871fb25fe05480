"""Plain-text summaries of backtest figures, shared by the CLI, the flows' artifacts and the notebook.

Example::

    >>> overall = {"model": {"WR": 0.5, "precision": 0.4, "pr_auc": 0.3, "roc_auc": 0.8, "brier": 0.05,
    ...            "false_alarm_rate": 0.02, "median_lead_time_seconds": 600.0, "warnings": 10, "failures": 8}}
    >>> print(metrics_markdown(overall).splitlines()[2])
    | model | 0.300 | 0.800 | 0.0500 | 50.0% | 40.0% | 2.0% | 10 | 10.0 min |
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    lines = _markdown(HEADER, metrics_rows(overall))
    escape = overall.get("escape") or {}
    if escape.get("ER") is not None:
        lines.append("")
        lines.append(
            f"ER = {escape['ER']:.1%} of {escape.get('runs_with_failed_attempt', '?')} runs that met a failed "
            "attempt still completed."
        )
    return "\n".join(lines)


FOLD_HEADER = ("fold", "test runs", "threshold", "precision", "warned", "WR", "best WR", "WR/best", "on target")
"""Columns of :func:`fold_rows`: each trained fold's operating point (see
:func:`forewarn.learning.metrics.operating_point`)."""


def fold_rows(folds: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """One row of formatted cells per backtest fold: where its threshold landed on its test window.

    ``warned`` is the share of test runs warned; ``best WR`` the best WR any threshold reaches on that
    window at the target (precision, or alert budget). A skipped fold's row says ``skipped``.

    Example::

        >>> fold = {"fold": 0, "n_test_runs": 4000, "threshold": 0.31, "operating_point": {"precision": 0.52,
        ...         "alert_share": 0.04, "WR": 0.41, "best_WR": 0.45, "WR_to_best": 0.91, "on_target": True}}
        >>> fold_rows([fold])[0]
        ['0', '4000', '0.310', '52.0%', '4.0%', '41.0%', '45.0%', '91.0%', 'yes']
    """
    rows = []
    for fold in folds:
        point = fold.get("operating_point")
        if not point:
            rows.append([str(fold.get("fold")), _num(fold.get("n_test_runs"), "d"), "skipped", *["-"] * 6])
            continue
        rows.append(
            [
                str(fold.get("fold")),
                _num(fold.get("n_test_runs"), "d"),
                _num(fold.get("threshold"), ".3f"),
                _num(point.get("precision"), "%"),
                _num(point.get("alert_share"), "%"),
                _num(point.get("WR"), "%"),
                _num(point.get("best_WR"), "%"),
                _num(point.get("WR_to_best"), "%"),
                {True: "yes", False: "no"}.get(point.get("on_target"), "-"),
            ]
        )
    return rows


def fold_markdown(folds: Sequence[Mapping[str, Any]]) -> str:
    """:func:`fold_rows` as a markdown table."""
    return "\n".join(_markdown(FOLD_HEADER, fold_rows(folds)))


def _markdown(header: tuple[str, ...], rows: list[list[str]]) -> list[str]:
    """The lines of a markdown table."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


__all__ = ["FOLD_HEADER", "HEADER", "fold_markdown", "fold_rows", "metrics_markdown", "metrics_rows"]
