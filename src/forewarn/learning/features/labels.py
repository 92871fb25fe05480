"""What a run's outcome was, as the model learns it: 1.0 failed, 0.0 completed, NaN for anything else."""

from __future__ import annotations

import numpy as np
import pandas as pd

from forewarn.learning.features._columns import cased, require, text
from forewarn.records import FAILURE_STATES, RunState

SUCCESS_STATE = RunState.COMPLETED.value
"""The one state that counts as a success; ``CANCELLED`` runs are neither successes nor failures."""


def failure_labels(runs: pd.DataFrame) -> pd.Series:
    """1.0 for failed runs (``FAILED``/``CRASHED``/``TIMEDOUT``), 0.0 for ``COMPLETED``, NaN otherwise.

    Indexed by ``flow_run_id``, named ``failed``.

    Example::

        >>> runs = pd.DataFrame({"flow_run_id": ["a", "b", "c"],
        ...                      "state": ["completed", "CRASHED", "CANCELLED"]})
        >>> failure_labels(runs).tolist()
        [0.0, 1.0, nan]
    """
    require(runs, ("flow_run_id", "state"), "runs")
    state = cased(runs["state"])
    out = np.full(len(runs), np.nan)
    out[np.isin(state, list(FAILURE_STATES))] = 1.0
    out[state == SUCCESS_STATE] = 0.0
    return pd.Series(out, index=pd.Index(text(runs["flow_run_id"]), name="flow_run_id", dtype=object), name="failed")
