"""The model key and the signature it makes: an HMAC-SHA256 over a model's manifest and artifact.

A SHA-256 in ``manifest.json`` only detects damage: whoever can write the models directory writes both the
pickle and its checksum. The signature is keyed with a secret kept *outside* that directory - secret text
(``FOREWARN_MODEL_KEY``), or else a key file readable and writable by its owner only
(``FOREWARN_MODEL_KEY_FILE``). This module takes those values as arguments: the learning core never reads
settings; :func:`forewarn.scoring.configured_model_key` passes the configured ones. Training creates the key
file when there is none; loading never does, since a new key could not verify any model saved before.

Example::

    >>> key = ModelKey(b"k" * 32, "a test key")
    >>> tag = sign(key, b'{"version": "v1"}', b"pickle bytes")
    >>> verify(key, b'{"version": "v1"}', b"pickle bytes", tag.encode(), where=Path("m"))
    >>> key
    ModelKey(source='a test key', path=None)
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import stat
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from forewarn.errors import UntrustedModelError

MIN_KEY_CHARS = 32
"""The shortest key accepted, in characters (bytes): 32 random hex digits carry 128 bits."""
_CONTEXT = b"forewarn model signature v1\n"  # so this key's tags mean nothing in any other protocol


@dataclass(frozen=True)
class ModelKey:
    """The secret that signs models, and where it came from (``source``, shown in messages; never the secret)."""

    secret: bytes = field(repr=False)
    source: str
    path: Path | None = None


def model_key(secret: str | None, key_file: Path, *, create: bool) -> ModelKey:
    """The key: ``secret`` text if given, else the contents of ``key_file`` (created first if ``create``).

    Raises :class:`~forewarn.errors.UntrustedModelError` when there is no key to verify with, or the key
    file is unsafe (readable by others, not a regular file, too short).

    Example::

        >>> model_key("s" * 32, Path("/unused"), create=False).source
        'FOREWARN_MODEL_KEY'
    """
    if secret is not None:
        return ModelKey(secret.strip().encode(), "FOREWARN_MODEL_KEY")
    if create and not key_file.exists():
        create_key_file(key_file)
    if not key_file.exists():
        raise UntrustedModelError(
            f"no model key: FOREWARN_MODEL_KEY is unset and the key file {key_file} does not exist, so no model "
            "can be verified and none was loaded. Retrain with `forewarn train` (it creates the key), or set "
            "FOREWARN_MODEL_KEY / FOREWARN_MODEL_KEY_FILE to the key the model was saved with",
            path=key_file,
        )
    return ModelKey(read_key_file(key_file), f"the key file {key_file}", key_file)


def read_key_file(path: Path) -> bytes:
    """The key in ``path``, after checking it is a regular file that only its owner may read or write."""
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise UntrustedModelError(f"the model key file {path} is not a regular file", path=path)
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UntrustedModelError(
            f"the model key file {path} may be read or written by group or others "
            f"(mode {stat.S_IMODE(info.st_mode):o}); fix: chmod 600 {path}",
            path=path,
        )
    secret = path.read_bytes().strip()
    if len(secret) < MIN_KEY_CHARS:
        raise UntrustedModelError(
            f"the model key file {path} holds {len(secret)} characters, fewer than {MIN_KEY_CHARS}; delete it "
            "and retrain with `forewarn train` to make a new one",
            path=path,
        )
    return secret


def create_key_file(path: Path) -> None:
    """Write a new random key to ``path`` (mode 0600) unless a key is there already; never overwrite one.

    The key is written and fsynced under a temporary name, then hard-linked into place: the link fails if
    another process made the key first, and then that key is kept, so concurrent trainings agree on one key.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileExistsError):  # another process created the key first: theirs stands
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _message(manifest: bytes, artifact: bytes) -> bytes:
    # digests of each part, so no byte can move between the manifest and the artifact unnoticed
    return b"%s%s\n%s\n" % (
        _CONTEXT,
        hashlib.sha256(manifest).hexdigest().encode(),
        hashlib.sha256(artifact).hexdigest().encode(),
    )


def sign(key: ModelKey, manifest: bytes, artifact: bytes) -> str:
    """The hex HMAC-SHA256 of ``manifest`` and ``artifact`` (the exact bytes of both files) under ``key``."""
    return hmac.new(key.secret, _message(manifest, artifact), hashlib.sha256).hexdigest()


def verify(key: ModelKey, manifest: bytes, artifact: bytes, signature: bytes, *, where: Path) -> None:
    """Raise :class:`~forewarn.errors.UntrustedModelError` unless ``signature`` is ``sign(key, ...)``.

    Compared in constant time (``hmac.compare_digest``).
    """
    expected = sign(key, manifest, artifact).encode()
    if not hmac.compare_digest(expected, signature.strip()):
        raise UntrustedModelError(
            f"the model in {where} does not carry a valid signature under {key.source}: its files were changed "
            "after it was saved, or it was saved with another key. It was NOT loaded. Retrain with `forewarn "
            "train`, or set FOREWARN_MODEL_KEY / FOREWARN_MODEL_KEY_FILE to the key it was saved with",
            path=where,
        )


__all__ = ["MIN_KEY_CHARS", "ModelKey", "create_key_file", "model_key", "read_key_file", "sign", "verify"]
