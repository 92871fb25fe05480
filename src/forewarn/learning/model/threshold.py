"""The warning threshold: the risk at or above which a run is warned, chosen by a documented rule.

Example::

    >>> choose_threshold([1, 0, 0, 0], [0.9, 0.2, 0.1, 0.0], "budget", alert_budget=0.25)
    0.9
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from forewarn.errors import ConfigurationError

THRESHOLD_RULES: tuple[str, ...] = ("precision", "budget")
"""The rules :func:`choose_threshold` applies: reach a precision, or stay within an alert budget."""


def choose_threshold(
    y_true: Any,
    risk: Any,
    rule: str = "precision",
    *,
    target_precision: float = 0.5,
    alert_budget: float = 0.05,
) -> float:
    """The risk at or above which runs are warned, by a documented rule (a pure function).

    * ``"precision"``: the *lowest* threshold ``t`` (among the observed risks) at which the warned runs
      (``risk >= t``) have precision ``>= target_precision`` and include at least one failure. When no
      threshold reaches the target, it falls back to the ``"budget"`` rule.
    * ``"budget"``: the lowest threshold at which the share of runs warned (``risk >= t``) does not
      exceed ``alert_budget``: the top ``floor(alert_budget * n)`` risks, a group of tied risks only if it
      fits whole. If even the highest risk group is too large, the threshold lies just above the maximum
      risk and nothing is warned.

    NaN risks count as 0. An empty input gives ``inf`` (warn nothing).

    Example::

        >>> y = [1, 0, 1, 0, 0, 0, 0, 0, 0, 0]
        >>> r = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0]
        >>> choose_threshold(y, r, "precision", target_precision=0.6)
        0.7
        >>> choose_threshold(y, r, "budget", alert_budget=0.2)
        0.8
    """
    if rule not in THRESHOLD_RULES:
        raise ConfigurationError("threshold_rule", rule, f"one of {', '.join(map(repr, THRESHOLD_RULES))}")
    if not 0.0 < alert_budget <= 1.0:
        raise ConfigurationError("alert_budget", alert_budget, "a share of runs in (0, 1], e.g. 0.05")
    if not 0.0 < target_precision <= 1.0:
        raise ConfigurationError("target_precision", target_precision, "a precision in (0, 1], e.g. 0.5")
    y = np.asarray(y_true, dtype=float).astype(bool)
    r = np.nan_to_num(np.asarray(risk, dtype=float), nan=0.0)
    n = len(r)
    if n == 0:
        return math.inf
    order = np.argsort(-r, kind="stable")
    r_sorted, y_sorted = r[order], y[order]
    # the last index of each group of equal risks: warning at that risk warns everything up to it
    last = np.flatnonzero(np.r_[r_sorted[1:] != r_sorted[:-1], True])
    warned = last + 1
    if rule == "precision":
        tp = np.cumsum(y_sorted)[last]
        ok = (tp >= 1) & (tp >= target_precision * warned - 1e-12)
        if ok.any():
            return float(r_sorted[last[np.flatnonzero(ok)[-1]]])
    fits = warned <= alert_budget * n + 1e-9
    if not fits.any():
        return float(np.nextafter(r_sorted[0], math.inf))
    return float(r_sorted[last[np.flatnonzero(fits)[-1]]])


__all__ = ["THRESHOLD_RULES", "choose_threshold"]
