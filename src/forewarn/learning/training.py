"""Train the failure-warning model on run history and save it with its manifest.

This is the whole training job, Prefect-free so a notebook can run it: build the leakage-free feature
table (:func:`forewarn.learning.features.build_features`), run a walk-forward backtest so the manifest carries
quality figures measured on runs the model never trained on, fit the final model on every labelled run,
and save it (:func:`forewarn.learning.model.save_model`). ``flows/training.py`` and ``forewarn train`` are thin
faces over :func:`train_and_save`.

Example::

    >>> from forewarn.history.simulate import simulate_history, history_to_runs_frame
    >>> runs = history_to_runs_frame(simulate_history(6000, seed=1))
    >>> key = configured_model_key(create=True)  # doctest: +SKIP
    >>> result = train_and_save(runs, model_dir=tmp_path, key=key, n_folds=2)  # doctest: +SKIP
    >>> result.manifest.version  # doctest: +SKIP
    '20261128T170100Z-1a2b3c4d'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from forewarn.learning.backtest import BacktestResult, prepare_history, walk_forward_backtest
from forewarn.learning.drift import reference_rows, risk_reference
from forewarn.learning.features import FeatureConfig
from forewarn.learning.model import DEFAULT_FAMILY, FailureWarningModel, ModelKey, ModelManifest, save_model


@dataclass(frozen=True, slots=True)
class TrainingResult:
    """What :func:`train_and_save` produced: the saved model's manifest and the backtest behind it."""

    manifest: ModelManifest
    backtest: BacktestResult | None
    path: Path


def train_and_save(
    runs: pd.DataFrame,
    attempts: pd.DataFrame | None = None,
    *,
    model_dir: Path | str,
    key: ModelKey | bytes | str,
    family: str = DEFAULT_FAMILY,
    model_params: Mapping[str, Any] | None = None,
    backtest: bool = True,
    n_folds: int = 5,
    feature_config: FeatureConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> TrainingResult:
    """Fit the model on all labelled ``runs`` and save it under ``model_dir``; return its manifest.

    With ``backtest=True`` (the default) a walk-forward backtest runs first on the same history, and its
    overall figures (model and baselines) go into the manifest's ``backtest_metrics``. ``feature_config``
    (default :class:`~forewarn.learning.features.FeatureConfig`) is saved in the manifest, so live scoring computes
    the features with the same windows, and so is the distribution of the final model's risks over its
    training runs (``extra["risk_reference"]``; a seeded sample of :data:`~forewarn.learning.drift.REFERENCE_SAMPLE`
    of them in a longer history), which live monitoring compares live risks with.
    The model is signed with ``key`` (``forewarn train`` passes :func:`forewarn.scoring.configured_model_key`,
    which creates the key file if there is none).
    Raises :class:`~forewarn.errors.InsufficientHistoryError` when there are too few runs or failures.
    """
    config = feature_config or FeatureConfig()
    prepared = prepare_history(runs, attempts, feature_config=config)  # features once, for both uses
    result = None
    if backtest:
        result = walk_forward_backtest(
            runs,
            attempts,
            n_folds=n_folds,
            family=family,
            model_params=model_params,
            feature_config=config,
            progress=progress,
            prepared=prepared,
        )
    model = FailureWarningModel(family=family, **dict(model_params or {})).fit(prepared.X, prepared.y)
    first, last = (pd.Timestamp(int(t), tz="UTC").to_pydatetime() for t in (prepared.sched[0], prepared.sched[-1]))
    manifest = save_model(
        model,
        Path(model_dir),
        training_window=(first, last),
        backtest_metrics=result.to_json()["overall"] if result is not None else None,
        extra={
            "n_folds": n_folds if backtest else 0,
            "feature_config": config.to_dict(),
            # the final model's risks on its own training runs (a sample above REFERENCE_SAMPLE): live
            # monitoring's reference for the risk PSI
            "risk_reference": risk_reference(model.risk(prepared.X.iloc[reference_rows(len(prepared.X))])).to_json(),
        },
        key=key,
    )
    return TrainingResult(manifest=manifest, backtest=result, path=Path(model_dir) / manifest.version)


__all__ = ["TrainingResult", "train_and_save"]
