"""Make metric and manifest values fit for JSON: one definition, used by metrics, backtest and model files.

Example::

    >>> import numpy as np
    >>> jsonable({"wr": np.float64(0.5), "auc": float("nan"), "n": np.int64(3)})
    {'wr': 0.5, 'auc': None, 'n': 3}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd


def jsonable(value: Any) -> Any:
    """``value`` with NaN/inf turned into ``None``, numpy scalars into Python ones, times into ISO text."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else None
    if value is None or value is pd.NaT or (isinstance(value, type(pd.NA)) and value is pd.NA):
        return None
    if isinstance(value, pd.Timedelta):
        return value.total_seconds()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


__all__ = ["jsonable"]
