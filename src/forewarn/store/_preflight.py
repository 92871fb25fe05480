"""A look at a SQLite store file before the store's engine touches it: read-only, and nothing created.

The engine's on-connect set-up switches a file to WAL mode, a change written into the file itself, and
SQLite creates a file that does not exist. Neither may happen to a file that is not forewarn's, nor to a
path a reader mistyped. So :func:`check_sqlite_file` runs first: a missing file is refused unless the
caller creates stores, and an existing one is opened read-only (``mode=ro``) and put through
:func:`forewarn.store.migrations.check_openable`, the same refusals :func:`~forewarn.store.migrations.ensure_schema`
applies under its lock. PostgreSQL needs no such look: connecting changes nothing there, and
``ensure_schema`` refuses before it writes.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from urllib.parse import quote

from forewarn.errors import StoreError
from forewarn.masking import mask_url
from forewarn.store._engine import parse_url
from forewarn.store.migrations import VERSION_KEY, check_openable, parse_version
from forewarn.store.schema import forewarn_meta

# the standard library's sqlite3, not an engine: about 2 ms a look on the 2-core VM, against 7 ms with a fresh engine
_TABLES_AND_VIEWS = (
    "select name from sqlite_master where type in ('table', 'view') and name not like 'sqlite~_%' escape '~'"
)


def check_sqlite_file(url: str, setting: str, *, create: bool) -> None:
    """Refuse a SQLite store file the store must not open: missing when ``create`` is false, not a SQLite
    database, or another application's database. ``setting`` names where the URL came from.

    In-memory databases and ``file:`` URI paths are left to :func:`~forewarn.store.migrations.ensure_schema`.

    Example::

        >>> check_sqlite_file("sqlite:///no/such/dir/telemetry.db", "FOREWARN_DB_URL", create=False)
        Traceback (most recent call last):
        ...
        forewarn.errors.StoreError: no forewarn store at no/such/dir/telemetry.db: the file does not exist...
    """
    sa_url = parse_url(url, setting)
    database = sa_url.database or ""
    if sa_url.get_backend_name() != "sqlite" or database in ("", ":memory:") or database.startswith("file:"):
        return
    path = Path(database).expanduser()
    shown = mask_url(sa_url.render_as_string(hide_password=False))
    if not path.exists():
        if create:
            return
        raise StoreError(
            f"no forewarn store at {path}: the file does not exist, and reading never creates one. Check the "
            f"path in {setting}, or record runs (a forewarn flow, `forewarn import-runs`) to create the store",
            url=shown,
        )
    _check_existing(path, shown, create=create)


def _check_existing(path: Path, shown: str, *, create: bool) -> None:
    """Open ``path`` read-only and refuse it if it is no SQLite database or not forewarn's to write."""
    try:
        with closing(sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True)) as db:
            names = sorted(row[0] for row in db.execute(_TABLES_AND_VIEWS))
            value = None
            if forewarn_meta.name in names:
                query = f"select value from {forewarn_meta.name} where key = ?"
                row = db.execute(query, (VERSION_KEY,)).fetchone()
                value = None if row is None else row[0]
    except sqlite3.Error as exc:
        raise StoreError(
            f"cannot open the SQLite store {shown}: {exc}; point FOREWARN_DB_URL at a forewarn store, "
            "or at a path where none exists yet",
            url=shown,
        ) from None
    version = parse_version(value, url=shown)
    foreign = [name for name in names if name != forewarn_meta.name] if version is None else []
    check_openable(version, foreign, url=shown, create=create)
