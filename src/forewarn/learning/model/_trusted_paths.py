"""Model files nobody else could have swapped: inside the models directory, not writable by group or others.

The signature (:mod:`forewarn.learning.model._signing`) is what proves a model genuine; these checks are the
second fence, and they explain the likely cause better than a failed signature does: a directory that other
users may write, or a link that leads a file outside the models directory. Every refusal is an
:class:`~forewarn.errors.UntrustedModelError` naming the path and the fix.

Example::

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / "latest.json").write_text("{}")
    2
    >>> (root / "latest.json").chmod(0o666)
    >>> read_trusted(root, root / "latest.json")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    forewarn.errors.UntrustedModelError: ...latest.json is writable by group and others, ... chmod go-w ...
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from forewarn.errors import UntrustedModelError

_GROUP_OR_OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH


def refuse_writable_by_others(path: Path, *, action: str = "loaded") -> None:
    """Raise :class:`~forewarn.errors.UntrustedModelError` if group or others may write ``path``.

    ``action`` says what was refused: "loaded" (reading a model) or "saved" (writing one).
    """
    mode = os.stat(path).st_mode
    if mode & _GROUP_OR_OTHERS_WRITE:
        who = " and ".join(w for bit, w in ((stat.S_IWGRP, "group"), (stat.S_IWOTH, "others")) if mode & bit)
        raise UntrustedModelError(
            f"{path} is writable by {who}, so anyone could swap the model; it was NOT {action}. Fix: chmod go-w {path}",
            path=path,
        )


def trusted_path(root: Path, path: Path) -> Path:
    """``path`` resolved, once it is checked to stay inside ``root`` with nothing on the way writable by others.

    Every directory from ``root`` down to the file, and the file itself, must be writable by its owner only;
    a symbolic link may point anywhere inside ``root`` but not out of it.
    """
    base = root.resolve(strict=True)
    try:
        resolved = path.resolve(strict=True)
    except (FileNotFoundError, RuntimeError) as exc:  # RuntimeError: a symlink loop
        raise UntrustedModelError(
            f"{path} cannot be resolved ({exc}); retrain with `forewarn train`", path=path
        ) from exc
    if not resolved.is_relative_to(base):
        raise UntrustedModelError(
            f"{path} leads outside the models directory {root} (to {resolved}); it was NOT loaded. Fix: remove "
            "the link and retrain with `forewarn train`",
            path=path,
        )
    directory = base
    refuse_writable_by_others(base)
    for part in resolved.relative_to(base).parts[:-1]:
        directory = directory / part
        refuse_writable_by_others(directory)
    refuse_writable_by_others(resolved)
    return resolved


def read_trusted(root: Path, path: Path) -> bytes:
    """The bytes of regular file ``path`` after :func:`trusted_path` accepted it."""
    resolved = trusted_path(root, path)
    if not resolved.is_file():
        raise UntrustedModelError(f"{path} is not a regular file; retrain with `forewarn train`", path=path)
    return resolved.read_bytes()


def make_private_to_owner_writes(path: Path) -> None:
    """Drop group and others' write permission from ``path`` (what a umask of 002 would have granted)."""
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & _GROUP_OR_OTHERS_WRITE:
        os.chmod(path, mode & ~_GROUP_OR_OTHERS_WRITE)
