"""Reading a history CSV as text cells, streaming, with bounded memory per line and per cell.

A history file is attacker-supplied input: a single 50 MB cell, a line that never ends, a row with an
extra cell, bytes that are not UTF-8. The file is read line by line with a cap on each physical line
(``MAX_LINE_BYTES``) and parsed by the :mod:`csv` module with a cap on each cell (``MAX_CELL_CHARS``),
so a hostile cell is rejected with its line number once the cap is reached, never allocated whole, and the
cells kept are plain Python strings: memory grows with the size of the file, not rows x longest cell.
"""

from __future__ import annotations

import codecs
import csv
import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import pandas as pd

from forewarn.errors import ImportValidationError

MAX_CELL_CHARS = 1_000_000
"""The longest cell a history CSV may hold, in characters (a 23 KB ``parameters`` cell is fine)."""

MAX_LINE_BYTES = 4 * MAX_CELL_CHARS
"""The longest physical line a history CSV may hold, in bytes of UTF-8 (a line is read whole before parsing)."""

_BLOCK_BYTES = 1 << 20
_FIELD_LIMIT_LOCK = threading.Lock()


def read_history_csv(path: Path | str) -> pd.DataFrame:
    """Read a history CSV as text: every cell a string exactly as written (empty cells are ``""``).

    Blank lines are kept as rows of empty cells so that row ``i`` is line ``i + 2`` of the file (for a
    file without line breaks inside quoted cells); a row with fewer cells than the header has ``""`` for
    the missing ones. Header names are stripped of surrounding spaces and a UTF-8 byte-order mark is
    ignored. A file that cannot be split into rows and columns raises
    :class:`~forewarn.errors.ImportValidationError` naming the line: a row with more cells than the
    header, an unclosed quote, a cell over ``MAX_CELL_CHARS`` or a line over ``MAX_LINE_BYTES``
    bytes, bytes that are not UTF-8, an empty file.

    Example::

        >>> import tempfile
        >>> csv_path = Path(tempfile.mkdtemp()) / "h.csv"
        >>> _ = csv_path.write_text("run_id,state\\nr1,COMPLETED\\n\\nr2,\\n")
        >>> read_history_csv(csv_path).to_dict("list")
        {'run_id': ['r1', '', 'r2'], 'state': ['COMPLETED', '', '']}
        >>> _ = csv_path.write_text("run_id,state\\nr1,COMPLETED,extra\\n")
        >>> read_history_csv(csv_path)
        Traceback (most recent call last):
        ...
        forewarn.errors.ImportValidationError: ...line 2: the row has 3 cells but the header has 2 columns...
    """
    path = Path(path)
    with _collector_paused():
        header, rows = _rows(path)
        columns = list(zip(*rows, strict=True)) if rows else [()] * len(header)
        return pd.DataFrame({name: pd.Series(col, dtype=object) for name, col in zip(header, columns, strict=True)})


def _rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """The header (names stripped) and the rows of ``path``, each as wide as the header."""
    header: list[str] | None = None
    rows: list[list[str]] = []
    try:
        with open(path, "rb") as handle, _cell_limit(MAX_CELL_CHARS):
            for cells in csv.reader(_bounded_lines(handle, path), strict=True):
                if header is None:
                    header = _header(cells, path)
                    continue
                rows.append(_fit(cells, len(header), line=len(rows) + 2, path=path))
    except csv.Error as exc:
        raise ImportValidationError(path, [(len(rows) + 2 if header else 1, _csv_reason(exc))]) from None
    if not header:
        raise ImportValidationError(path, [(1, "the file is empty; the first line must be the header")])
    return header, rows


def _header(cells: list[str], path: Path) -> list[str]:
    """The column names, stripped; a name given twice is an error (one column would hide the other)."""
    names = [cell.strip() for cell in cells]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ImportValidationError(
            path, [(1, f"column(s) {', '.join(twice)} appear more than once; keep one of each")]
        )
    return names


def _bounded_lines(handle: BinaryIO, path: Path) -> Iterator[str]:
    """The physical lines of ``handle`` as text, refusing one over ``MAX_LINE_BYTES`` before it is read whole.

    The file is read in blocks of ``_BLOCK_BYTES``; only a line's unfinished tail is carried to the next
    block, and a tail longer than ``MAX_LINE_BYTES`` is an error naming its physical line. A UTF-8
    byte-order mark at the start is dropped.
    """
    pending = handle.read(len(codecs.BOM_UTF8)).removeprefix(codecs.BOM_UTF8)
    line = 1  # the physical line that ``pending`` starts on
    while block := handle.read(_BLOCK_BYTES):
        pending += block
        cut = pending.rfind(b"\n") + 1
        if len(pending) - cut > MAX_LINE_BYTES:
            reason = f"a line is longer than {MAX_LINE_BYTES:,} bytes; history lines are far shorter"
            raise ImportValidationError(path, [(line + pending.count(b"\n", 0, cut), reason)])
        if cut:
            lines = _decoded_lines(pending[:cut], path, first_line=line)
            line += len(lines)
            pending = pending[cut:]
            yield from lines
    yield from _decoded_lines(pending, path, first_line=line)


def _decoded_lines(data: bytes, path: Path, first_line: int) -> list[str]:
    """``data`` (whole lines) decoded and split after each ``\\n`` only (a cell may hold other line breaks)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = first_line + data.count(b"\n", 0, exc.start)
        column = exc.start - data.rfind(b"\n", 0, exc.start)
        reason = f"the file is not UTF-8 text ({exc.reason} at byte {column} of the line); save it as UTF-8"
        raise ImportValidationError(path, [(line, reason)]) from None
    lines = [piece + "\n" for piece in text.split("\n")]
    lines[-1] = lines[-1][:-1]
    return lines if lines[-1] else lines[:-1]


def _fit(cells: list[str], width: int, *, line: int, path: Path) -> list[str]:
    """``cells`` padded with ``""`` to the header's width; a row with more cells is an error naming its line."""
    if len(cells) > width:
        raise ImportValidationError(
            path,
            [
                (
                    line,
                    f"the row has {len(cells)} cells but the header has {width} columns; "
                    "quote cells that contain commas",
                )
            ],
        )
    return cells + [""] * (width - len(cells)) if len(cells) < width else cells


def _csv_reason(exc: csv.Error) -> str:
    """A teaching reason for a :mod:`csv` parse error."""
    message = str(exc)
    if "field larger than field limit" in message:
        return f"a cell is longer than {MAX_CELL_CHARS:,} characters; history cells are far shorter"
    return f"cannot split the file into columns here ({message}); quote cells that contain commas or quotes"


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while rows are read: lists of strings hold no cycles, and a
    collection every few thousand new lists doubled the reading time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@contextmanager
def _cell_limit(limit: int) -> Iterator[None]:
    """Set :func:`csv.field_size_limit` for one read (it is process-wide, hence the lock), then restore it."""
    with _FIELD_LIMIT_LOCK:
        previous = csv.field_size_limit(limit)
        try:
            yield
        finally:
            csv.field_size_limit(previous)
