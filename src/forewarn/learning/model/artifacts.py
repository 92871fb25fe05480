"""Saved models: saving and loading them signed (the manifest, :mod:`.manifest`, is re-exported here).

The directory layout is defined once, in :mod:`forewarn.model_files` (re-exported here)::

    <dir>/<version>/model.joblib     the pickled FailureWarningModel (MODEL_FILE)
    <dir>/<version>/manifest.json    what it is, how it was trained, its SHA-256 (MANIFEST_FILE)
    <dir>/<version>/manifest.hmac    HMAC-SHA256 of both under the model key (SIGNATURE_FILE)
    <dir>/latest.json                which version is installed (LATEST_FILE)

:func:`save_model` writes a signed version directory and then points ``latest.json`` at it;
:func:`load_model` refuses files others could have swapped, then verifies the artifact's SHA-256 and the
signature with the model key (kept outside the directory, see :mod:`~forewarn.learning.model.signing`),
all *before* unpickling, and refuses a model trained on other features.

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
import os
import shutil
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import joblib
from sklearn.utils.validation import check_is_fitted

from forewarn.errors import (
    ChecksumMismatchError,
    ConfigurationError,
    FeatureSchemaError,
    ModelError,
    UntrustedModelError,
)
from forewarn.learning.features import FeatureSpec
from forewarn.learning.model._trusted_paths import make_private_to_owner_writes, read_trusted, refuse_writable_by_others
from forewarn.learning.model.estimator import FailureWarningModel
from forewarn.learning.model.manifest import MANIFEST_FORMAT, ModelManifest, library_versions, spec_types
from forewarn.learning.model.signing import MIN_KEY_CHARS, ModelKey, sign, verify
from forewarn.model_files import (
    LATEST_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    SIGNATURE_FILE,
    latest_file,
    latest_pointer,
    version_dir,
)


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
        make_private_to_owner_writes(tmp)
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
    key: ModelKey | bytes | str,
) -> ModelManifest:
    """Save a fitted model as ``<directory>/<version>/{model.joblib,manifest.json,manifest.hmac}``; point
    latest.json at it.

    The version directory is assembled under a temporary name and renamed into place, and
    ``latest.json`` is replaced atomically last, so a half-written model is never "latest".
    ``version`` is ``<UTC time>-<first 8 hex digits of the artifact's SHA-256>``,
    e.g. ``20261128T162300Z-ab12cd34``. The signature is made with ``key`` (a
    :class:`~forewarn.learning.model.signing.ModelKey`, or the secret as text or bytes; the configured one is
    :func:`forewarn.scoring.configured_model_key`). Nothing is written into a directory that group or others may
    write (:class:`~forewarn.errors.UntrustedModelError`); what is written is writable by its owner only.

    Example::

        >>> manifest = save_model(model, Path("models"), training_window=(t0, t1), key=key)  # doctest: +SKIP
        >>> manifest.version  # doctest: +SKIP
        '20261128T162300Z-ab12cd34'
    """
    check_is_fitted(model, "pipeline_")
    signing_key = _as_key(key)
    directory = Path(directory)
    refuse_key_file_inside(signing_key.path, directory)  # before anything is written
    if not directory.is_dir():
        directory.mkdir(parents=True)
        make_private_to_owner_writes(directory)
    refuse_writable_by_others(directory, action="saved")
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
    _write_version_dir(directory, version, blob, manifest, signing_key)
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


def _write_version_dir(directory: Path, version: str, blob: bytes, manifest: ModelManifest, key: ModelKey) -> None:
    """Write the artifact, its manifest and their signature under a temporary name, fsync them, then rename
    the directory into place."""
    staging = directory / f".staging-{uuid.uuid4().hex}"
    staging.mkdir(mode=0o755)
    make_private_to_owner_writes(staging)
    manifest_bytes = (json.dumps(manifest.to_json(), indent=2) + "\n").encode()
    try:
        (staging / MODEL_FILE).write_bytes(blob)
        (staging / MANIFEST_FILE).write_bytes(manifest_bytes)
        (staging / SIGNATURE_FILE).write_text(sign(key, manifest_bytes, blob) + "\n")
        for name in (MODEL_FILE, MANIFEST_FILE, SIGNATURE_FILE):
            make_private_to_owner_writes(staging / name)
            with open(staging / name, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(staging, version_dir(directory, version))
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _no_model(where: Path) -> ModelError:
    return ModelError(f"no model in {where}: run `forewarn train` first", path=where)


def _locate(path: Path) -> tuple[Path, Path]:
    """``(root, manifest)``: the directory whose files are trusted, and the manifest.json ``path`` designates.

    ``path`` may be the models directory (its ``latest.json`` is followed), a version directory, a
    manifest or a ``latest.json``; the root is the directory given, or the one holding the file given.
    """
    if path.is_dir():
        if (path / MANIFEST_FILE).is_file():
            return path, path / MANIFEST_FILE
        if (path / LATEST_FILE).is_file():
            return path, _follow_pointer(path, path / LATEST_FILE)
        raise _no_model(path)
    if not path.is_file():
        raise _no_model(path)
    if path.name == LATEST_FILE:
        return path.parent, _follow_pointer(path.parent, path)
    return path.parent, path


def _follow_pointer(root: Path, pointer_path: Path) -> Path:
    """The manifest ``latest.json`` points at, once the pointer itself is trusted and parsed."""
    try:
        pointer = json.loads(read_trusted(root, pointer_path))
        target = root / pointer["manifest"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(
            f"{pointer_path} is not a valid pointer to a model ({exc}); retrain with `forewarn train`",
            path=pointer_path,
        ) from exc
    if not target.is_file():
        raise ModelError(
            f"{pointer_path} points to {pointer['manifest']}, which is missing; retrain with `forewarn train`",
            path=target,
        )
    return target


def _read_manifest(root: Path, manifest_path: Path) -> tuple[bytes, ModelManifest]:
    """The manifest's exact bytes (what the signature covers) and their parsed form."""
    raw = read_trusted(root, manifest_path)
    try:
        return raw, ModelManifest.from_json(raw)
    except (ValueError, KeyError, TypeError, AssertionError) as exc:
        raise ModelError(
            f"{manifest_path} is not a readable forewarn manifest ({exc}); retrain with `forewarn train`",
            path=manifest_path,
        ) from exc


