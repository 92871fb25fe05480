"""Warn once per scheduled run: which forecast scores notify (an event), and which repeat an earlier warning.

The forecast scores every scheduled run again at each run of the forecast (hourly), so without a rule a run
scheduled for tomorrow would be warned about 24 times. A score **notifies** when it is at or above its
threshold and either

* no earlier score of the same run notified, or
* its risk rose by at least ``rise`` (``FOREWARN_FORECAST_RISE``, 0.1 by default) over the last score that
  notified, or
* it crossed into a higher :func:`risk_band` than that score's.

Which earlier score notified is not stored: it is recomputed from the run's recorded forecast scores
(``predictions`` rows, in time order) by the same rule (:func:`last_notified`). So changing ``rise`` also
changes which past scores count as warned; the scores themselves never change.

Example::

    >>> [notifies(r, 0.3, previous) for r, previous in [(0.4, None), (0.45, (0.4, 0.3)), (0.55, (0.4, 0.3))]]
    [True, False, True]
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from forewarn.store import TelemetryStore

RISK_BANDS: tuple[float, ...] = (0.5, 0.75, 0.9)
"""Risk levels above the threshold whose crossing warns again even by less than ``rise``."""


def risk_band(risk: float, threshold: float) -> int:
    """0 below ``threshold``; at or above it, 1 plus the :data:`RISK_BANDS` above the threshold that ``risk`` reached.

    Example::

        >>> [risk_band(r, 0.3) for r in (0.2, 0.3, 0.5, 0.8, 0.95)]
        [0, 1, 2, 3, 4]
    """
    if risk < threshold:
        return 0
    return 1 + sum(1 for level in RISK_BANDS if level > threshold and risk >= level)


def notifies(risk: float, threshold: float, previous: tuple[float, float] | None, rise: float = 0.1) -> bool:
    """Whether a score notifies, given the ``(risk, threshold)`` of the run's last score that did (or ``None``).

    Example::

        >>> notifies(0.2, 0.3, None), notifies(0.35, 0.3, None)
        (False, True)
        >>> notifies(0.49, 0.3, (0.4, 0.3)), notifies(0.5, 0.3, (0.45, 0.3))   # same band / a higher band
        (False, True)
    """
    if risk < threshold:
        return False
    if previous is None:
        return True
    last_risk, last_threshold = previous
    return risk >= last_risk + rise or risk_band(risk, threshold) > risk_band(last_risk, last_threshold)


def last_notified(scores: Iterable[tuple[float, float]], rise: float = 0.1) -> tuple[float, float] | None:
    """The ``(risk, threshold)`` of the last score that notified, replaying :func:`notifies` over one run's
    scores in time order; ``None`` when none did.

    Example::

        >>> last_notified([(0.2, 0.3), (0.4, 0.3), (0.45, 0.3), (0.6, 0.3)])
        (0.6, 0.3)
        >>> print(last_notified([(0.1, 0.3)]))
        None
    """
    previous: tuple[float, float] | None = None
    for risk, threshold in scores:
        if notifies(risk, threshold, previous, rise):
            previous = (risk, threshold)
    return previous


def forecast_notifications(store: TelemetryStore, table: pd.DataFrame, rise: float = 0.1) -> np.ndarray:
    """For each scored run of a forecast ``table`` (``flow_run_id``, ``risk``, ``threshold``), whether this
    score notifies, given the run's forecast scores already recorded in ``store`` (one read for all runs).

    Example::

        >>> import pandas as pd
        >>> from forewarn.store import TelemetryStore
        >>> table = pd.DataFrame({"flow_run_id": ["a", "b"], "risk": [0.6, 0.1], "threshold": [0.3, 0.3]})
        >>> forecast_notifications(TelemetryStore("sqlite://"), table).tolist()
        [True, False]
    """
    if table.empty:
        return np.zeros(0, dtype=bool)
    ids = sorted({str(i) for i in table["flow_run_id"]})
    earlier = store.predictions(flow_run_id=ids, source="forecast")
    previous = {
        str(run_id): last_notified(zip(group["risk"], group["threshold"], strict=True), rise)
        for run_id, group in earlier.groupby("flow_run_id", sort=False)
    }
    return np.array(
        [
            notifies(float(risk), float(threshold), previous.get(str(run_id)), rise)
            for run_id, risk, threshold in zip(table["flow_run_id"], table["risk"], table["threshold"], strict=True)
        ],
        dtype=bool,
    )


__all__ = ["RISK_BANDS", "forecast_notifications", "last_notified", "notifies", "risk_band"]
