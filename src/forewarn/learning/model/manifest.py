"""The manifest of a saved model: what ``manifest.json`` says about it, and its round trip to JSON.

:class:`ModelManifest` records the model's features, threshold, training window, the artifact's SHA-256
and the library versions it was saved with; :mod:`forewarn.learning.model.artifacts` writes and reads it
beside the artifact. Parsing a manifest runs no code: it is JSON.

Example::

    >>> from forewarn.learning.features import FeatureSpec
    >>> spec_types(FeatureSpec(numeric=("flow_failure_rate",), categorical=("flow_name",)))
    {'flow_failure_rate': 'numeric', 'flow_name': 'categorical'}
"""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import joblib
import numpy as np
import pandas as pd

from forewarn.learning._json import jsonable
from forewarn.learning.features import FeatureSpec
from forewarn.learning.model.estimator import FailureWarningModel
from forewarn.model_files import MODEL_FILE

MANIFEST_FORMAT = 1


def spec_types(spec: FeatureSpec) -> dict[str, str]:
    """``{feature name: "numeric" | "categorical"}`` in ``spec.names`` order."""
    kinds = {**{c: "numeric" for c in spec.numeric}, **{c: "categorical" for c in spec.categorical}}
    return {name: kinds[name] for name in spec.names}


@dataclass(frozen=True)
class ModelManifest:
    """What ``manifest.json`` says about one saved model; ``to_json()``/``from_json()`` round-trip.

    ``feature_types`` maps each feature name (in training order) to ``"numeric"`` or ``"categorical"``;
    ``sha256`` is the checksum of ``model.joblib`` that :func:`load_model` verifies before unpickling.

    Example::

        >>> m = ModelManifest.from_json(manifest.to_json())  # doctest: +SKIP
    """

    version: str
    created_at: datetime
    family: str
    feature_types: dict[str, str]
    training_window: tuple[datetime, datetime]
    n_train_runs: int
    n_train_failures: int
    threshold: float
    threshold_rule: str
    threshold_params: dict[str, Any]
    sha256: str
    library_versions: dict[str, str]
    backtest_metrics: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    artifact: str = MODEL_FILE
    format: int = MANIFEST_FORMAT

    @classmethod
    def for_model(
        cls,
        model: FailureWarningModel,
        *,
        version: str,
        created_at: datetime,
        sha256: str,
        training_window: tuple[Any, Any],
        backtest_metrics: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> ModelManifest:
        """The manifest of fitted ``model``, saved as ``version`` in an artifact whose checksum is ``sha256``.

        The features, threshold and training counts come from the model; ``training_window`` bounds are
        stored in UTC, ``backtest_metrics`` and ``extra`` as JSON values, and the library versions are
        those installed now.
        """
        return cls(
            version=version,
            created_at=created_at,
            family=model.family,
            feature_types=spec_types(model.feature_spec_),
            training_window=(_utc(training_window[0]), _utc(training_window[1])),
            n_train_runs=int(model.n_train_runs_),
            n_train_failures=int(model.n_train_failures_),
            threshold=float(model.threshold_),
            threshold_rule=model.threshold_rule,
            threshold_params={
                "target_precision": model.target_precision,
                "alert_budget": model.alert_budget,
                "threshold_holdout": model.threshold_holdout,
                "source": model.threshold_source_,
                "threshold_slices": getattr(model, "threshold_slices", 1),
                "slice_thresholds": jsonable([float(t) for t in getattr(model, "slice_thresholds_", ())]),
            },
            sha256=sha256,
            library_versions=library_versions(),
            backtest_metrics=jsonable(dict(backtest_metrics)) if backtest_metrics is not None else None,
            extra=jsonable(dict(extra or {})),
        )

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Feature names in the order the model was trained on."""
        return tuple(self.feature_types)

    @property
    def feature_spec(self) -> FeatureSpec:
        """The :class:`~forewarn.learning.features.FeatureSpec` the model was trained on, rebuilt from the manifest."""
        kinds = self.feature_types.items()
        return FeatureSpec(
            numeric=tuple(n for n, t in kinds if t == "numeric"),
            categorical=tuple(n for n, t in kinds if t == "categorical"),
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (times as ISO 8601 text, NaN as ``None``)."""
        return jsonable(
            {
                "format": self.format,
                "version": self.version,
                "created_at": self.created_at,
                "artifact": self.artifact,
                "sha256": self.sha256,
                "family": self.family,
                "feature_names": list(self.feature_types),
                "feature_types": self.feature_types,
                "training_window": {"start": self.training_window[0], "end": self.training_window[1]},
                "n_train_runs": self.n_train_runs,
                "n_train_failures": self.n_train_failures,
                "threshold": self.threshold,
                "threshold_rule": self.threshold_rule,
                "threshold_params": self.threshold_params,
                "library_versions": self.library_versions,
                "backtest_metrics": self.backtest_metrics,
                "extra": self.extra,
            }
        )

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str | bytes) -> ModelManifest:
        """Parse what :meth:`to_json` produced (a dict, or its JSON text)."""
        if isinstance(data, (str, bytes)):
            data = json.loads(data)
        assert isinstance(data, Mapping)
        window = data["training_window"]
        return cls(
            version=data["version"],
            created_at=_parse_time(data["created_at"]),
            family=data["family"],
            feature_types=dict(data["feature_types"]),
            training_window=(_parse_time(window["start"]), _parse_time(window["end"])),
            n_train_runs=int(data["n_train_runs"]),
            n_train_failures=int(data["n_train_failures"]),
            threshold=float(data["threshold"]) if data["threshold"] is not None else math.inf,
            threshold_rule=data["threshold_rule"],
            threshold_params=dict(data.get("threshold_params") or {}),
            sha256=data["sha256"],
            library_versions=dict(data.get("library_versions") or {}),
            backtest_metrics=data.get("backtest_metrics"),
            extra=dict(data.get("extra") or {}),
            artifact=data.get("artifact", MODEL_FILE),
            format=int(data.get("format", MANIFEST_FORMAT)),
        )


def _parse_time(text: str) -> datetime:
    t = datetime.fromisoformat(text)
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _utc(t: Any) -> datetime:
    ts = pd.Timestamp(t)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.to_pydatetime()


def library_versions() -> dict[str, str]:
    """Versions of forewarn and the libraries a saved model depends on, plus Python's."""
    from importlib.metadata import PackageNotFoundError, version

    import sklearn

    try:
        fw = version("forewarn")
    except PackageNotFoundError:  # a source tree that was never installed
        fw = "0.0.0"
    return {
        "forewarn": fw,
        "scikit-learn": sklearn.__version__,
        "pandas": pd.__version__,
        "numpy": np.__version__,
        "joblib": joblib.__version__,
        "python": platform.python_version(),
    }


__all__ = ["MANIFEST_FORMAT", "ModelManifest", "library_versions", "spec_types"]