def _read_signature(root: Path, version_path: Path) -> bytes:
    """The signature beside a manifest; a model saved before forewarn signed its models has none."""
    signature = version_path / SIGNATURE_FILE
    if not signature.exists() and not signature.is_symlink():
        raise UntrustedModelError(
            f"the model in {version_path} has no signature ({SIGNATURE_FILE}): it was saved before forewarn "
            "signed its models, or the file was removed. It was NOT loaded. Retrain with `forewarn train`",
            path=signature,
        )
    return read_trusted(root, signature)


def _as_key(key: ModelKey | bytes | str) -> ModelKey:
    """``key`` as a :class:`~forewarn.learning.model.signing.ModelKey` (raw text or bytes: "the key given")."""
    if isinstance(key, ModelKey):
        return key
    secret = key.encode() if isinstance(key, str) else bytes(key)
    if len(secret.strip()) < MIN_KEY_CHARS:
        raise ConfigurationError("key", "***", f"a model key of at least {MIN_KEY_CHARS} characters")
    return ModelKey(secret.strip(), "the key given")


def refuse_key_file_inside(key_file: Path | None, models_dir: Path | str) -> None:
    """Raise :class:`~forewarn.errors.UntrustedModelError` if ``key_file`` lies inside ``models_dir``.

    A key kept beside the models it signs could be rewritten by whoever rewrites the models, so it would prove
    nothing. ``None`` (a key given as text, e.g. ``FOREWARN_MODEL_KEY``) always passes. Neither path needs to
    exist: training checks before it creates either.

    Example::

        >>> refuse_key_file_inside(Path("/srv/keys/model.key"), "/srv/models")
        >>> refuse_key_file_inside(Path("/srv/models/model.key"), "/srv/models")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        forewarn.errors.UntrustedModelError: the model key file /srv/models/model.key is inside the models ...
    """
    if key_file is not None and key_file.resolve().is_relative_to(Path(models_dir).resolve()):
        raise UntrustedModelError(
            f"the model key file {key_file} is inside the models directory {models_dir}, so it proves nothing; "
            "move it out (FOREWARN_MODEL_KEY_FILE) and retrain with `forewarn train`",
            path=key_file,
        )


