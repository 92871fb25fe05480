"""What the features are and how far back they look: the feature names, :class:`FeatureConfig`, :class:`FeatureSpec`.

The names are fixed (they never depend on the data), in the order :func:`~forewarn.learning.features.build_features`
writes them; ``docs/features.md`` defines each one and says why it should hold for real schedulers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from forewarn.errors import ConfigurationError, FeatureSchemaError
from forewarn.learning.features._columns import text

BASELINE_LAST_FAILED = "flow_last_ended_failed"
"""0/1 feature: the flow's last ended run with an outcome (``CANCELLED`` skipped) failed."""

BASELINE_SMOOTHED_RATE = "flow_failure_rate_smoothed"
"""The flow's past failure rate in the lookback, smoothed toward the global rate."""

CATEGORICAL_FEATURES: tuple[str, ...] = ("flow_name", "deployment")
"""Engineered categorical features; text ``feature_*`` columns are added after them."""

NUMERIC_FEATURES: tuple[str, ...] = (
    "hour_sin",
    "hour_cos",
    "dow_sin",
    "dow_cos",
    "hour_of_week",
    "days_to_month_end",
    "parameter_count",
    "parameters_changed",
    "parameters_runs_seen",
    "flow_runs_seen",
    BASELINE_SMOOTHED_RATE,
    "flow_failure_rate_recent",
    "flow_failure_streak",
    "flow_success_streak",
    BASELINE_LAST_FAILED,
    "flow_hours_since_failure",
    "flow_duration_trend",
    "flow_hours_since_end",
    "flow_usual_gap_hours",
    "flow_gap_ratio",
    "flow_failure_gap_ratio",
    "flow_runs_ended_hour",
    "version_changed",
    "version_runs_seen",
    "version_failure_rate_smoothed",
    "global_failure_rate",
    "global_failure_rate_window",
    "other_flows_failures_window",
    "partner_failures_window",
    "attempts_failed_window",
    "flow_attempts_failed_window",
    "attempts_timeout_window",
    "attempts_connection_window",
    "attempts_resource_window",
)
"""Engineered numeric features, in output order; numeric ``feature_*`` columns are added after them."""

EXCEPTION_FAMILIES: dict[str, str] = {
    "timeout": r"timeout|timed.?out|deadline",
    "connection": r"connect|network|socket|unreachable|refused|reset|dns|unavailable|broken.?pipe|http",
    "resource": r"memory|oom|disk|quota|resource|space|killed",
}
"""Regular expressions (case-insensitive, on ``exception_type``) for the exception families counted."""


