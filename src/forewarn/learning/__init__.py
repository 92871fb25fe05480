"""The learning core: features, the failure-warning model, metrics, backtest and training.

Owns: leakage-free features from a run history (``features``), the scikit-learn pipeline, its warning
threshold and saved artifacts (``model``), the metric definitions (``metrics``, ``report``), the
walk-forward backtest and training. May import: pandas, numpy, scikit-learn, joblib and the shared modules
at the package root. Never Prefect and never the store: it works on DataFrames, so notebooks and tests use
it bare, and the scoring layer feeds it from the store.

Example::

    >>> import pandas as pd
    >>> from forewarn.learning import escape_rate
    >>> runs = pd.DataFrame({"flow_run_id": ["a", "b"], "state": ["COMPLETED", "FAILED"]})
    >>> attempts = pd.DataFrame({"flow_run_id": ["a", "b"], "outcome": ["failure", "failure"]})
    >>> escape_rate(runs, attempts)["ER"]
    0.5
"""

import forewarn.learning._openmp  # noqa: F401  (first: OpenMP's wait policy, before scikit-learn loads)
from forewarn.learning.backtest import BacktestResult, walk_forward_backtest
from forewarn.learning.features import FeatureConfig, build_features, failure_labels
from forewarn.learning.metrics import escape_rate, warning_metrics
from forewarn.learning.model import FailureWarningModel, ModelKey, ModelManifest, load_model, save_model
from forewarn.learning.report import reliability_report
from forewarn.learning.training import TrainingResult, train_and_save

__all__ = [
    "BacktestResult",
    "FailureWarningModel",
    "FeatureConfig",
    "ModelKey",
    "ModelManifest",
    "TrainingResult",
    "build_features",
    "escape_rate",
    "failure_labels",
    "load_model",
    "reliability_report",
    "save_model",
    "train_and_save",
    "walk_forward_backtest",
    "warning_metrics",
]
