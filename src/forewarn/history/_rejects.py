"""The rejects file of ``--skip-invalid``: never the imported file, and written whole or not at all."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import pandas as pd

from forewarn.errors import ConfigurationError
from forewarn.history.validation import CheckedHistory


def refuse_the_imported_file(source: Path, rejects: Path) -> None:
    """Raise :class:`~forewarn.errors.ConfigurationError` when ``rejects`` is ``source`` under another name.

    Compares the resolved paths, and the device and inode of both files when ``rejects`` exists, so a
    hard link or a symbolic link to the imported file is refused as well as the same path.

    Example::

        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "runs.csv").write_text("run_id\\n")
        >>> os.link(folder / "runs.csv", folder / "alias.csv")
        >>> refuse_the_imported_file(folder / "runs.csv", folder / "alias.csv")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        forewarn.errors.ConfigurationError: ...skip_invalid...
    """
    same = rejects.resolve() == source.resolve()
    if not same and rejects.exists():
        found, imported = os.stat(rejects), os.stat(source)
        same = (found.st_dev, found.st_ino) == (imported.st_dev, imported.st_ino)
    if same:
        raise ConfigurationError(
            "skip_invalid",
            str(rejects),
            f"a file other than the one imported (this is {source} itself or a link to it), "
            f"e.g. {source.stem}.rejects.csv",
        )


def write_rejects(raw: pd.DataFrame, checked: CheckedHistory, path: Path) -> None:
    """Write the rejected rows as read, plus ``line`` and ``reason`` (a line's reasons joined by `` | ``).

    The rows go to a temporary file next to ``path`` that then replaces it in one step, so ``path`` is
    never left half-written, and a link at ``path`` is replaced rather than written through.
    """
    reasons: dict[int, list[str]] = {}
    for line, reason in checked.problems:
        reasons.setdefault(line, []).append(reason)
    rejects = raw.iloc[checked.rejected].copy()
    lines = checked.rejected + 2
    rejects["line"] = lines
    rejects["reason"] = [" | ".join(reasons[int(line)]) for line in lines]
    temporary: str | None = None
    try:
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            rejects.to_csv(out, index=False)
        os.replace(temporary, path)
    except OSError as exc:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
        raise ConfigurationError(
            "skip_invalid", str(path), f"a file path that can be written ({exc.strerror or exc}), e.g. rejects.csv"
        ) from None