@dataclass(frozen=True, slots=True)
class FeatureConfig:
    """How far back the features look. Immutable; make a new one to change a value.

    Example::

        >>> FeatureConfig(recent_runs=20).lookback
        datetime.timedelta(days=30)
    """

    lookback: timedelta = timedelta(days=30)
    """History known earlier than ``cutoff - lookback`` is ignored."""
    recent_runs: int = 10
    """Window (in ended runs) for the recent failure rate and the duration trend; caps the run counts."""
    global_window: timedelta = timedelta(hours=6)
    """Window for cross-flow and task-attempt signals; at most ``lookback``."""
    prior_strength: float = 5.0
    """Pseudo-runs pulling a flow's failure rate toward the global rate (0 = no smoothing)."""

    def __post_init__(self) -> None:
        if not isinstance(self.lookback, timedelta) or self.lookback <= timedelta(0):
            raise ConfigurationError("lookback", self.lookback, "a positive timedelta, e.g. timedelta(days=30)")
        recent = self.recent_runs
        if isinstance(recent, bool) or not isinstance(recent, int) or recent < 1:
            raise ConfigurationError("recent_runs", self.recent_runs, "a whole number >= 1, e.g. 10")
        window = self.global_window
        if not isinstance(window, timedelta) or not timedelta(0) < window <= self.lookback:
            raise ConfigurationError(
                "global_window",
                self.global_window,
                f"a positive timedelta <= lookback ({self.lookback}), e.g. timedelta(hours=6)",
            )
        if not np.isfinite(self.prior_strength) or self.prior_strength < 0:
            raise ConfigurationError("prior_strength", self.prior_strength, "a number >= 0, e.g. 5.0")

    def to_dict(self) -> dict[str, float | int]:
        """JSON-ready form, stored in a model manifest so live scoring uses the windows training used.

        Example::

            >>> FeatureConfig.from_dict(FeatureConfig(recent_runs=20).to_dict()).recent_runs
            20
        """
        return {
            "lookback_seconds": self.lookback.total_seconds(),
            "recent_runs": self.recent_runs,
            "global_window_seconds": self.global_window.total_seconds(),
            "prior_strength": self.prior_strength,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> FeatureConfig:
        """The inverse of :meth:`to_dict`; absent values take the defaults (manifests written before it)."""
        data = data or {}
        default = cls()
        return cls(
            lookback=timedelta(seconds=float(data.get("lookback_seconds", default.lookback.total_seconds()))),
            recent_runs=int(data.get("recent_runs", default.recent_runs)),
            global_window=timedelta(
                seconds=float(data.get("global_window_seconds", default.global_window.total_seconds()))
            ),
            prior_strength=float(data.get("prior_strength", default.prior_strength)),
        )


DEFAULT_CONFIG = FeatureConfig()
"""The default :class:`FeatureConfig`, the default argument of the functions that take one."""


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """Which feature columns are numeric and which categorical; ``names`` is numeric then categorical.

    Save it with a model (:meth:`as_dict`) and use :meth:`coerce` to hand a scoring frame to it in the same
    shape and types, whatever dtypes the frame came with.

    Example::

        >>> spec = FeatureSpec(numeric=("a",), categorical=("c",))
        >>> spec.names
        ('a', 'c')
        >>> X = spec.coerce(pd.DataFrame({"c": [None], "a": ["1.5"], "unused": [0]}))
        >>> X.to_dict("list")
        {'a': [1.5], 'c': ['<none>']}
    """

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """All feature names: the numeric ones, then the categorical ones."""
        return self.numeric + self.categorical

    def as_dict(self) -> dict[str, list[str]]:
        """A JSON-ready form, for a model manifest."""
        return {"numeric": list(self.numeric), "categorical": list(self.categorical)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        """The inverse of :meth:`as_dict`."""
        return cls(numeric=tuple(data["numeric"]), categorical=tuple(data["categorical"]))

    def coerce(self, features: pd.DataFrame) -> pd.DataFrame:
        """``features`` reduced to :attr:`names`: numeric as float64, categorical as text with ``<none>``.

        Raises :class:`~forewarn.errors.FeatureSchemaError` naming the columns that are missing.
        """
        missing = [c for c in self.names if c not in features.columns]
        if missing:
            raise FeatureSchemaError(
                f"the features lack column(s) {', '.join(missing)} that the model was trained on; build them "
                "with forewarn.learning.features.build_features using the same feature_* columns as in training"
            )
        out = {c: pd.to_numeric(features[c], errors="coerce").astype(np.float64) for c in self.numeric}
        for c in self.categorical:
            out[c] = pd.Series(text(features[c]), index=features.index, dtype=object)
        return pd.DataFrame(out, index=features.index, columns=list(self.names))


def feature_spec(features: pd.DataFrame) -> FeatureSpec:
    """The :class:`FeatureSpec` of a frame made by :func:`build_features`: numeric dtypes are numeric.

    Example::

        >>> feature_spec(pd.DataFrame({"x": [1.0], "flow_name": ["etl"]}))
        FeatureSpec(numeric=('x',), categorical=('flow_name',))
    """
    numeric, categorical = [], []
    for name in features.columns:
        dtype = features[name].dtype
        if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
            numeric.append(str(name))
        else:
            categorical.append(str(name))
    return FeatureSpec(numeric=tuple(numeric), categorical=tuple(categorical))
