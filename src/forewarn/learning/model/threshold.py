"""The warning threshold: the risk at or above which a run is warned, chosen by a documented rule.

Example::

    >>> choose_threshold([1, 0, 0, 0], [0.9, 0.2, 0.1, 0.0], "budget", alert_budget=0.25)
    0.9
"""

from __future__ import annotations

import itertools
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


MIN_SLICE_FAILURES = 10
"""A validation slice holds at least this many failures, so one slice's threshold is not one failure's risk."""


def time_slices(y_true: Any, n_slices: int, *, min_failures: int = MIN_SLICE_FAILURES) -> list[slice]:
    """Up to ``n_slices`` consecutive slices of equal length over time-ordered labels, each with enough failures.

    Fewer slices are cut when the labels hold fewer than ``n_slices * min_failures`` failures (never fewer
    than one slice: all of them).

    Example::

        >>> time_slices([1, 0] * 20, 4, min_failures=5)
        [slice(0, 10, None), slice(10, 20, None), slice(20, 30, None), slice(30, 40, None)]
        >>> time_slices([1, 0] * 20, 4, min_failures=8)
        [slice(0, 20, None), slice(20, 40, None)]
    """
    if isinstance(n_slices, bool) or not isinstance(n_slices, int) or n_slices < 1:
        raise ConfigurationError("threshold_slices", n_slices, "a whole number >= 1, e.g. 4")
    y = np.asarray(y_true, dtype=float)
    k = max(1, min(n_slices, int(np.nansum(y)) // max(1, min_failures)))
    bounds = [len(y) * i // k for i in range(k + 1)]
    return [slice(lo, hi) for lo, hi in itertools.pairwise(bounds)]


def choose_threshold_over_slices(
    y_true: Any,
    risk: Any,
    rule: str = "precision",
    *,
    n_slices: int = 4,
    target_precision: float = 0.5,
    alert_budget: float = 0.05,
) -> tuple[float, list[float]]:
    """The median of :func:`choose_threshold` over consecutive time slices, and each slice's threshold.

    ``y_true`` and ``risk`` are in time order (out-of-time risks of a validation period). The period is cut
    into :func:`time_slices` (up to ``n_slices``, each with at least :data:`MIN_SLICE_FAILURES` failures),
    the rule picks a threshold in each, and the median is the threshold. One slice whose precision curve
    happens to come back above the target deep in its tail (or whose riskiest runs all came true) moves
    the median little, where it would move a threshold chosen on the pooled period all the way. A slice
    with no finite threshold (nothing could be warned) counts as warning nothing, ``inf``.

    Example::

        >>> y = [1, 0, 0, 0] * 10 + [1, 1, 0, 0] * 10
        >>> r = [0.9, 0.5, 0.2, 0.1] * 10 + [0.9, 0.5, 0.2, 0.1] * 10
        >>> choose_threshold_over_slices(y, r, n_slices=2, target_precision=0.6)
        (0.55, [0.9, 0.2])
    """
    y = np.asarray(y_true, dtype=float)
    r = np.asarray(risk, dtype=float)
    per_slice = [
        choose_threshold(y[s], r[s], rule, target_precision=target_precision, alert_budget=alert_budget)
        for s in time_slices(y, n_slices)
    ]
    return float(np.median(per_slice)), per_slice


__all__ = ["MIN_SLICE_FAILURES", "THRESHOLD_RULES", "choose_threshold", "choose_threshold_over_slices", "time_slices"]
