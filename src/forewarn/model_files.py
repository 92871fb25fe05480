"""Where a trained model lives on disk: the models directory layout, defined once.

::

    <dir>/<version>/model.joblib     the pickled FailureWarningModel (MODEL_FILE)
    <dir>/<version>/manifest.json    what it is, how it was trained, its SHA-256 (MANIFEST_FILE)
    <dir>/<version>/manifest.hmac    HMAC-SHA256 of the manifest and the artifact (SIGNATURE_FILE)
    <dir>/latest.json                which version is installed (LATEST_FILE)

The learning layer writes this layout (:func:`forewarn.learning.model.save_model`); the scoring layer and
the Prefect pre-run hook read it. It is a shared root module, importing nothing but the standard library,
so the hook can ask "is a model installed?" without loading pandas or scikit-learn.

Example::

    >>> version_dir("models", "20261128T162300Z-ab12cd34") / MODEL_FILE
    PosixPath('models/20261128T162300Z-ab12cd34/model.joblib')
    >>> from datetime import datetime, timezone
    >>> latest_pointer("20261128T162300Z-ab12cd34", datetime(2026, 11, 28, 16, 23, tzinfo=timezone.utc))["manifest"]
    '20261128T162300Z-ab12cd34/manifest.json'
    >>> model_installed("/nonexistent/models")
    False
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

MODEL_FILE = "model.joblib"
"""The pickled model inside a version directory."""

MANIFEST_FILE = "manifest.json"
"""The manifest inside a version directory."""

SIGNATURE_FILE = "manifest.hmac"
"""The HMAC-SHA256 (hex) over the manifest and the artifact, keyed outside the models directory."""

LATEST_FILE = "latest.json"
"""The pointer to the installed version, in the models directory."""


def version_dir(models_dir: Path | str, version: str) -> Path:
    """The directory that holds saved model ``version``: ``<models_dir>/<version>``."""
    return Path(models_dir) / version


def latest_file(models_dir: Path | str) -> Path:
    """The pointer to the installed model: ``<models_dir>/latest.json``."""
    return Path(models_dir) / LATEST_FILE


def latest_pointer(version: str, updated_at: datetime) -> dict[str, str]:
    """What ``latest.json`` holds when it points at ``version``: the manifest's path relative to the directory."""
    return {"version": version, "manifest": f"{version}/{MANIFEST_FILE}", "updated_at": updated_at.isoformat()}


def model_installed(model_dir: Path | str) -> bool:
    """True when ``model_dir`` holds a model pointer (``latest.json``) or is a model's version directory.

    A stat or two: the pre-run hook's first step, before anything heavy is imported.
    """
    directory = Path(model_dir)
    return latest_file(directory).is_file() or (directory / MANIFEST_FILE).is_file()


__all__ = [
    "LATEST_FILE",
    "MANIFEST_FILE",
    "MODEL_FILE",
    "SIGNATURE_FILE",
    "latest_file",
    "latest_pointer",
    "model_installed",
    "version_dir",
]
