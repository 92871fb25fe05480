"""The model registry: which failure-warning model is installed, loaded once per process and checked.

A model directory (``FOREWARN_MODEL_DIR``) holds the versions :func:`forewarn.learning.model.save_model`
wrote and the pointer to the current one; :mod:`forewarn.learning.model` owns that layout
(``LATEST_FILE``, ``MANIFEST_FILE``). :func:`load_current_model` finds the installed model, refuses one
trained on features this forewarn does not build (:func:`check_feature_schema`, before anything is
unpickled) or not signed with the configured key (:func:`configured_model_key`), and keeps it per process
by directory, manifest and checksum, so scoring the same model again costs two small JSON reads. A
model's :class:`~forewarn.learning.features.FeatureConfig` travels in its manifest
(:func:`feature_config_of`, :func:`feature_config_dict`).

Example::

    >>> load_current_model("/nonexistent/models") is None     # no model installed: nothing to score with
    True
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

from forewarn.errors import FeatureSchemaError
from forewarn.learning.features import (
    CATEGORICAL_FEATURES,
    NUMERIC_FEATURES,
    FeatureConfig,
    is_attribute_history_feature,
)
from forewarn.learning.model import (
    LATEST_FILE,
    MANIFEST_FILE,
    FailureWarningModel,
    ModelKey,
    ModelManifest,
    load_model,
    model_key,
    refuse_key_file_inside,
)
from forewarn.records import FEATURE_PREFIX

_ENGINEERED = {**dict.fromkeys(NUMERIC_FEATURES, "numeric"), **dict.fromkeys(CATEGORICAL_FEATURES, "categorical")}


@dataclass(frozen=True, slots=True)
class _Loaded:
    manifest_path: str
    sha256: str
    model: FailureWarningModel
    manifest: ModelManifest


_models: dict[str, _Loaded] = {}
_models_lock = threading.Lock()


def configured_model_key(*, create: bool = False, model_dir: Path | str | None = None) -> ModelKey:
    """The key that signs and verifies models: ``FOREWARN_MODEL_KEY``, else ``FOREWARN_MODEL_KEY_FILE``.

    With ``create`` (training), a missing key file is created first: 64 random hex digits, mode 0600,
    written atomically and never over an existing key. Loading passes ``create=False``: a key made now
    could not verify any model saved before. With ``model_dir`` (the directory the key will sign models
    for), a key file inside it is refused before anything is created: it would prove nothing. Raises
    :class:`~forewarn.errors.UntrustedModelError` when there is no key, the key file is readable by others,
    or it lies inside ``model_dir``.

    Example::

        >>> configured_model_key().source  # doctest: +SKIP
        'the key file /home/me/.local/share/forewarn/model.key'
    """
    from forewarn.settings import get_settings

    settings = get_settings()
    secret = settings.model_key.get_secret_value() if settings.model_key is not None else None
    if secret is None and model_dir is not None:
        refuse_key_file_inside(settings.model_key_file, model_dir)
    return model_key(secret, settings.model_key_file, create=create)


def current_manifest_path(model_dir: Path | str) -> Path | None:
    """The ``manifest.json`` of the model installed in ``model_dir``, or None when none is installed.

    ``model_dir`` holds ``latest.json`` (written by :func:`forewarn.learning.model.save_model`) or is itself one
    version directory with a ``manifest.json``. A ``latest.json`` that cannot be read is returned as it is,
    so that :func:`forewarn.learning.model.load_model` explains what is wrong with it.

    Example::

        >>> current_manifest_path("/nonexistent/models") is None
        True
    """
    directory = Path(model_dir)
    pointer = directory / LATEST_FILE
    if pointer.is_file():
        try:
            return directory / str(json.loads(pointer.read_text())["manifest"])
        except (OSError, ValueError, KeyError, TypeError):
            return pointer
    manifest = directory / MANIFEST_FILE
    return manifest if manifest.is_file() else None


def _manifest_sha256(path: Path) -> str | None:
    try:
        return str(json.loads(path.read_text())["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_feature_schema(manifest: ModelManifest) -> None:
    """Refuse a model trained on features this forewarn does not build (before it is unpickled).

    Every feature of the model must be one :func:`~forewarn.learning.features.build_features` makes, with the same
    type, or a ``feature_*`` attribute (a run that lacks one is scored with it missing).
    Raises :class:`~forewarn.errors.FeatureSchemaError`.

    Example::

        >>> from forewarn.learning.model import ModelManifest
        >>> check_feature_schema(manifest)  # doctest: +SKIP
    """
    unknown = [
        n
        for n, kind in manifest.feature_types.items()
        if n not in _ENGINEERED
        and not n.startswith(FEATURE_PREFIX)
        and not (kind == "numeric" and is_attribute_history_feature(n))
    ]
    changed = [
        f"{n} ({_ENGINEERED[n]} here, {kind} in the model)"
        for n, kind in manifest.feature_types.items()
        if n in _ENGINEERED and _ENGINEERED[n] != kind
    ]
    if unknown or changed:
        parts = ([f"unknown: {', '.join(unknown)}"] if unknown else []) + (
            [f"changed: {', '.join(changed)}"] if changed else []
        )
        raise FeatureSchemaError(
            f"model {manifest.version} was trained on features this forewarn does not build "
            f"({'; '.join(parts)}); retrain it with `forewarn train`"
        )


def load_current_model(model_dir: Path | str | None = None) -> tuple[FailureWarningModel, ModelManifest] | None:
    """The model installed in ``model_dir`` (default ``FOREWARN_MODEL_DIR``) and its manifest, or None.

    None means no model is installed (no ``latest.json``/``manifest.json``). A model is loaded - its files
    checked, its SHA-256 and its signature under :func:`configured_model_key` verified before it is
    unpickled - once per process and version: the result is cached by
    directory, manifest path and checksum, so a newly trained model is picked up at the next call while
    scoring the same model again costs two small JSON reads. Raises
    :class:`~forewarn.errors.ModelError` for a broken pointer or manifest,
    :class:`~forewarn.errors.ChecksumMismatchError` for an artifact changed since it was saved,
    :class:`~forewarn.errors.UntrustedModelError` for a model not signed with the key (or files others may
    write), and
    :class:`~forewarn.errors.FeatureSchemaError` for a model trained on features this forewarn does not
    build (see :func:`check_feature_schema`).

    Example::

        >>> load_current_model("/nonexistent/models") is None
        True
    """
    if model_dir is None:
        from forewarn.settings import get_settings

        model_dir = get_settings().model_dir
    directory = Path(model_dir)
    path = current_manifest_path(directory)
    if path is None:
        return None
    key, sha = str(directory.resolve()), _manifest_sha256(path)
    cached = _models.get(key)
    if cached is not None and sha is not None and (cached.manifest_path, cached.sha256) == (str(path), sha):
        return cached.model, cached.manifest
    if sha is not None:  # a readable manifest: check the features before anything is unpickled
        _check_before_unpickling(path)
    # the models directory, not the version's manifest: every check (files others may write, links and
    # pointers leading out, a key file inside) is made from the directory the setting names
    model, manifest = load_model(directory, key=configured_model_key())
    check_feature_schema(manifest)
    with _models_lock:
        _models[key] = _Loaded(str(path), manifest.sha256, model, manifest)
    return model, manifest


def _check_before_unpickling(path: Path) -> None:
    """:func:`check_feature_schema` on the manifest at ``path``, if it parses (else load_model explains it)."""
    try:
        early = ModelManifest.from_json(path.read_text())
    except (OSError, ValueError, KeyError, TypeError, AssertionError):
        return  # load_model explains what is wrong with it
    check_feature_schema(early)


def clear_model_cache() -> None:
    """Forget every loaded model (tests; a process that must re-verify its model files)."""
    with _models_lock:
        _models.clear()


def feature_config_of(manifest: ModelManifest) -> FeatureConfig:
    """The :class:`~forewarn.learning.features.FeatureConfig` a model was trained with (its manifest's ``extra``).

    ``manifest.extra["feature_config"]`` may hold ``lookback_seconds``, ``recent_runs``,
    ``global_window_seconds`` and ``prior_strength``; absent values take the defaults.

    Example::

        >>> from types import SimpleNamespace
        >>> feature_config_of(SimpleNamespace(extra={"feature_config": {"recent_runs": 20}})).recent_runs
        20
    """
    return FeatureConfig.from_dict((manifest.extra or {}).get("feature_config"))


def feature_config_dict(config: FeatureConfig) -> dict[str, float | int]:
    """What to store as ``extra["feature_config"]`` in a manifest (the inverse of :func:`feature_config_of`).

    Example::

        >>> feature_config_dict(FeatureConfig())["recent_runs"]
        10
    """
    return config.to_dict()


__all__ = [
    "check_feature_schema",
    "clear_model_cache",
    "configured_model_key",
    "current_manifest_path",
    "feature_config_dict",
    "feature_config_of",
    "load_current_model",
]