def _verified_files(root: Path, manifest_path: Path, key: ModelKey) -> tuple[ModelManifest, bytes]:
    """The manifest and the artifact's bytes, once both are trusted: owner-only files inside ``root``, the
    artifact's SHA-256 as in the manifest, the signature valid under ``key``."""
    manifest_bytes, manifest = _read_manifest(root, manifest_path)
    artifact = manifest_path.parent / manifest.artifact
    if not artifact.is_file():
        raise ModelError(f"{artifact} is missing; retrain with `forewarn train`", path=artifact)
    signature = _read_signature(root, manifest_path.parent)
    blob = read_trusted(root, artifact)
    actual = _sha256(blob)
    if actual != manifest.sha256:
        raise ChecksumMismatchError(
            f"{artifact}: SHA-256 {actual} differs from {manifest.sha256} in its manifest; the file was "
            "changed or damaged after it was saved and was NOT loaded. Restore it or retrain with "
            "`forewarn train`.",
            path=artifact,
        )
    refuse_key_file_inside(key.path, root)
    verify(key, manifest_bytes, blob, signature, where=manifest_path.parent)
    return manifest, blob


def _refuse_other_features(manifest: ModelManifest, expected_spec: FeatureSpec, artifact: Path) -> None:
    diff = schema_differences(manifest.feature_types, spec_types(expected_spec))
    if any(diff.values()):
        parts = [f"{k}: {', '.join(v)}" for k, v in diff.items() if v]
        raise FeatureSchemaError(
            f"model {manifest.version} was trained on other features than these ({'; '.join(parts)}); "
            "retrain with `forewarn train`",
            path=artifact,
        )


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
    key: ModelKey | bytes | str,
) -> tuple[FailureWarningModel, ModelManifest]:
    """Load a saved model after verifying its signature (and its feature schema, if ``expected_spec``).

    ``path_or_dir`` may be the models directory (``latest.json`` is followed), one version directory, or
    a ``manifest.json``. Before anything is unpickled:

    * a file or directory writable by group or others, or a link leading out of the models directory, is
      refused (:class:`~forewarn.errors.UntrustedModelError`, naming the path and the ``chmod`` fix);
    * the artifact's bytes are read once and hashed; on a mismatch with the manifest
      :class:`~forewarn.errors.ChecksumMismatchError` is raised;
    * the HMAC-SHA256 in ``manifest.hmac`` must verify under ``key`` (as for :func:`save_model`); a model
      without one (saved before models were signed) or saved with another key is
      :class:`~forewarn.errors.UntrustedModelError`;
    * with ``expected_spec``, a model trained on other feature names or types is refused with
      :class:`~forewarn.errors.FeatureSchemaError`.

    Example::

        >>> model, manifest = load_model(Path("models"), key=key)  # doctest: +SKIP
    """
    verifying_key = _as_key(key)
    root, manifest_path = _locate(Path(path_or_dir))
    manifest, blob = _verified_files(root, manifest_path, verifying_key)
    artifact = manifest_path.parent / manifest.artifact
    if expected_spec is not None:
        _refuse_other_features(manifest, expected_spec, artifact)
    model = joblib.load(io.BytesIO(blob))
    if not isinstance(model, FailureWarningModel):
        raise ModelError(f"{artifact} holds a {type(model).__name__}, not a FailureWarningModel", path=artifact)
    return model, manifest


__all__ = [
    "LATEST_FILE",
    "MANIFEST_FILE",
    "MANIFEST_FORMAT",
    "MODEL_FILE",
    "SIGNATURE_FILE",
    "ModelManifest",
    "latest_file",
    "latest_pointer",
    "library_versions",
    "load_model",
    "refuse_key_file_inside",
    "save_model",
    "schema_differences",
    "spec_types",
    "version_dir",
]
