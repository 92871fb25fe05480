"""Saved models: the manifest, and saving and loading with a verified checksum.

The directory layout is defined once, in :mod:`forewarn.model_files` (re-exported here)::

    <dir>/<version>/model.joblib     the pickled FailureWarningModel (MODEL_FILE)
    <dir>/<version>/manifest.json    what it is, how it was trained, its SHA-256 (MANIFEST_FILE)
    <dir>/latest.json                which version is installed (LATEST_FILE)

:func:`save_model` writes a version directory and then points ``latest.json`` at it; :func:`load_model`
verifies the artifact's SHA-256 *before* unpickling it and refuses a model trained on other features.

Example::

    >>> version_dir("models", "20261128T162300Z-ab12cd34") / MODEL_FILE
    PosixPath('models/20261128T162300Z-ab12cd34/model.joblib')
    >>> latest_pointer("20261128T162300Z-ab12cd34", datetime(2026, 11, 28, 16, 23, tzinfo=timezone.utc))["manifest"]
    '20261128T162300Z-ab12cd34/manifest.json'
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import platform
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from forewarn.errors import ChecksumMismatchError, FeatureSchemaError, ModelError
from forewarn.learning._json import jsonable
from forewarn.learning.features import FeatureSpec
from forewarn.learning.model.estimator import FailureWarningModel
from forewarn.model_files import LATEST_FILE, MANIFEST_FILE, MODEL_FILE, latest_file, latest_pointer, version_dir

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


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then ``os.replace`` it into place."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_model(
    model: FailureWarningModel,
    directory: Path | str,
    *,
    training_window: tuple[datetime, datetime],
    backtest_metrics: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> ModelManifest:
    """Save a fitted model as ``<directory>/<version>/{model.joblib,manifest.json}``; point latest.json at it.

    The version directory is assembled under a temporary name and renamed into place, and
    ``latest.json`` is replaced atomically last, so a half-written model is never "latest".
    ``version`` is ``<UTC time>-<first 8 hex digits of the artifact's SHA-256>``,
    e.g. ``20261128T162300Z-ab12cd34``.

    Example::

        >>> manifest = save_model(model, Path("models"), training_window=(t0, t1))  # doctest: +SKIP
        >>> manifest.version  # doctest: +SKIP
        '20261128T162300Z-ab12cd34'
    """
    check_is_fitted(model, "pipeline_")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    joblib.dump(model, buffer, compress=3)
    blob = buffer.getvalue()
    digest = _sha256(blob)
    created = datetime.now(timezone.utc).replace(microsecond=0)
    version = _unused_version(directory, f"{created:%Y%m%dT%H%M%SZ}-{digest[:8]}")
    manifest = ModelManifest.for_model(
        model,
        version=version,
        created_at=created,
        sha256=digest,
        training_window=training_window,
        backtest_metrics=backtest_metrics,
        extra=extra,
    )
    _write_version_dir(directory, version, blob, manifest)
    pointer = latest_pointer(version, created)
    _write_atomic(latest_file(directory), (json.dumps(pointer, indent=2) + "\n").encode())
    return manifest


def _unused_version(directory: Path, version: str) -> str:
    """``version``, or ``version-2``, ``version-3``... if a directory of that name exists (two saves in a second)."""
    candidate, n = version, 1
    while version_dir(directory, candidate).exists():
        n += 1
        candidate = f"{version}-{n}"
    return candidate


def _write_version_dir(directory: Path, version: str, blob: bytes, manifest: ModelManifest) -> None:
    """Write the artifact and its manifest under a temporary name, fsync both, then rename it into place."""
    staging = directory / f".staging-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        (staging / MODEL_FILE).write_bytes(blob)
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
        for name in (MODEL_FILE, MANIFEST_FILE):
            with open(staging / name, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(staging, version_dir(directory, version))
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _no_model(where: Path) -> ModelError:
    return ModelError(f"no model in {where}: run `forewarn train` first", path=where)


def _manifest_path(path: Path) -> Path:
    """The manifest.json that ``path`` (models dir, version dir, manifest or latest.json) designates."""
    if path.is_dir():
        if (path / MANIFEST_FILE).is_file():
            return path / MANIFEST_FILE
        if (path / LATEST_FILE).is_file():
            return _manifest_path(path / LATEST_FILE)
        raise _no_model(path)
    if not path.is_file():
        raise _no_model(path)
    if path.name != LATEST_FILE:
        return path
    try:
        pointer = json.loads(path.read_text())
        target = path.parent / pointer["manifest"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(
            f"{path} is not a valid pointer to a model ({exc}); retrain with `forewarn train`", path=path
        ) from exc
    if not target.is_file():
        raise ModelError(
            f"{path} points to {pointer['manifest']}, which is missing; retrain with `forewarn train`",
            path=target,
        )
    return target


def schema_differences(trained: Mapping[str, str], offered: Mapping[str, str]) -> dict[str, list[str]]:
    """Features ``missing`` from / ``extra`` in the offered schema and those whose type ``changed``."""
    return {
        "missing": [n for n in trained if n not in offered],
        "extra": [n for n in offered if n not in trained],
        "changed": [
            f"{n} ({trained[n]} -> {offered[n]})" for n in trained if n in offered and trained[n] != offered[n]
        ],
    }


def load_model(
    path_or_dir: Path | str,
    *,
    expected_spec: FeatureSpec | None = None,
) -> tuple[FailureWarningModel, ModelManifest]:
    """Load a saved model after verifying its checksum (and its feature schema, if ``expected_spec``).

    ``path_or_dir`` may be the models directory (``latest.json`` is followed), one version directory, or
    a ``manifest.json``. The artifact's bytes are read once and hashed; on a mismatch with the manifest
    :class:`~forewarn.errors.ChecksumMismatchError` is raised and nothing is unpickled. With
    ``expected_spec``, a model trained on other feature names or types is refused with
    :class:`~forewarn.errors.FeatureSchemaError` (also before unpickling).

    Example::

        >>> model, manifest = load_model(Path("models"))  # doctest: +SKIP
    """
    manifest_path = _manifest_path(Path(path_or_dir))
    try:
        manifest = ModelManifest.from_json(manifest_path.read_text())
    except (ValueError, KeyError, TypeError, AssertionError) as exc:
        raise ModelError(
            f"{manifest_path} is not a readable forewarn manifest ({exc}); retrain with `forewarn train`",
            path=manifest_path,
        ) from exc
    artifact = manifest_path.parent / manifest.artifact
    if not artifact.is_file():
        raise ModelError(f"{artifact} is missing; retrain with `forewarn train`", path=artifact)
    blob = artifact.read_bytes()
    actual = _sha256(blob)
    if actual != manifest.sha256:
        raise ChecksumMismatchError(
            f"{artifact}: SHA-256 {actual} differs from {manifest.sha256} in its manifest; the file was "
            "changed or damaged after it was saved and was NOT loaded. Restore it or retrain with "
            "`forewarn train`.",
            path=artifact,
        )
    if expected_spec is not None:
        diff = schema_differences(manifest.feature_types, spec_types(expected_spec))
        if any(diff.values()):
            parts = [f"{k}: {', '.join(v)}" for k, v in diff.items() if v]
            raise FeatureSchemaError(
                f"model {manifest.version} was trained on other features than these ({'; '.join(parts)}); "
                "retrain with `forewarn train`",
                path=artifact,
            )
    model = joblib.load(io.BytesIO(blob))
    if not isinstance(model, FailureWarningModel):
        raise ModelError(f"{artifact} holds a {type(model).__name__}, not a FailureWarningModel", path=artifact)
    return model, manifest


__all__ = [
    "LATEST_FILE",
    "MANIFEST_FILE",
    "MANIFEST_FORMAT",
    "MODEL_FILE",
    "ModelManifest",
    "latest_file",
    "latest_pointer",
    "library_versions",
    "load_model",
    "save_model",
    "schema_differences",
    "spec_types",
    "version_dir",
]
