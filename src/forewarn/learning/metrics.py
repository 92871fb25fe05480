"""How well warnings foretold failures: pure functions over arrays and frames.

Every metric is defined for the runs handed in, and every ratio whose denominator is zero (no failures,
no warnings, only one class) is ``None`` rather than ``NaN`` or an exception, so results go straight into
JSON. The definitions, for ``n`` runs of which ``F`` failed, ``W`` were warned and ``TW`` were warned *and*
failed:

==========================  ============================================================================
key                         definition
==========================  ============================================================================
``runs``                    ``n``
``failures``                ``F``
``warnings``                ``W``
``true_warnings``           ``TW``
``false_warnings``          ``W - TW``
``WR``                      warned failures / failures = ``TW / F`` (recall); ``None`` when ``F == 0``
``precision``               warnings that came true / warnings = ``TW / W``; ``None`` when ``W == 0``
``false_alarm_rate``        warnings on non-failures / non-failures = ``(W - TW) / (n - F)``; ``None``
                            when every run failed
``pr_auc``                  average precision of ``risk`` (threshold-free); ``None`` when ``F == 0``
``roc_auc``                 ROC AUC of ``risk``; ``None`` unless both classes occur
``brier``                   mean of ``(risk - failed) ** 2``; ``None`` when ``n == 0``
``median_lead_time_seconds``  median of ``lead_seconds`` over warned failures; ``None`` without
                            ``lead_seconds`` or without a warned failure
``base_rate``               ``F / n``; ``None`` when ``n == 0``
==========================  ============================================================================

Example::

    >>> m = warning_metrics([1, 0, 1, 0], [True, True, False, False], [0.9, 0.6, 0.4, 0.1])
    >>> m["WR"], m["precision"], m["false_alarm_rate"], m["base_rate"]
    (0.5, 0.5, 0.5, 0.5)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from forewarn.records import FAILED_ATTEMPT_OUTCOMES, FINAL_STATES


def _ratio(num: float, den: float) -> float | None:
    return float(num) / float(den) if den else None


def warning_metrics(
    failed: Any,
    warned: Any,
    risk: Any,
    *,
    lead_seconds: Any | None = None,
) -> dict[str, Any]:
    """Score warnings against outcomes; see the module docstring for each key's exact definition.

    ``failed`` holds 1/0 (or True/False) per run, ``warned`` whether a warning was issued, ``risk`` the
    score the warning was derived from (a probability for the Brier score to mean anything), and
    ``lead_seconds`` (optional) how many seconds before the run ended its warning was issued.
    Undefined values are ``None``; nothing here raises on empty input or a single class.

    Example::

        >>> m = warning_metrics([1, 1, 0], [1, 0, 1], [0.8, 0.3, 0.7], lead_seconds=[60, 30, 90])
        >>> m["WR"], m["precision"], m["median_lead_time_seconds"]
        (0.5, 0.5, 60.0)
    """
    y = np.asarray(failed, dtype=float).astype(bool)
    w = np.asarray(warned, dtype=bool)
    r = np.asarray(risk, dtype=float)
    if not (len(y) == len(w) == len(r)):
        raise ValueError(f"failed, warned and risk differ in length: {len(y)}, {len(w)}, {len(r)}")
    n = len(y)
    f = int(y.sum())
    n_warned = int(w.sum())
    tw = int((w & y).sum())
    both_classes = 0 < f < n
    r_clean = np.nan_to_num(r, nan=0.0)
    median_lead: float | None = None
    if lead_seconds is not None:
        lead = np.asarray(lead_seconds, dtype=float)
        if len(lead) != n:
            raise ValueError(f"lead_seconds has {len(lead)} values for {n} runs")
        hits = lead[w & y]
        hits = hits[~np.isnan(hits)]
        if len(hits):
            median_lead = float(np.median(hits))
    return {
        "runs": n,
        "failures": f,
        "warnings": n_warned,
        "true_warnings": tw,
        "false_warnings": n_warned - tw,
        "WR": _ratio(tw, f),
        "precision": _ratio(tw, n_warned),
        "false_alarm_rate": _ratio(n_warned - tw, n - f),
        "pr_auc": float(average_precision_score(y, r_clean)) if f > 0 else None,
        "roc_auc": float(roc_auc_score(y, r_clean)) if both_classes else None,
        "brier": float(np.mean((r_clean - y) ** 2)) if n else None,
        "median_lead_time_seconds": median_lead,
        "base_rate": _ratio(f, n),
    }


OPERATING_POINT_TOLERANCE = {"precision": 0.1, "budget": 0.3, "best_wr_share": 0.8}
"""How far a fold's operating point may stray: precision within ±0.1 of the target (precision rule), alert
share within ±30 % of the budget (budget rule), and WR at least 80 % of the best WR at the target."""


def best_wr(
    failed: Any, risk: Any, rule: str, *, target_precision: float = 0.5, alert_budget: float = 0.05
) -> float | None:
    """The highest WR any threshold on ``risk`` reaches on these runs while keeping to the rule's target.

    ``"precision"``: the largest share of failures warned by a threshold whose warnings have precision
    ``>= target_precision`` (0.0 when none has); ``"budget"``: the largest share of failures warned by a
    threshold that warns at most ``alert_budget`` of the runs (ties warned whole or not at all). An oracle
    on the very runs it is measured on: the ceiling a threshold chosen in advance is compared with.
    ``None`` without failures.

    Example::

        >>> best_wr([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1], "precision", target_precision=0.6)
        1.0
        >>> best_wr([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1], "budget", alert_budget=0.5)
        0.5
    """
    y = np.asarray(failed, dtype=float).astype(bool)
    r = np.nan_to_num(np.asarray(risk, dtype=float), nan=0.0)
    n, f = len(y), int(y.sum())
    if f == 0:
        return None
    order = np.argsort(-r, kind="stable")
    r_sorted = r[order]
    last = np.flatnonzero(np.r_[r_sorted[1:] != r_sorted[:-1], True])  # end of each group of equal risks
    tp = np.cumsum(y[order])[last]
    warned = last + 1
    ok = tp >= target_precision * warned - 1e-12 if rule == "precision" else warned <= alert_budget * n + 1e-9
    return float(tp[ok].max()) / f if ok.any() else 0.0


def operating_point(
    failed: Any,
    warned: Any,
    risk: Any,
    rule: str,
    *,
    target_precision: float = 0.5,
    alert_budget: float = 0.05,
) -> dict[str, Any]:
    """Where a threshold chosen in advance landed on these runs, against its target and the best possible.

    Returns ``precision`` and ``WR`` (as :func:`warning_metrics`), ``alert_share`` (warnings / runs),
    ``best_WR`` (:func:`best_wr` for the same rule and target), ``WR_to_best`` (``WR / best_WR``), and
    ``on_target``: for the precision rule whether ``precision`` is within ±0.1 of ``target_precision``, for
    the budget rule whether ``alert_share`` is within ±30 % of ``alert_budget``, each with ``WR`` at least
    80 % of ``best_WR`` (:data:`OPERATING_POINT_TOLERANCE`). ``None`` where undefined.

    Example::

        >>> op = operating_point([1, 0, 1, 0], [True, True, False, False], [0.9, 0.8, 0.7, 0.1], "precision")
        >>> op["precision"], op["alert_share"], op["WR"], op["best_WR"], op["on_target"]
        (0.5, 0.5, 0.5, 1.0, False)
    """
    w = np.asarray(warned, dtype=bool)
    m = warning_metrics(failed, w, risk)
    share = _ratio(int(w.sum()), len(w))
    best = best_wr(failed, risk, rule, target_precision=target_precision, alert_budget=alert_budget)
    wr = m["WR"]
    to_best = wr / best if wr is not None and best else None
    if rule == "precision":
        close = (
            m["precision"] is not None
            and abs(m["precision"] - target_precision) <= OPERATING_POINT_TOLERANCE[rule] + 1e-12
        )
    else:
        close = share is not None and abs(share / alert_budget - 1.0) <= OPERATING_POINT_TOLERANCE[rule] + 1e-12
    enough = to_best is not None and to_best >= OPERATING_POINT_TOLERANCE["best_wr_share"] - 1e-12
    return {
        "precision": m["precision"],
        "alert_share": share,
        "WR": wr,
        "best_WR": best,
        "WR_to_best": to_best,
        "on_target": None if wr is None else bool(close and enough),
    }


def average_precision_by_group(groups: Any, failed: Any, risk: Any) -> np.ndarray:
    """``average_precision_score(failed, risk)`` within each group, for all groups at once; NaN without failures.

    ``groups`` holds integer codes ``0..k-1`` (``pd.factorize``); the result has one value per code. The
    definition is scikit-learn's: over the group's distinct risks from the highest, the sum of (gain in
    recall) x (precision at that risk), NaN risks counting as 0. One sort instead of one scikit-learn call per
    group: a backtest over 4,000 flows took 30 s of CPU in those calls.

    Example::

        >>> average_precision_by_group([0, 0, 0, 1, 1], [1, 0, 1, 0, 0], [0.9, 0.8, 0.7, 0.5, 0.1]).round(3)
        array([0.833,   nan])
    """
    g = np.asarray(groups, dtype=np.int64)
    y = np.asarray(failed, dtype=float)
    r = np.nan_to_num(np.asarray(risk, dtype=float), nan=0.0)
    k = int(g.max()) + 1 if len(g) else 0
    order = np.lexsort((-r, g))  # by group, then risk from the highest
    g, y, r = g[order], y[order], r[order]
    start = np.r_[True, g[1:] != g[:-1]]
    # the end of each run of equal (group, risk): a threshold at that risk warns the whole run
    end = np.r_[(g[1:] != g[:-1]) | (r[1:] != r[:-1]), True]
    tp_all = np.cumsum(y)
    seen_all = np.arange(1, len(y) + 1)
    first = np.flatnonzero(start)
    group_of = np.cumsum(start) - 1
    base_tp = (tp_all - y)[first][group_of]  # true positives before the group
    base_seen = first[group_of]
    tp = (tp_all - base_tp)[end]
    seen = (seen_all - base_seen)[end]
    who = g[end]
    failures = np.bincount(g, weights=y, minlength=k)
    prev_tp = np.r_[0.0, tp[:-1]]
    prev_tp[np.r_[True, who[1:] != who[:-1]]] = 0.0  # recall starts at 0 in each group
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = np.bincount(who, weights=(tp - prev_tp) * (tp / seen), minlength=k) / failures
    ap[failures == 0] = np.nan
    return ap


def escape_rate(runs: pd.DataFrame, attempts: pd.DataFrame | None) -> dict[str, Any]:
    """Share of runs that met a failed task attempt and still completed (retries/fallbacks worked).

    Exactly: among the ended runs of ``runs`` (state COMPLETED, FAILED, CRASHED, CANCELLED or TIMEDOUT)
    that have at least one row in ``attempts`` with outcome ``failure`` or ``timeout``,
    ``ER = runs in state COMPLETED / all of them``. ``ER`` is ``None`` when ``attempts`` is ``None`` or
    holds no row for these runs (imported run-level history has no attempt telemetry), or when no run met a
    failed attempt. Returns ``runs_with_attempts`` (runs with any attempt row), ``runs_with_failed_attempt``
    (the denominator), ``escaped_runs`` (the numerator) and ``ER``.

    Example::

        >>> runs = pd.DataFrame({"flow_run_id": ["a", "b", "c"],
        ...                      "state": ["COMPLETED", "FAILED", "COMPLETED"]})
        >>> attempts = pd.DataFrame({"flow_run_id": ["a", "a", "b", "c"],
        ...                          "outcome": ["failure", "success", "timeout", "success"]})
        >>> escape_rate(runs, attempts)["ER"]
        0.5
    """
    ended = runs.loc[runs["state"].astype(str).isin(FINAL_STATES), ["flow_run_id", "state"]]
    if attempts is None or attempts.empty:
        return {"runs_with_attempts": 0, "runs_with_failed_attempt": 0, "escaped_runs": 0, "ER": None}
    mine = attempts.loc[attempts["flow_run_id"].isin(ended["flow_run_id"]), ["flow_run_id", "outcome"]]
    with_attempts = int(mine["flow_run_id"].nunique())
    met = set(mine.loc[mine["outcome"].astype(str).isin(FAILED_ATTEMPT_OUTCOMES), "flow_run_id"])
    hit = ended[ended["flow_run_id"].isin(met)]
    escaped = int((hit["state"].astype(str) == "COMPLETED").sum())
    return {
        "runs_with_attempts": with_attempts,
        "runs_with_failed_attempt": len(hit),
        "escaped_runs": escaped,
        "ER": _ratio(escaped, len(hit)) if with_attempts else None,
    }


__all__ = [
    "FAILED_ATTEMPT_OUTCOMES",
    "FINAL_STATES",
    "OPERATING_POINT_TOLERANCE",
    "average_precision_by_group",
    "best_wr",
    "escape_rate",
    "operating_point",
    "warning_metrics",
]
